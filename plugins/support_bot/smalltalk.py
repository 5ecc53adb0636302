"""The conversation layer: small talk, off-topic declines, hand-off on request, clarify follow-ups.

It runs before the banking cascade.  Its replies are editable like the intent templates
(``data/conversation/responses.yaml``: one key per act, a list of variants).  It never files a
ticket unasked -- only ``human_request`` (the customer asked for a person) hands off -- and it
never answers with a banking template.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tuneforge.errors import ConfigError

from .cascade import Answer, Memory
from .router import ACTS, OFF_TOPIC, Route

DECLINE = "off_topic_decline"
RESPONSES_KEYS = (*ACTS, DECLINE)
_WORDS = re.compile(r"[^a-z0-9 ]+")
YES = {"yes", "yeah", "yep", "yup", "correct", "right", "exactly", "thats right", "that one", "sure", "ok", "okay"}
NO = {"no", "nope", "nah", "neither", "none", "not really", "no thanks", "wrong", "neither of those"}
PICKS = {"1": 0, "one": 0, "first": 0, "the first": 0, "option 1": 0, "2": 1, "two": 1, "second": 1,
         "the second": 1, "option 2": 1, "the other": 1, "the latter": 1, "the former": 0, "last": 1}


def load_responses(path: str | Path) -> dict[str, list[str]]:
    """The replies file: every act and ``off_topic_decline`` needs at least one string."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the replies: {exc}") from None
    replies = {str(k): ([v] if isinstance(v, str) else list(v or [])) for k, v in data.items()}
    missing = [k for k in RESPONSES_KEYS if not replies.get(k)]
    if missing:
        raise ConfigError(f"{path}: no reply for {', '.join(missing)}", hint="add one string per key at least")
    return replies


def normalise(text: str) -> str:
    words = _WORDS.sub(" ", text.lower()).split()
    return " ".join(w for w in words if w not in ("one", "please", "the", "option")) or " ".join(words)


def pick(replies: dict[str, list[str]], key: str, seed: str) -> str:
    """A variant of ``key``, chosen by a hash of ``seed`` (stable for a session's turn)."""
    options = replies[key]
    return options[int(hashlib.md5(seed.encode()).hexdigest()[:6], 16) % len(options)]


def follow_up(text: str, memory: Memory) -> int | str | None:
    """How a message answers an open clarifying question: the index of the chosen option,
    ``"no"`` (none of them), or ``None`` (a new question)."""
    if not memory.pending:
        return None
    raw = " ".join(_WORDS.sub(" ", text.lower()).split())
    words = normalise(text)
    for form in (raw, words, "the " + words):
        if form in PICKS and PICKS[form] < len(memory.pending):
            return PICKS[form]
    if raw in YES or words in YES or raw.startswith(("yes ", "yeah ", "yep ")):
        return 0
    if raw in NO or words in NO or raw.startswith(("no ", "nope ")):
        return "no"
    return None


def small_talk_answer(route: Route, replies: dict[str, list[str]], seed: str) -> Answer:
    """The reply for a non-bank route: a decline for off-topic requests, else the act's reply.
    ``human_request`` comes back as kind ``handoff`` (the caller files the ticket)."""
    if route.group == OFF_TOPIC:
        return Answer("decline", pick(replies, DECLINE, seed), route.score, intent=None)
    kind = "handoff" if route.group == "human_request" else "smalltalk"
    return Answer(kind, pick(replies, route.group, seed), route.score, intent=route.group)
