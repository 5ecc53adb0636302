"""``tuneforge finance backtest`` (issue 16): the stream replayed through the monitor's own code path,
alerts scored against labelled events (precision, recall, delay, alerts per entity per day, what the
cooldown held back), PNG timelines; the shipped benchmark stream is reproducible from its script."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_finance_scenario import run_monitor, write_config

from tuneforge.errors import UsageError
from tuneforge.metrics import wilson_interval
from tuneforge.plugins.finance.backtest import (
    GoldScorer,
    LabelledEvent,
    Replay,
    clean_headline,
    evaluate,
    read_events,
    run_backtest,
)
from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.durations import iso, parse_timestamp
from tuneforge.plugins.finance.sample import make_stream, write_jsonl
from tuneforge.plugins.finance.scoring import KeywordScorer

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_714_521_600.0


def _alert(key, ts, rule="share"):
    return {"id": f"{key}{ts}", "key": key, "ts": T0 + ts, "rule": rule, "time": iso(T0 + ts), "value": 1.0,
            "message": "m", "severity": "warning"}


def test_scores_match_alerts_to_events_of_the_same_entity_within_the_tolerance():
    events = [LabelledEvent("e1", "ACME", T0 + 1000, T0 + 2000, 10), LabelledEvent("e2", "GLBX", T0 + 5000,
                                                                                   T0 + 6000, 6),
              LabelledEvent("e3", "ACME", T0 + 50_000, T0 + 51_000, 5)]
    alerts = [_alert("ACME", 1600), _alert("ACME", 1900, "surge"),          # e1, twice (two rules)
              _alert("GLBX", 6000 + 3000, "surge"),                         # e2: 50 min after its end (tolerance 1 h)
              _alert("GLBX", 6000 + 3500, "surge"),                         # e2 again
              _alert("UMBR", 1500),                                         # no event for UMBR: false
              _alert("ACME", 900),                                          # before e1 starts: false
              _alert("*", 1500)]                                            # market-wide: not scored
    rep = Replay(alerts, {("share", "cooldown"): 2, ("surge", "dedup"): 1}, {}, T0, T0 + 2 * 86400,
                 {"ACME": [], "GLBX": [], "UMBR": [], "HOOL": []})
    r = evaluate(rep, events, tolerance=3600.0, rule_names=["share", "surge", "drop"])
    assert (r.overall.alerts, r.overall.matched, r.overall.precision) == (6, 4, round(4 / 6, 4))
    assert (r.overall.detected, r.overall.recall) == (2, round(2 / 3, 4))
    assert r.overall.precision_ci == (0.3, 0.903) and r.overall.recall_ci == (0.208, 0.939)   # Wilson, 95 %
    assert r.rules["drop"].precision_ci is None and r.rules["drop"].recall_ci == (0.0, 0.562)
    assert r.overall.median_delay_s == (600 + 4000) / 2                     # e1 600 s, e2 4000 s
    assert r.overall.alerts_per_entity_day == round(6 / (4 * 2), 4) and r.other_alerts == 1
    assert r.overall.suppressed == {"cooldown": 2, "dedup": 1}
    assert (r.rules["share"].precision, r.rules["share"].recall) == (round(1 / 3, 4), round(1 / 3, 4))
    assert (r.rules["surge"].precision, r.rules["surge"].detected) == (1.0, 2)
    assert r.rules["drop"].alerts == 0 and r.rules["drop"].precision is None
    assert [m["id"] for m in r.missed] == ["e3"]
    assert {(a["key"], a["time"]) for a in r.false_alerts} == {("UMBR", iso(T0 + 1500)), ("ACME", iso(T0 + 900))}


def test_wilson_interval_matches_the_textbook_values_and_stays_inside_0_1():
    lo, hi = wilson_interval(25, 30)                  # the backtest's held-out recall, 25 of 30 events
    assert (round(lo, 4), round(hi, 4)) == (0.6644, 0.9266)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) is None
    lo1, hi1 = wilson_interval(50, 100)
    lo2, hi2 = wilson_interval(500, 1000)
    assert hi2 - lo2 < hi1 - lo1                      # more trials, narrower
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(31, 30)


def test_labels_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "events.jsonl"
    bad.write_text('{"id": "a", "entity": "ACME", "start": "2024-05-01T00:00:00Z"}\n{"id": "b", "start": 1}\n')
    with pytest.raises(UsageError, match=r"events.jsonl:2: not a labelled event \(missing 'entity'\)"):
        read_events(bad)
    bad.write_text('{"id": "a", "entity": "ACME", "start": 10, "end": 5}\n')
    with pytest.raises(UsageError, match=":1: .*end is before start"):
        read_events(bad)


@pytest.fixture
def burst_stream(tmp_path):
    items = make_stream(600, burst_ticker="ACME", burst_n=12)
    write_jsonl(items, tmp_path / "news.jsonl")
    burst = [parse_timestamp(d["timestamp"]) for d in items if d["id"].startswith("b")]
    (tmp_path / "events.jsonl").write_text(json.dumps({"id": "acme-fraud", "entity": "ACME", "start": iso(burst[0]),
                                                       "end": iso(burst[-1]), "size": 12}) + "\n")
    return tmp_path, items


def test_backtest_replays_through_the_monitor_and_raises_what_a_live_run_raises(burst_stream):
    folder, items = burst_stream
    _, live = run_monitor(folder, files=["news.jsonl"])                 # the monitor itself, same config
    config = MonitorConfig.load(folder / "monitor.toml")
    result = run_backtest(folder / "news.jsonl", folder / "events.jsonl", config, KeywordScorer(),
                          out_dir=folder / "bt")
    saved = json.loads((folder / "bt" / "backtest.json").read_text())
    assert result.overall.alerts == len(live) == 1 and saved["overall"]["precision"] == 1.0
    assert (result.overall.recall, result.events, result.entities) == (1.0, 1, 5)
    assert 0 <= result.overall.median_delay_s < 3600
    assert sorted(Path(p).name for p in result.pngs) == [f"timeline-{t}.png" for t in
                                                         ("ACME", "GLBX", "HOOL", "INIT", "UMBR")]
    assert Path(result.pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stats["scored"] == len(items)


def test_backtest_cli_table_and_json(burst_stream):
    from tuneforge.cli import cli

    folder, _ = burst_stream
    write_config(folder, files=["news.jsonl"])
    args = ["finance", "backtest", "--stream", str(folder / "news.jsonl"), "--events", str(folder / "events.jsonl"),
            "--config", str(folder / "monitor.toml"), "--scorer", "keywords"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "| **overall** | 1 | 1.000 [0.21, 1.00] | 1.000 (1/1) [0.21, 1.00] |" in out.output
    assert "negative-surge" in out.output
    js = CliRunner().invoke(cli, args + ["--json", "--tolerance", "30m"])
    assert json.loads(js.output)["tolerance_s"] == 1800
    missing = CliRunner().invoke(cli, ["finance", "backtest", "--stream", str(folder / "nope.jsonl"),
                                       "--events", str(folder / "events.jsonl"), "--scorer", "keywords"])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_gold_scorer_reads_the_bundled_headlines_labels():
    gold = GoldScorer.from_csv(ROOT / "plugins" / "finance" / "data" / "valid.csv")
    assert clean_headline("$BYND - JPMorgan reels in expectations https://t.co/x") == "JPMorgan reels in expectations"
    text = next(t for t, lab in gold.labelled.items() if lab == "negative")
    assert gold.score([f"$ACME - {text}"]).tolist() == [[1.0, 0.0, 0.0]]


def test_shipped_benchmark_stream_is_reproduced_by_its_seeded_script(tmp_path):
    shipped = ROOT / "plugins" / "finance" / "data" / "backtest"
    subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    names = sorted(p.name for p in shipped.glob("*.jsonl"))
    assert names == ["test-events.jsonl", "test-noise.jsonl", "test.jsonl", "tune-events.jsonl",
                     "tune-noise.jsonl", "tune.jsonl"]
    assert all(filecmp.cmp(shipped / n, tmp_path / n, shallow=False) for n in names)
    events = read_events(shipped / "test-events.jsonl")
    assert len(events) == 30 and len({e.entity for e in events}) == 10
    assert min(e.size for e in events) >= 5 and max(e.size for e in events) <= 30


def test_stream_replicas_enlarge_the_tune_half_only_from_its_own_headlines(tmp_path):
    """``--replicas 2``: the tune half gets two re-drawn copies on their own entities (ACMEB, ACMEC,
    ...), from the tune headline pool only; the held-out half stays byte for byte the shipped one."""
    shipped = ROOT / "plugins" / "finance" / "data" / "backtest"
    subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--out", str(tmp_path),
                    "--replicas", "2"], check=True, capture_output=True)
    for name in ("test.jsonl", "test-events.jsonl", "test-noise.jsonl"):
        assert filecmp.cmp(shipped / name, tmp_path / name, shallow=False)
    events = read_events(tmp_path / "tune-events.jsonl")
    assert len(events) == 90 and len({e.entity for e in events}) == 30
    assert {e.entity for e in events} >= {"ACME", "ACMEB", "ACMEC"}
    assert len({e.id for e in events}) == 90
    rows = [json.loads(line) for line in (tmp_path / "tune.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows)
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    held_out = {json.loads(line)["text"].split(" - ", 1)[1]
                for line in (shipped / "test.jsonl").read_text().splitlines()}
    assert not {r["text"].split(" - ", 1)[1] for r in rows} & held_out     # disjoint headline pools
    original = (shipped / "tune.jsonl").read_text().splitlines()
    assert len(rows) > 2.5 * len(original)


def test_stream_only_replicas_holds_those_copies_alone_the_same_as_inside_a_larger_stream(tmp_path):
    """``--only-replicas 2-3``: the tune file holds copies 2 and 3 only (events kept out of a search on
    ``--replicas 1``), each exactly as ``--replicas 3`` draws it; the held-out half is unchanged."""
    stream = [sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--days", "6", "--entities", "3"]
    subprocess.run([*stream, "--out", str(tmp_path / "all"), "--replicas", "3"], check=True, capture_output=True)
    subprocess.run([*stream, "--out", str(tmp_path / "kept"), "--only-replicas", "2-3"], check=True, capture_output=True)
    kept = read_events(tmp_path / "kept" / "tune-events.jsonl")
    assert {e.entity[-1] for e in kept} == {"C", "D"} and len(kept) == 2 * 3 * 3
    every = [json.loads(line) for line in (tmp_path / "all" / "tune.jsonl").read_text().splitlines()]
    assert [json.loads(line) for line in (tmp_path / "kept" / "tune.jsonl").read_text().splitlines()] == [
        r for r in every if r["id"][2] in "CD"]
    assert filecmp.cmp(tmp_path / "all" / "test.jsonl", tmp_path / "kept" / "test.jsonl", shallow=False)
    bad = subprocess.run([*stream, "--out", str(tmp_path / "bad"), "--only-replicas", "3-2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "A <= B" in bad.stderr


def test_tune_script_balanced_tune_only_never_replays_the_held_out_half(tmp_path):
    """``--tune-only`` chooses on the tune half and leaves the held-out half unread (a choice can be
    written down before it is looked at); ``--criterion balanced`` keeps the set with the highest
    min(precision, recall) among those it tried, the template's own set included."""
    data = tmp_path / "bt"
    subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--out", str(data),
                    "--days", "6", "--entities", "3"], check=True, capture_output=True)
    (data / "test.jsonl").write_text("not json\n")          # would fail if it were replayed
    out = tmp_path / "tuned.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_tune.py"), "--data-dir", str(data),
                          "--scorer", "gold", "--joint", "--kinds", "negative_share", "--criterion", "balanced",
                          "--min-precision", "0", "--tune-only", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["criterion"] == "balanced" and result["test"] is None
    assert result["template_defaults"]["test"] is None and "held out" not in run.stdout
    joint = [g for g in result["grid"] if "joint" in g]
    assert len(joint) == 24                                  # the share grid (the template's set is extra)
    best = max(min(g["precision"] or 0.0, g["recall"]) for g in joint)
    o = result["tune"]["overall"]
    assert min(o["precision"], o["recall"]) >= best
    assert [r["kind"] for r in result["rules"]] == ["negative_share"] or result["rules"] == read_template_rules()


def test_tune_script_template_rules_only_moves_negative_at(tmp_path):
    """``--template-rules``: no rule search, the template's rules replayed at each ``--negative-at``;
    the chosen value is the one with the best min(precision, recall) in its own log."""
    data = tmp_path / "bt"
    subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--out", str(data),
                    "--days", "6", "--entities", "3"], check=True, capture_output=True)
    out = tmp_path / "tuned.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_tune.py"), "--data-dir", str(data),
                          "--scorer", "keywords", "--template-rules", "--negative-at", "0.2,0.5,0.9",
                          "--criterion", "balanced", "--min-precision", "0", "--tune-only", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["rules"] == read_template_rules()
    assert [g["negative_at"] for g in result["grid"]] == [0.2, 0.5, 0.9]
    best = max(result["grid"], key=lambda g: min(g["precision"] or 0.0, g["recall"]))
    o = result["tune"]["overall"]
    assert min(o["precision"] or 0.0, o["recall"]) == min(best["precision"] or 0.0, best["recall"])
    assert result["negative_at"] in (0.2, 0.5, 0.9) and result["test"] is None


def read_template_rules():
    from tuneforge.storage import read_toml

    return read_toml(ROOT / "plugins" / "finance" / "templates" / "finance-monitor" / "monitor.toml")["rules"]


def test_backtest_without_config_reads_the_stream_the_way_the_template_does():
    """The default replay is the shipped template: its rules and its ``[model] negative_at``
    (how a probability becomes a negative item), only the scorer and the watchlist left out."""
    from tuneforge.plugins.finance import TEMPLATES
    from tuneforge.plugins.finance.backtest import default_config
    from tuneforge.storage import read_toml

    template = read_toml(TEMPLATES / "finance-monitor" / "monitor.toml")
    cfg = default_config()
    assert cfg.model.negative_at == template["model"]["negative_at"] is not None
    assert [r.name for r in cfg.rules] == [r["name"] for r in template["rules"]]
    assert "negative_run" in [r.kind for r in cfg.rules] and not cfg.watchlist.companies


def test_sentiment_posts_stream_form_scores_headlines_as_the_stream_shows_them(monkeypatch):
    """``bench/sentiment_posts.py --stream-form``: links and cashtags removed as the stream's generator
    removes them, short texts left out with their gold rows, and ``tagged`` puts the stream's tag in front."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from finance_backtest_stream import ENTITIES
    from sentiment_posts import as_stream

    texts = ["$TSLA Tesla recalls 2m cars over autopilot https://t.co/x", "too short", "Shares of Acme jump after results"]
    gold, labels = np.array([-1.0, 0.0, 1.0]), ["negative", "neutral", "positive"]
    bare, g, lab = as_stream(texts, gold, labels, tagged=False)
    assert all("$" not in t and "http" not in t and len(t) >= 20 for t in bare) and len(bare) == 2
    assert g.tolist() == [-1.0, 1.0] and lab == ["negative", "positive"]
    tagged, _, _ = as_stream(texts, gold, None, tagged=True)
    assert tagged == [f"${ENTITIES[0]} - {bare[0]}", f"${ENTITIES[1]} - {bare[1]}"]


def test_stream_replica_half_test_draws_held_out_copies_from_the_test_pool_only(tmp_path):
    """``--replica-half test --only-replicas 1-2``: the test file holds two re-drawn copies of the test
    half (its own headline pool, seeds no tune copy uses); the tune half stays the default one."""
    stream = [sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--days", "6", "--entities", "3"]
    subprocess.run([*stream, "--out", str(tmp_path / "plain")], check=True, capture_output=True)
    subprocess.run([*stream, "--out", str(tmp_path / "held"), "--only-replicas", "1-2", "--replica-half", "test"],
                   check=True, capture_output=True)
    subprocess.run([*stream, "--out", str(tmp_path / "tune"), "--only-replicas", "1-2"], check=True, capture_output=True)
    held = read_events(tmp_path / "held" / "test-events.jsonl")
    assert {e.entity[-1] for e in held} == {"B", "C"} and len(held) == 2 * 3 * 3
    for name in ("tune.jsonl", "tune-events.jsonl"):
        assert filecmp.cmp(tmp_path / "plain" / name, tmp_path / "held" / name, shallow=False)

    def texts(path):
        return {json.loads(line)["text"].split(" - ", 1)[1] for line in path.read_text().splitlines()}

    held_texts = texts(tmp_path / "held" / "test.jsonl")
    assert held_texts <= texts(tmp_path / "plain" / "test.jsonl") | _test_pool()    # the test pool only
    assert not held_texts & texts(tmp_path / "tune" / "tune.jsonl")
    tune_copies = read_events(tmp_path / "tune" / "tune-events.jsonl")
    assert [e.start for e in held] != [e.start for e in tune_copies]                 # other seeds


def _test_pool() -> set[str]:
    sys.path.insert(0, str(ROOT / "bench"))
    from finance_backtest_stream import pools

    return {t for texts in pools(16)["test"].values() for t in texts}


def test_halves_script_scores_each_copy_alone_and_counts_the_halves_that_pass(tmp_path):
    """``bench/finance_backtest_halves.py``: one replay, each half's alerts and events scored apart; the
    pooled counts are the sums of the halves' and the pass count applies the target to both numbers."""
    data = tmp_path / "bt"
    subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_stream.py"), "--out", str(data),
                    "--days", "6", "--entities", "3", "--replicas", "2"], check=True, capture_output=True)
    out = tmp_path / "halves.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "finance_backtest_halves.py"), "--data-dir", str(data),
                          "--scorer", "gold", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    halves, s = result["halves"], result["summary"]
    assert sorted(halves) == ["-", "B", "C"] and all(h["events"] == 9 for h in halves.values())
    assert s["events"] == 27 and s["alerts"] == sum(h["alerts"] for h in halves.values())
    whole = run_backtest_json(data)
    assert s["alerts"] == whole["overall"]["alerts"] and s["recall"] == pytest.approx(whole["overall"]["recall"], abs=1e-3)
    passed = [t for t, h in halves.items() if (h["precision"] or 0) >= 0.9 and h["recall"] >= 0.9]
    assert s["passed"] == len(passed) and s["pass_rate"] == round(len(passed) / 3, 3)
    assert "halves with both >= 0.9" in run.stdout


def run_backtest_json(data: Path) -> dict:
    from tuneforge.cli import cli

    res = CliRunner().invoke(cli, ["finance", "backtest", "--stream", str(data / "tune.jsonl"), "--events",
                                    str(data / "tune-events.jsonl"), "--scorer", "gold", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)
