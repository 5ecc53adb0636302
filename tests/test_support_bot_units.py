"""Support bot building blocks, without models: PII masking, chunking, templates, calibration,
cascade routing (stub scorers), SQLite storage, feedback folding."""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest

from tuneforge.errors import DataError, UsageError
from tuneforge.pii import mask
from tuneforge.plugins.support_bot.calibrate import Thresholds, threshold_for_precision
from tuneforge.plugins.support_bot.cascade import Cascade, Memory, extract_slots
from tuneforge.plugins.support_bot.conversation import Conversation
from tuneforge.plugins.support_bot.feedback import fold_feedback, record_feedback
from tuneforge.plugins.support_bot.knowledge import Chunk, load_answers, load_documents, render
from tuneforge.plugins.support_bot.retrieval import Hit
from tuneforge.plugins.support_bot.store import Store


# -- PII -------------------------------------------------------------------------
@pytest.mark.parametrize("text, masked", [
    ("my card 4111 1111 1111 1111 was stolen", "my card [CARD] was stolen"),
    ("card no. 4111-1111-1111-1111!", "card no. [CARD]!"),
    ("5500005555555559", "[CARD]"),
    ("send it to GB29 NWBK 6016 1331 9268 19 today", "send it to [IBAN] today"),
    ("iban de89370400440532013000", "iban [IBAN]"),
    ("write to john.doe+bank@example.co.uk", "write to [EMAIL]"),
    ("call +44 20 7946 0958", "call [PHONE]"),
    ("or (555) 123-4567 or 07700 900123", "or [PHONE] or [PHONE]"),
])
def test_pii_is_masked(text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize("text", ["I paid £250.00 on 12/03/2024", "transfer of 1,500 GBP in 2023",
                                  "my PIN is blocked after 3 tries", "order 123456 arrived"])
def test_amounts_dates_and_short_numbers_are_left_alone(text):
    assert mask(text) == text


# -- knowledge -------------------------------------------------------------------
def test_chunking_keeps_sources_headings_and_hashes(tmp_path):
    (tmp_path / "sub").mkdir()
    atm = "Second paragraph about ATMs that is long enough to stand alone. " * 6
    (tmp_path / "fees.md").write_text(f"# Fees\nIntro line.\n\n## ATM\nATM fee is 2%.\n\n{atm}\n"
                                      "## Cards\nCards are free.\n")
    (tmp_path / "sub" / "notes.txt").write_text("First paragraph.\n\nSecond paragraph " + "x" * 400)
    (tmp_path / "faq.csv").write_text("question,answer\nCan I close my account?,Yes in Settings.\n")
    (tmp_path / "faq2.jsonl").write_text(json.dumps({"question": "Is it free?", "answer": "Mostly."}) + "\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    docs = {d.source: d for d in load_documents(tmp_path)}
    assert sorted(docs) == ["faq.csv", "faq2.jsonl", "fees.md", "sub/notes.txt"]
    fees = docs["fees.md"].chunks
    assert [c.heading for c in fees][:2] == ["Fees", "Fees > ATM"]
    assert fees[1].text == "ATM fee is 2%." and fees[2].text == atm.strip() and fees[2].heading == "Fees > ATM"
    assert fees[-1].heading == "Fees > Cards" and len(fees) == 4
    assert all(c.source == "fees.md" and c.doc_hash == docs["fees.md"].sha256 for c in fees)
    assert fees[1].citation == "fees.md § Fees > ATM" and fees[1].id == "fees.md#1"
    assert len(docs["sub/notes.txt"].chunks) == 2
    assert docs["faq.csv"].chunks[0].text == "Can I close my account?\nYes in Settings."
    assert docs["faq2.jsonl"].chunks[0].heading == "Is it free?"


def test_bad_faq_file_names_file_and_line(tmp_path):
    (tmp_path / "faq.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n')
    with pytest.raises(DataError, match=r"faq.jsonl:2: a FAQ row needs"):
        load_documents(tmp_path)


def test_templates_fill_placeholders_with_defaults():
    assert render("Top up {amount|an amount} after {last_intent}.", {"last_intent": "card arrival"}) \
        == "Top up an amount after card arrival."
    assert render("{amount|x} in {currency}", {"amount": "£20", "currency": "GBP"}) == "£20 in GBP"
    assert extract_slots("can I send €25.50 to my mum") == {"amount": "€25.50", "currency": "EUR"}
    assert extract_slots("I topped up 40 pounds")["currency"] == "GBP"


def test_bundled_answers_cover_every_intent_and_kb_exists():
    from tuneforge.plugins.support_bot import DATA, KB
    from tuneforge.plugins.support_bot.datasets import kb_questions, out_of_scope

    labels = json.loads((DATA / "categories.json").read_text())
    answers = load_answers(DATA / "answers.yaml", labels=labels)
    assert set(labels) <= set(answers) and len(labels) == 77
    sources = {d.source for d in load_documents(KB)}
    assert 25 <= len(sources) <= 40
    assert {s for _, s in kb_questions()} <= sources
    assert len(out_of_scope()) >= 100


def test_answers_missing_an_intent_is_one_clear_error(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("card_arrival: It is on its way.\n")
    with pytest.raises(DataError, match="no answer template for 1 intent"):
        load_answers(path, labels=["card_arrival", "lost_or_stolen_card"])


# -- calibration -----------------------------------------------------------------
def test_calibration_reaches_target_precision_with_most_coverage():
    rng = np.random.default_rng(0)
    correct = rng.random(2000) < 0.7
    scores = np.where(correct, rng.beta(5, 2, 2000), rng.beta(2, 5, 2000))   # right answers score higher
    cal = threshold_for_precision(scores, correct, 0.95)
    accepted = scores >= cal.threshold
    assert cal.reached and correct[accepted].mean() >= 0.95
    assert cal.precision == pytest.approx(correct[accepted].mean())
    assert cal.coverage == pytest.approx(accepted.mean())
    lower = scores[scores < cal.threshold].max()      # any lower threshold misses the target
    assert correct[scores >= lower].mean() < 0.95


def test_weighted_calibration_gives_rare_negatives_their_share():
    # 95 in-scope items, 90 right; 5 out-of-scope items that score as high as the wrong ones
    scores = [0.9] * 90 + [0.5] * 5 + [0.5] * 5
    correct = [True] * 90 + [False] * 5 + [False] * 5
    assert threshold_for_precision(scores, correct, 0.9).threshold == 0.5        # 90/100 passes unweighted
    weights = [1.0] * 95 + [9.0] * 5                                             # out-of-scope = 1/3 of traffic
    cal = threshold_for_precision(scores, correct, 0.9, weights=weights)
    assert cal.threshold == 0.9 and cal.precision == 1.0 and cal.coverage == pytest.approx(90 / 140)


def test_calibration_that_cannot_reach_the_target_never_accepts():
    cal = threshold_for_precision([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [False] * 6, 0.9)
    assert not cal.reached and cal.threshold == float("inf")
    th = Thresholds(intent=cal.threshold, retrieval=0.5)
    assert Thresholds.from_dict(json.loads(json.dumps(th.to_dict()))).intent == float("inf")


def test_thresholds_validated_and_saved(tmp_path):
    with pytest.raises(UsageError, match="threshold intent"):
        Thresholds(intent="high", retrieval=0.5)
    Thresholds(intent=0.8, retrieval=0.6, clarify=0.9).save(tmp_path / "t.json")
    assert Thresholds.load(tmp_path / "t.json").clarify == 0.9


# -- cascade ---------------------------------------------------------------------
ANSWERS = {"card_arrival": "Cards arrive in 5 days.", "lost_or_stolen_card": "Freeze your card.",
           "top_up_failed": "Your top-up of {amount|money} failed; earlier you asked about {last_intent|nothing}."}
PASSAGE = Chunk(id="fees.md#0", source="fees.md", heading="Fees > ATM", text="ATM fee is 2%.", doc_hash="h")


def stub_cascade(probs: dict, best: float, handoff: float = float("inf")):
    calls = []

    def retrieve(texts, k):
        calls.append(texts)
        return [[Hit(PASSAGE, best)]]

    th = Thresholds(intent=0.7, retrieval=0.6, clarify=0.8, clarify_ratio=0.3, handoff=handoff)
    return Cascade(lambda texts: [probs], retrieve, ANSWERS, th), calls


def test_cascade_confident_intent_uses_template_without_retrieval():
    cascade, calls = stub_cascade({"card_arrival": 0.9, "lost_or_stolen_card": 0.05}, best=0.99)
    ans = cascade.answer("where is my card", Memory())
    assert (ans.kind, ans.intent, ans.text) == ("template", "card_arrival", "Cards arrive in 5 days.")
    assert calls == [] and ans.confidence == 0.9


def test_cascade_falls_back_to_passages_with_sources():
    cascade, calls = stub_cascade({"card_arrival": 0.4, "lost_or_stolen_card": 0.1}, best=0.75)
    ans = cascade.answer("atm fee?", Memory())
    assert ans.kind == "retrieval" and "ATM fee is 2%." in ans.text and "fees.md § Fees > ATM" in ans.text
    assert ans.sources[0]["source"] == "fees.md" and ans.confidence == 0.75


def test_cascade_asks_when_top_two_are_close_and_resolves_the_reply():
    cascade, _ = stub_cascade({"card_arrival": 0.45, "lost_or_stolen_card": 0.4, "top_up_failed": 0.15}, best=0.2)
    memory = Memory()
    ans = cascade.answer("my card", memory)
    assert ans.kind == "clarify" and "card arrival" in ans.text and "lost or stolen card" in ans.text
    follow = cascade.answer("2", memory)
    assert (follow.kind, follow.intent) == ("template", "lost_or_stolen_card")
    assert memory.pending == [] and memory.last_intent == "lost_or_stolen_card"


def test_cascade_hands_off_when_nothing_is_sure():
    cascade, _ = stub_cascade({"card_arrival": 0.35, "lost_or_stolen_card": 0.05}, best=0.3)
    ans = cascade.answer("what is the weather", Memory())
    assert ans.kind == "handoff" and "don't know" in ans.text


@pytest.mark.parametrize("best, kind", [(0.45, "retrieval"), (0.2, "handoff")])
def test_a_confident_knowledge_base_label_answers_from_the_pages(best, kind):
    """An intent model that knows help-page questions (label knowledge_base): when that label is
    the confident top one, the best passages answer down to the hand-off floor, even below the
    retrieval threshold; it is never offered as a clarifying option."""
    probs = {"knowledge_base": 0.8, "card_arrival": 0.12, "lost_or_stolen_card": 0.08}
    cascade, calls = stub_cascade(probs, best=best, handoff=0.3)
    memory = Memory()
    ans = cascade.answer("what is the ATM fee", memory)
    assert ans.kind == kind and calls
    if kind == "retrieval":
        assert "ATM fee is 2%." in ans.text and ans.confidence == 0.8 and ans.intent is None
    else:                      # no passage resembles it: the usual cascade (intents only)
        assert memory.pending == [] and ans.intent == "card_arrival"


@pytest.mark.parametrize("best, kind", [(0.25, "handoff"), (0.45, "clarify")])
def test_calibrated_handoff_only_for_questions_that_resemble_no_page(best, kind):
    """Below the hand-off similarity: a ticket; above it (looks like ours, nothing sure): ask."""
    cascade, _ = stub_cascade({"card_arrival": 0.35, "lost_or_stolen_card": 0.05}, best=best, handoff=0.3)
    memory = Memory()
    ans = cascade.answer("hmm, my card thing", memory)
    assert ans.kind == kind
    assert memory.pending == ([] if kind == "handoff" else ["card_arrival", "lost_or_stolen_card"])


def test_handoff_threshold_is_calibrated_for_ticket_precision():
    from tuneforge.plugins.support_bot.build import _calibrate_handoff

    class StubBot:  # in-scope questions resemble a page (0.5); out-of-scope ones do not (0.1)
        def score_intents(self, texts):
            return [{"card_arrival": 0.3, "lost_or_stolen_card": 0.05} for _ in texts]

        def retrieve(self, texts, k):
            return [[Hit(PASSAGE, 0.1 if t.startswith("oos") else 0.5)] for t in texts]

    questions = [(f"q{i}", "card_arrival") for i in range(20)]
    oos = [f"oos{i}" for i in range(10)]
    top = [[("card_arrival", 0.3), ("lost_or_stolen_card", 0.05)]] * 30
    cal = _calibrate_handoff(StubBot(), questions, [], oos, top, [0.3] * 30, 0.7, 0.6, 0.8, 0.9, 5)
    assert cal.reached and cal.accepted == 10 and cal.precision == 1.0
    assert 0.1 <= -cal.threshold < 0.5  # hand off at or below a similarity that keeps in-scope out


def test_template_uses_memory_slots_and_last_intent():
    cascade, _ = stub_cascade({"top_up_failed": 0.95}, best=0.0)
    memory = Memory(last_intent="card_arrival")
    ans = cascade.answer("my top up of £20 failed", memory)
    assert ans.text == "Your top-up of £20 failed; earlier you asked about card arrival."
    assert memory.slots["amount"] == "£20" and memory.last_intent == "top_up_failed"


# -- storage, feedback -------------------------------------------------------------
SECRET = "my card 4111 1111 1111 1111, mail jo@example.com, IBAN GB29NWBK60161331926819, tel +44 20 7946 0958"


def test_transcripts_and_tickets_are_stored_masked(tmp_path):
    cascade, _ = stub_cascade({"card_arrival": 0.1}, best=0.0)
    store = Store(tmp_path / "bot.sqlite")
    conv = Conversation(cascade, store)
    ans = conv.turn("s1", SECRET)
    assert ans.kind == "handoff" and ans.ticket_id == 1 and "#1" in ans.text
    store.close()
    db = sqlite3.connect(tmp_path / "bot.sqlite")
    dump = "\n".join(db.iterdump())
    for secret in ("4111", "jo@example.com", "GB29", "7946"):
        assert secret not in dump
    user_text, kind = db.execute("SELECT user_text, kind FROM turns").fetchone()
    assert user_text == "my card [CARD], mail [EMAIL], IBAN [IBAN], tel [PHONE]" and kind == "handoff"
    assert db.execute("SELECT question, status, turn_id FROM tickets").fetchone() == (user_text, "open", 1)


def test_chat_commands_reset_memory(tmp_path):
    cascade, _ = stub_cascade({"card_arrival": 0.9}, best=0.0)
    conv = Conversation(cascade, Store(tmp_path / "b.sqlite"))
    conv.turn("s", "where is my card")
    assert conv.memory("s").last_intent == "card_arrival"
    assert conv.turn("s", "/reset").kind == "reset" and conv.memory("s").last_intent is None
    assert "/quit" in conv.turn("s", "/help").text and conv.turn("s", "/quit").kind == "quit"
    assert conv.store.turns() and all(t["kind"] == "template" for t in conv.store.turns())


def test_feedback_and_labelled_tickets_are_folded_into_training_data(tmp_path):
    store = Store(tmp_path / "bot.sqlite")
    labels = ["card_arrival", "lost_or_stolen_card", "top_up_failed"]
    right = store.add_turn("s", "where's my new card", "...", "template", "card_arrival", 0.9)
    wrong = store.add_turn("s", "my top up bounced", "...", "template", "card_arrival", 0.8)
    unsure = store.add_turn("s", "someone has my card 4111111111111111", "...", "handoff", None, 0.2)
    ticket = store.add_ticket("s", "someone has my card 4111111111111111", turn_id=unsure)
    store.add_turn("s", "no feedback here", "...", "template", "card_arrival", 0.9)
    record_feedback(store, labels, turn_id=right, verdict="right")
    record_feedback(store, labels, turn_id=wrong, verdict="wrong", intent="top_up_failed")
    record_feedback(store, labels, ticket_id=ticket, intent="lost_or_stolen_card")
    with pytest.raises(UsageError, match="unknown intent 'lost_card'") as err:
        record_feedback(store, labels, ticket_id=ticket, intent="lost_card")
    assert "did you mean 'lost_or_stolen_card'?" in err.value.one_line()
    with pytest.raises(UsageError, match="no turn 99"):
        record_feedback(store, labels, turn_id=99, verdict="right")
    base = tmp_path / "train.csv"
    base.write_text("text,category\nwhere's my new card,card_arrival\nI lost my card,lost_or_stolen_card\n")
    out = fold_feedback(store, base, tmp_path / "retrain" / "train.csv")
    assert out["base_rows"] == 2 and out["feedback_rows"] == 2     # the confirmed turn duplicates a base row
    assert sorted(out["origins"]) == [f"ticket:{ticket}", f"turn:{wrong}"]
    rows = list(csv.DictReader(open(out["file"], encoding="utf-8")))
    assert {"text": "my top up bounced", "category": "top_up_failed"} in rows
    assert {"text": "someone has my card [CARD]", "category": "lost_or_stolen_card"} in rows


def test_intent_training_rows_add_bank_phrasings_and_help_pages_without_evaluation_rows():
    """The support-intents task trains on BANKING77 train + bank phrasings written for tuneforge +
    knowledge_base rows; nothing from an evaluation half may be among them, every label is the task's."""
    from tuneforge.plugins.support_bot.datasets import (INTENT_TRAIN, intent_training_rows, kb_questions,
                                                        labelled_questions)
    from tuneforge.plugins.support_bot.router import eval_rows
    from tuneforge.tasks import get_task

    rows = intent_training_rows()
    banking = labelled_questions(INTENT_TRAIN)
    assert rows[:len(banking)] == banking and len(rows) > len(banking) + 800
    assert {y for _, y in rows} <= set(get_task("support-intents").labels)
    kb_rows = [t for t, y in rows if y == "knowledge_base"]
    assert len(kb_rows) > 400
    texts = {t.strip().lower() for t, _ in rows}
    held_out = [q for q, _ in kb_questions(half="evaluation")] + \
        [t for name in ("bank_paraphrases", "bank_unanswerable", "off_domain", "small_talk")
         for t, _ in eval_rows(name, None, "evaluation")]
    assert not [t for t in held_out if t.strip().lower() in texts]
    test_file = INTENT_TRAIN.with_name("test.csv")          # any other file is read as it is
    assert intent_training_rows(test_file) == labelled_questions(test_file)
