"""The support bot end to end on a tiny bot: build, HTTP (/v1/chat, /v1/feedback), CLI, the chat loop
driven through a terminal (pexpect), evaluation and retraining."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from _support_bot_tiny import NONSENSE
from click.testing import CliRunner

from tuneforge.cli import cli
from tuneforge.plugins.support_bot.bot import artefacts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bot_copy(tiny_bot, tmp_path):
    """A private copy of the whole project (bot folder + its bundles) at another place: bot.json's
    relative paths must still find everything."""
    import shutil

    project = tmp_path / "moved-project"
    shutil.copytree(tiny_bot.parent, project, ignore=shutil.ignore_patterns("runs"))
    dest = project / "bot"
    (dest / "bot.sqlite").unlink(missing_ok=True)
    return dest


@pytest.fixture
def bot_with_router(bot_copy):
    """The tiny bot plus its conversation layer: a router over the bot's own encoder, bank references
    from the tiny bot's questions, calibrated on its own questions and the bundled calibration halves."""
    from _support_bot_tiny import add_router

    return add_router(bot_copy)


def test_build_writes_config_index_and_calibrated_thresholds(tiny_bot):
    config = json.loads((artefacts(tiny_bot) / "bot.json").read_text())
    assert not any(Path(v).is_absolute() for v in config.values() if isinstance(v, str))   # relative: movable
    assert (artefacts(tiny_bot) / config["intent_bundle"] / "manifest.json").is_file()
    assert (artefacts(tiny_bot) / config["encoder_bundle"] / "manifest.json").is_file()
    th = json.loads((artefacts(tiny_bot) / "thresholds.json").read_text())
    for name in ("intent", "retrieval"):
        assert th["details"][name]["reached"] and th["details"][name]["precision"] >= 0.9
        assert th[name] == th["details"][name]["threshold"]
    assert (artefacts(tiny_bot) / "index" / "index.faiss").is_file()


def test_http_chat_and_feedback_served_by_core(bot_copy):
    from fastapi.testclient import TestClient

    from tuneforge.serve import build_server

    with TestClient(build_server("support-bot", app_path=str(bot_copy), token="t0k")) as client:
        _chat_and_feedback(client)
    import re

    with TestClient(build_server("support-bot", app_path=str(bot_copy))) as client:
        metrics = client.get("/metrics").text
    assert re.search(r'tuneforge_support_bot_turns_total\{kind="template"\} [1-9]', metrics) is None  # new registry


def _chat_and_feedback(client):
    auth = {"Authorization": "Bearer t0k"}
    assert client.post("/v1/chat", json={"message": "hi"}).status_code == 401   # core's auth applies

    r = client.post("/v1/chat", json={"message": "where is my new card"}, headers=auth)
    body = r.json()
    assert r.status_code == 200 and body["kind"] == "template" and body["intent"] == "card_arrival"
    assert body["answer"].startswith("Cards usually arrive") and 0 < body["confidence"] <= 1
    session, turn = body["session_id"], body["turn"]
    assert len(session) == 24 and len(turn) == 16           # server-issued, unguessable

    r = client.post("/v1/chat", json={"message": "how much do ATM withdrawals above the allowance cost",
                                      "session_id": session}, headers=auth).json()
    assert r["kind"] == "retrieval" and r["sources"][0]["source"] == "fees.md" and r["session_id"] == session

    r = client.post("/v1/chat", json={"message": NONSENSE[1] + ", call me on 07700 900123"}, headers=auth).json()
    assert r["kind"] == "handoff" and r["ticket"] >= 1 and f"#{r['ticket']}" in r["answer"]
    other_session = r["session_id"]
    assert other_session != session

    ok = client.post("/v1/feedback", json={"session_id": session, "turn": turn, "verdict": "wrong",
                                           "intent": "lost_or_stolen_card"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["turn"] == {"turn": turn, "kind": "template", "intent": "card_arrival",
                                                           "feedback": "wrong", "correct_intent": "lost_or_stolen_card"}
    # another customer's session cannot read or rewrite this turn; sequential ids are not accepted at all
    stolen = client.post("/v1/feedback", json={"session_id": other_session, "turn": turn, "verdict": "right"},
                         headers=auth)
    assert stolen.status_code == 404 and "no such turn in this session" in stolen.json()["error"]["message"]
    for bad_body in ({"turn_id": 1, "verdict": "right"}, {"session_id": session, "turn": 10 ** 21, "verdict": "right"},
                     {"session_id": session, "turn": True, "verdict": "right"}, {"ticket_id": 1, "intent": "x"}):
        answer = client.post("/v1/feedback", json=bad_body, headers=auth)
        assert answer.status_code == 422 and answer.json()["error"]["type"] == "invalid_request", bad_body
    invented = client.post("/v1/chat", json={"message": "hi", "session_id": "4111111111111111abcdefgh"}, headers=auth)
    assert invented.status_code == 404 and "unknown session_id" in invented.json()["error"]["message"]

    bad = client.post("/v1/feedback", json={"session_id": session, "turn": turn, "verdict": "wrong", "intent": "nope"},
                      headers=auth)
    assert bad.status_code == 422 and "intent" in bad.json()["error"]["message"]
    assert client.post("/v1/chat", json={"message": ""}, headers=auth).status_code == 422
    assert client.post("/v1/chat", json={"text": "hi"}, headers=auth).status_code == 422
    metrics = client.get("/metrics", headers=auth).text
    assert 'tuneforge_support_bot_turns_total{kind="template"} 1.0' in metrics
    assert "tuneforge_support_bot_tickets_total 1.0" in metrics


def test_cli_feedback_and_tickets(bot_copy):
    from tuneforge.plugins.support_bot.service import load_conversation

    conv, _ = load_conversation(bot_copy)
    turn = conv.turn("s", "my card was stolen")
    ticket = conv.turn("s", NONSENSE[1])
    conv.store.close()
    run = CliRunner()
    res = run.invoke(cli, ["support-bot", "feedback", "--bot-dir", str(bot_copy), "--turn", str(turn.turn_id), "right"])
    assert res.exit_code == 0, res.output
    res = run.invoke(cli, ["support-bot", "feedback", "--bot-dir", str(bot_copy), "--ticket",
                           str(ticket.ticket_id), "--intent", "top_up_failed"])
    assert res.exit_code == 0 and "labelled" in res.output
    res = run.invoke(cli, ["support-bot", "tickets", "--bot-dir", str(bot_copy), "--turns", "5"])
    assert f"#{ticket.ticket_id} [labelled]" in res.output and "-> top_up_failed" in res.output
    res = run.invoke(cli, ["support-bot", "feedback", "--bot-dir", str(bot_copy), "--turn", "1", "wrong",
                           "--intent", "nonsense_intent"])
    assert res.exit_code == 2 and res.output.startswith("error: unknown intent 'nonsense_intent'")
    res = run.invoke(cli, ["support-bot", "feedback", "--bot-dir", str(bot_copy.parent / "none"),
                           "--turn", "1", "right"])
    assert res.exit_code == 2 and "is not a bot folder" in res.output


def test_chat_loop_in_a_terminal(bot_with_router):
    import pexpect

    th = json.loads((artefacts(bot_with_router) / "thresholds.json").read_text())
    th["handoff"] = -1.0        # an unsure bank question that resembles the pages: ask, don't hand off
    (artefacts(bot_with_router) / "thresholds.json").write_text(json.dumps(th))
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "TUNEFORGE_PLUGINS": "support_bot"}
    child = pexpect.spawn(sys.executable, ["-m", "tuneforge.apps.support_bot", "--bot-dir", str(bot_with_router),
                                           "--debug"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 400), cwd=str(ROOT))
    child.logfile_read = open(bot_with_router / "pty.log", "w")   # the whole screen, for a failing run

    def say(text, *expected):
        child.expect("you> ")
        child.sendline(text)
        for pattern in expected:
            child.expect(pattern)

    try:
        child.expect("Hello! I'm the support assistant")
        say("hi", r"bot> (Hi|Hello|Hey)", r"kind=smalltalk intent=greeting")
        say("where is my new card", r"bot> Cards usually arrive within 5 working days",
            r"kind=template intent=card_arrival")
        say("how much do ATM withdrawals above the allowance cost", "Here is what our help pages say",
            r"two percent of the amount withdrawn\.\s+\(source: fees\.md § Fees > ATM withdrawal fees\)",
            r"kind=retrieval")
        say("my card failed", r"do you mean \(1\) (.+?) or \(2\)", r"kind=clarify")
        say("yes", r"kind=template intent=card_arrival")            # "yes" picks the first option
        say("thanks!", r"kind=smalltalk intent=thanks")
        say("set a timer", r"kind=decline")
        say("I want to talk to a person", r"Your ticket number is #\d+", r"kind=handoff intent=human_request")
        say("/quit", "Goodbye!")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    db = sqlite3.connect(bot_with_router / "bot.sqlite")
    kinds = [k for (k,) in db.execute("SELECT kind FROM turns ORDER BY id")]
    assert kinds == ["smalltalk", "template", "retrieval", "clarify", "template", "smalltalk", "decline", "handoff"]
    assert [q for (q,) in db.execute("SELECT question FROM tickets")] == ["I want to talk to a person"]  # one, asked for


def _load_and_check(bot_dir, seconds: float):
    from _support_bot_tiny import INTENTS, KB_QUESTIONS

    from tuneforge.plugins.support_bot.loadtest import run_load

    messages = [q for qs in INTENTS.values() for q in qs] + [q for q, _ in KB_QUESTIONS] + NONSENSE
    messages.append("my card 4111 1111 1111 1111 was stolen, call +44 20 7946 0958")  # masked in the store
    report = run_load(bot_dir, messages, clients=20, seconds=seconds)
    assert report.errors == {} and report.requests > 20 and report.ok == report.requests
    assert report.missing_rows == 0 and report.mismatched_rows == 0
    assert report.transcript_rows == report.ok  # nothing lost, nothing written twice
    assert {"template", "handoff"} <= set(report.kinds) and report.passed
    db = sqlite3.connect(bot_dir / "bot.sqlite")
    assert db.execute("SELECT COUNT(DISTINCT session) FROM turns").fetchone()[0] == 20
    assert db.execute("SELECT COUNT(*) FROM turns WHERE user_text LIKE '%4111%'").fetchone()[0] == 0
    return report


def test_http_service_under_20_concurrent_clients_loses_no_transcript_row(bot_copy):
    _load_and_check(bot_copy, seconds=4)


@pytest.mark.slow
def test_http_service_soak_20_clients_30_seconds(bot_copy):
    report = _load_and_check(bot_copy, seconds=30)
    assert report.seconds >= 30


def test_evaluate_reports_accuracy_oos_recall_and_answer_kinds(tiny_bot):
    from tuneforge.plugins.support_bot.bot import Bot
    from tuneforge.plugins.support_bot.evaluate import evaluate_bot

    root = tiny_bot.parent
    report = evaluate_bot(Bot.load(tiny_bot), half=None, questions_file=root / "test.csv",
                          oos_file=root / "oos.txt", kb_file=root / "kbq.csv").to_dict()
    assert report["n_in_scope"] == 24 and report["n_out_of_scope"] == 10 and report["n_kb_questions"] == 10
    # calibrated on these very sets (half=None): the target precision holds by construction
    assert report["intent_accuracy"] >= 0.9 and report["template_precision"] >= 0.9
    assert report["oos_recall"] >= 0.7 and report["oos_precision"] > 0.3
    assert report["retrieval_recall_at_5"] == 1.0 and report["retrieval_recall_at_1"] >= 0.8
    assert set(report["kinds"]) == {"in_scope", "out_of_scope", "kb_questions"}
    assert report["kinds"]["out_of_scope"].get("template", 0) <= 0.3
    assert report["kinds"]["kb_questions"].get("retrieval", 0) >= 0.5
    assert report["latency_ms"]["turns"] == 44 and report["latency_ms"]["p50"] > 0
    handoffs = report["kinds"]["out_of_scope"].get("handoff", 0) * 10
    assert report["handoff_recall"] == pytest.approx(handoffs / 10)
    false = sum(report["kinds"][k].get("handoff", 0) * report["kinds"][k]["n"] for k in ("in_scope", "kb_questions"))
    assert report["handoff_precision"] == pytest.approx(handoffs / (handoffs + false))


def test_retrain_folds_feedback_and_reports_against_the_old_model(bot_copy, tiny_encoder_dir):
    from tuneforge.plugins.support_bot.retrain import retrain
    from tuneforge.plugins.support_bot.store import Store

    data = (artefacts(bot_copy) / json.loads((artefacts(bot_copy) / "bot.json").read_text())["intent_bundle"])
    data = data.resolve().parents[2]
    store = Store(bot_copy / "bot.sqlite")
    t = store.add_turn("s", "my card got nicked on the bus", "...", "handoff", None, 0.1)
    store.label_ticket(store.add_ticket("s", "my card got nicked on the bus", t), "lost_or_stolen_card")
    store.close()
    old = json.loads((artefacts(bot_copy) / "bot.json").read_text())["intent_bundle"]
    report = retrain(bot_copy, base_train=data / "train.csv", test=data / "test.csv", runs=data / "runs",
                     exports=data / "exports", max_drop=1.0,
                     train_settings={"base_model": tiny_encoder_dir, "mode": "full", "epochs": 2, "batch_size": 8,
                                     "learning_rate": 2e-3, "max_length": 32, "early_stopping_patience": 0},
                     export_settings={"variants": ["fp32"], "measure": False},
                     calibration={"questions_file": data / "test.csv", "oos_file": data / "oos.txt",
                                  "kb_questions_file": data / "kbq.csv", "half": None,
                                  "oos_share": 0.5}).to_dict()
    assert report["data"]["feedback_rows"] == 1 and report["data"]["origins"] == ["ticket:1"]
    same = lambda a, b: (artefacts(bot_copy) / a).resolve() == (artefacts(bot_copy) / b).resolve()  # noqa: E731
    assert same(report["old_bundle"], old) and not same(report["new_bundle"], old)
    assert "accuracy" in report["old_metrics"] and "accuracy" in report["new_metrics"]
    assert report["accepted"] and "allowed drop 1.0000" in report["reason"]
    config = json.loads((artefacts(bot_copy) / "bot.json").read_text())
    assert same(config["intent_bundle"], report["new_bundle"]) and not Path(config["intent_bundle"]).is_absolute()
    assert config["previous_intent_bundles"] == [old]
    rows = Path(report["data"]["file"]).read_text()
    assert "my card got nicked on the bus,lost_or_stolen_card" in rows


def test_a_bot_whose_thresholds_belong_to_another_bundle_is_refused(bot_copy):
    """An interrupted rebuild (bot.json switched to a new bundle, thresholds still the old one's) must
    not answer with the wrong thresholds: loading names the mismatch in one line."""
    from tuneforge.errors import UsageError
    from tuneforge.plugins.support_bot.bot import Bot

    th = json.loads((artefacts(bot_copy) / "thresholds.json").read_text())
    assert th["calibrated_for"]["model_id"] and len(th["calibrated_for"]["manifest_sha256"]) == 64
    Bot.load(bot_copy)                                        # consistent: loads
    th["calibrated_for"] = {"model_id": "support-intents/v9", "manifest_sha256": "0" * 64}
    (artefacts(bot_copy) / "thresholds.json").write_text(json.dumps(th))
    with pytest.raises(UsageError, match="calibrated for support-intents/v9, but bot.json points to"):
        Bot.load(bot_copy)
    res = CliRunner().invoke(cli, ["support-bot", "eval", "--bot-dir", str(bot_copy)])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "interrupted rebuild" in res.output


def _rebuild(bot_dir: Path, intent_bundle: str, encoder_bundle: str) -> None:
    from tuneforge.plugins.support_bot.build import build_bot

    data = bot_dir.parent
    build_bot(bot_dir, intent_bundle, encoder_bundle=encoder_bundle, kb_dir=data / "kb", measure=False,
              calibration={"questions_file": data / "test.csv", "oos_file": data / "oos.txt",
                           "kb_questions_file": data / "kbq.csv", "half": None, "oos_share": 0.5, "router": False})


REBUILD_KILLED = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from tuneforge.plugins.support_bot import build
from test_support_bot_app import _rebuild

def killed(*args, **kwargs):          # the new generation has its config and index: die now, as kill -9
    os.kill(os.getpid(), signal.SIGKILL)

build.calibrate_bot = killed
_rebuild(Path({bot!r}), {intent!r}, {encoder!r})
"""


def test_an_interrupted_rebuild_keeps_the_bot_on_one_generation(bot_copy, tiny_bot):
    """Issue 14, defect 5: a rebuild with a new intent bundle killed half-way must leave bundle,
    thresholds and index of the previous build together; the next build clears its debris."""
    import subprocess

    from tuneforge.export import export_run
    from tuneforge.plugins.support_bot.bot import Bot, BotConfig, resolve

    runs = sorted((tiny_bot.parent / "runs").iterdir())
    new_intent = export_run(runs[-1], out_dir=bot_copy.parent / "exports", variants=["fp32"], measure=False)
    old = Bot.load(bot_copy)
    old_id, old_th = old.intent_predictor.manifest.model_id, old.thresholds.to_dict()
    encoder = str(resolve(bot_copy, BotConfig.load(bot_copy).encoder_bundle))
    before = (bot_copy / "CURRENT").read_text()

    script = REBUILD_KILLED.format(tests=str(ROOT / "tests"), bot=str(bot_copy), intent=str(new_intent),
                                   encoder=encoder)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (bot_copy / "CURRENT").read_text() == before          # the pointer never moved
    leftovers = list((bot_copy / "generations").glob(".*.tmp"))
    assert len(leftovers) == 1 and (leftovers[0] / "bot.json").is_file()   # it had got that far
    again = Bot.load(bot_copy)
    assert again.intent_predictor.manifest.model_id == old_id and again.thresholds.to_dict() == old_th

    with pytest.raises(RuntimeError, match="interrupted"):       # an exception half-way: the same
        from tuneforge.plugins.support_bot import build

        real = build.calibrate_bot
        build.calibrate_bot = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("interrupted"))
        try:
            _rebuild(bot_copy, str(new_intent), encoder)
        finally:
            build.calibrate_bot = real
    assert (bot_copy / "CURRENT").read_text() == before

    _rebuild(bot_copy, str(new_intent), encoder)                  # a whole rebuild switches everything
    new = Bot.load(bot_copy)
    assert new.intent_predictor.manifest.model_id != old_id
    assert new.thresholds.calibrated_for["model_id"] == new.intent_predictor.manifest.model_id
    assert not list((bot_copy / "generations").glob(".*.tmp"))    # the dead build's folder is gone
    assert len([p for p in (bot_copy / "generations").iterdir()]) <= 2


def test_a_bot_folder_from_before_generations_loads_and_moves_on(bot_copy):
    """bot.json at the top of the folder (tuneforge before generations): it loads, and the next
    change writes a generation whose relative paths still find the bundles."""
    import shutil

    from tuneforge.plugins.support_bot.bot import PATH_FIELDS, Bot, BotConfig, next_generation, portable, resolve

    gen = artefacts(bot_copy)
    config = BotConfig.load(gen)
    for field in PATH_FIELDS:            # as an older build wrote it: relative to the bot folder
        setattr(config, field, portable(resolve(gen, getattr(config, field)), bot_copy))
    config.save(gen)
    for part in gen.iterdir():
        shutil.move(str(part), bot_copy / part.name)
    shutil.rmtree(bot_copy / "generations")
    (bot_copy / "CURRENT").unlink()
    legacy = Bot.load(bot_copy)
    assert legacy.dir == bot_copy and legacy.info()["generation"] is None
    with next_generation(bot_copy) as new:
        assert (new / "thresholds.json").is_file() and (new / "index" / "index.faiss").is_file()
    moved = Bot.load(bot_copy)
    assert moved.dir.parent == bot_copy / "generations" and moved.dir.name == (bot_copy / "CURRENT").read_text().strip()
    assert moved.intent_predictor.manifest.model_id == legacy.intent_predictor.manifest.model_id
    assert moved.thresholds.to_dict() == legacy.thresholds.to_dict()
