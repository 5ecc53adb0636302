"""The conversation layer: routing (bank / small talk / off-topic), calibration, replies, clarify follow-ups."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.plugins.support_bot.cascade import Memory
from tuneforge.plugins.support_bot.router import ACTS, BANK, OFF_TOPIC, RESPONSES, Route, Router, calibrate_router
from tuneforge.plugins.support_bot.smalltalk import RESPONSES_KEYS, follow_up, load_responses, small_talk_answer


def embed(texts):
    """Bag of hashed words, unit length: enough to make neighbours meaningful in a unit test."""
    import zlib

    out = np.zeros((len(texts), 512), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace("?", "").replace("!", "").split():
            if w not in ("a", "the", "my", "i", "for", "is", "to", "some"):
                out[i, zlib.crc32(w.encode()) % 512] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


BANK_TEXTS = ["my card has not arrived", "how do I top up my account", "my card was stolen",
              "why was my transfer declined", "what is the exchange rate for euros"]
SMALL = [("hi", "greeting"), ("hello there", "greeting"), ("thanks", "thanks"), ("thank you so much", "thanks"),
         ("bye", "goodbye"), ("are you a bot", "bot_identity"), ("let me talk to a person", "human_request")]
OFF = [("set a timer for ten minutes", "timers"), ("what is the weather tomorrow", "weather"),
       ("play some jazz music", "music")]


@pytest.fixture
def router():
    return Router.build(embed, BANK_TEXTS, small_talk=SMALL, off_domain=OFF)


def test_router_sends_each_kind_of_message_to_its_group(router):
    routes = router.routes(embed(["hi", "thanks", "set a timer", "my card has not arrived yet"]))
    assert [r.group for r in routes] == ["greeting", "thanks", OFF_TOPIC, BANK]
    assert routes[3].margin < 0 < routes[2].margin and routes[2].margin > router.thresholds.margin


def test_calibration_keeps_bank_questions_with_the_bank(router):
    th = calibrate_router(router, embed, in_domain=BANK_TEXTS + ["my card has not arrived, help"],
                          small_talk=["hi", "thanks"], off_domain=["play jazz"], unanswerable=["my card is weird"])
    routes = router.routes(embed(BANK_TEXTS), th)
    assert all(r.is_bank for r in routes)
    assert th.details["in_domain_diverted"] <= 0.2 and th.details["small_talk_caught"] == 1.0


def test_router_saves_and_loads(router, tmp_path):
    router.save(tmp_path / "router")
    again = Router.load(tmp_path / "router")
    assert [r.group for r in again.routes(embed(["bye"]))] == ["goodbye"]
    assert again.thresholds == router.thresholds


@pytest.mark.parametrize("text,pending,expected", [
    ("yes", ["a", "b"], 0), ("Yes please!", ["a", "b"], 0), ("the second one", ["a", "b"], 1), ("2", ["a", "b"], 1),
    ("no", ["a", "b"], "no"), ("neither", ["a", "b"], "no"), ("yes", [], None),
    ("my card was stolen", ["a", "b"], None),
])
def test_a_clarifying_question_is_resolved_by_the_next_turn(text, pending, expected):
    assert follow_up(text, Memory(pending=list(pending))) == expected


def test_bundled_replies_cover_every_act_and_small_talk_never_tickets_unasked():
    replies = load_responses(RESPONSES)
    assert set(RESPONSES_KEYS) <= set(replies)
    for act in ACTS:
        answer = small_talk_answer(Route(act, 0.9, 0.1, 0.8), replies, "seed")
        assert answer.kind == ("handoff" if act == "human_request" else "smalltalk") and answer.text
    decline = small_talk_answer(Route(OFF_TOPIC, 0.9, 0.1, 0.8), replies, "s")
    assert decline.kind == "decline" and "card" in decline.text.lower()


def test_replies_file_missing_an_act_is_one_clear_error(tmp_path):
    (tmp_path / "r.yaml").write_text("greeting: hi\n")
    with pytest.raises(Exception, match="no reply for thanks"):
        load_responses(tmp_path / "r.yaml")


class StubCascade:
    """The banking cascade stand-in: hands off everything it is asked (so routing is what is tested)."""

    def __init__(self):
        self.asked = []

    def answer(self, text, memory):
        from tuneforge.plugins.support_bot.cascade import Answer

        self.asked.append(text)
        return Answer("handoff", "I don't know.", 0.1)

    def message(self, key):
        return "Hello!"


def test_conversation_routes_before_the_cascade_and_files_tickets_only_when_asked(router):
    from types import SimpleNamespace

    from tuneforge.plugins.support_bot.conversation import Conversation
    from tuneforge.plugins.support_bot.store import Store

    router.thresholds.ood = 0.2      # a hand-off of a message this unlike every bank question is declined
    bot = SimpleNamespace(router=router, responses=load_responses(RESPONSES), embed=embed)
    cascade, store = StubCascade(), Store(":memory:")
    conv = Conversation(cascade, store, bot=bot)
    kinds = {text: conv.turn("s1", text) for text in ("hi", "thanks", "set a timer", "let me talk to a person",
                                                      "my card has not arrived", "qqq zzz xxx")}
    assert [a.kind for a in kinds.values()] == ["smalltalk", "smalltalk", "decline", "handoff", "handoff", "decline"]
    assert kinds["hi"].ticket_id is None and kinds["set a timer"].ticket_id is None
    assert kinds["let me talk to a person"].ticket_id is not None       # asked for a person: a ticket
    assert cascade.asked == ["my card has not arrived", "qqq zzz xxx"]   # small talk never reached it
    assert len(store.tickets()) == 2
