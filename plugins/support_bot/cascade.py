"""The answer cascade: intent template -> knowledge-base passages -> clarifying question -> hand-off.

1. the intent classifier is confident (top probability >= ``thresholds.intent``): the
   intent's answer template, filled from the conversation memory;
2. else the best knowledge-base passage is similar enough (>= ``thresholds.retrieval``):
   an answer quoting the best passages, with their sources;
3. else the top two intents together are likely and close: "did you mean A or B?";
4. else an honest "I don't know" and a hand-off to a human (the caller files a ticket).

An intent model may also have the label ``knowledge_base`` (:data:`KB_INTENT`): questions the help
pages answer rather than an intent template.  When it is the confident top label, the answer
quotes the best passages (down to ``thresholds.handoff``, the "resembles our pages" floor); it is
never offered as a clarifying option.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .calibrate import Thresholds
from .knowledge import humanize, render
from .retrieval import Hit

KB_INTENT = "knowledge_base"
KINDS = ("template", "retrieval", "clarify", "handoff", "smalltalk", "decline")
IntentScorer = Callable[[list[str]], list[dict[str, float]]]     # texts -> {label: probability}
Retriever = Callable[[list[str], int], list[list[Hit]]]          # texts, k -> hits per text

DEFAULT_MESSAGES = {
    "_greeting": "Hello! I'm the support assistant. Ask me about cards, payments, transfers or your account.",
    "_handoff": "I'm sorry, I don't know the answer to that and I don't want to guess. "
                "I've passed your question to a colleague who will get back to you.",
    "_clarify": "Just to be sure I understand: do you mean (1) {option1} or (2) {option2}? "
                "Reply 1 or 2, or rephrase your question.",
    "_retrieval": "Here is what our help pages say:",
}
_AMOUNT = re.compile(r"(?P<cur>[£$€])\s?(?P<num>\d[\d,]*(?:\.\d+)?)|(?P<num2>\d[\d,]*(?:\.\d+)?)\s?"
                     r"(?P<cur2>GBP|EUR|USD|pounds?|euros?|dollars?)\b", re.IGNORECASE)
_SYMBOL = {"£": "GBP", "$": "USD", "€": "EUR", "pound": "GBP", "euro": "EUR", "dollar": "USD"}
_PICK = {"1": 0, "one": 0, "first": 0, "the first": 0, "2": 1, "two": 1, "second": 1, "the second": 1}


@dataclass
class Memory:
    """What a session remembers between turns."""

    last_intent: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)   # intents offered by a clarifying question

    def reset(self) -> None:
        self.last_intent, self.slots, self.pending = None, {}, []


@dataclass
class Answer:
    """One bot turn."""

    kind: str                      # template | retrieval | clarify | handoff
    text: str
    confidence: float              # the score the decision was made on
    intent: str | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)   # top intents
    sources: list[dict] = field(default_factory=list)                   # retrieval hits used/seen
    timings_ms: dict[str, float] = field(default_factory=dict)
    ticket_id: int | None = None
    turn_id: int | None = None
    turn_ref: str | None = None       # what clients see: unguessable, unlike turn_id

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = [{"intent": i, "score": round(s, 4)} for i, s in self.candidates]
        d["confidence"] = round(self.confidence, 4)
        return d


def extract_slots(text: str) -> dict[str, str]:
    """Slots the templates may use: ``amount`` (e.g. "£25.00") and ``currency`` (e.g. "GBP")."""
    m = _AMOUNT.search(text)
    if not m:
        return {}
    sym = m.group("cur") or m.group("cur2")
    num = m.group("num") or m.group("num2")
    currency = _SYMBOL.get(sym.lower().rstrip("s"), sym.upper())
    return {"amount": f"{sym}{num}" if m.group("cur") else f"{num} {sym}", "currency": currency}


def _trim(text: str, limit: int = 480) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind(".\n"))
    return cut[:end + 1] if end > limit // 2 else cut.rstrip() + "..."


class Cascade:
    """Decides and words one answer; ``score_intents`` and ``retrieve`` are injected (stubs in tests)."""

    def __init__(self, score_intents: IntentScorer, retrieve: Retriever, answers: dict[str, str],
                 thresholds: Thresholds, *, top_k: int = 5, max_passages: int = 2):
        self.score_intents, self.retrieve = score_intents, retrieve
        self.answers = {**DEFAULT_MESSAGES, **answers}
        self.thresholds, self.top_k, self.max_passages = thresholds, top_k, max_passages

    def message(self, key: str, memory: Memory | None = None, **extra) -> str:
        return render(self.answers[key], self._context(memory or Memory(), **extra))

    def _context(self, memory: Memory, **extra) -> dict:
        return {**memory.slots, "last_intent": humanize(memory.last_intent), **extra}

    def _template(self, intent: str, confidence: float, memory: Memory, candidates) -> Answer:
        text = self.message(intent, memory, intent=humanize(intent)) if intent in self.answers else \
            f"I understand this is about {humanize(intent)}."
        memory.last_intent, memory.pending = intent, []
        return Answer("template", text, confidence, intent=intent, candidates=candidates)

    def answer(self, text: str, memory: Memory | None = None) -> Answer:
        memory = memory if memory is not None else Memory()
        memory.slots.update(extract_slots(text))
        timings: dict[str, float] = {}
        choice = _PICK.get(text.strip().lower().rstrip(".!"))
        if memory.pending and choice is not None and choice < len(memory.pending):
            ans = self._template(memory.pending[choice], 1.0, memory, [])
            ans.timings_ms = {"total": 0.0}
            return ans
        t0 = time.perf_counter()
        probs = self.score_intents([text])[0]
        p_kb = probs.get(KB_INTENT, 0.0)
        ranked = sorted(((i, p) for i, p in probs.items() if i != KB_INTENT), key=lambda kv: -kv[1])[:2]
        ranked += [(None, 0.0)] * 2
        (i1, p1), (i2, p2) = ranked[0], ranked[1]
        candidates = [(i, p) for i, p in ranked[:2] if i is not None]
        timings["intent"] = (time.perf_counter() - t0) * 1000
        th = self.thresholds
        kb_hits = None
        if p_kb > p1 and p_kb >= th.intent:      # the intent model says: a help-page question
            t1 = time.perf_counter()
            kb_hits = self.retrieve([text], self.top_k)[0]
            timings["retrieval"] = (time.perf_counter() - t1) * 1000
            floor = min(th.retrieval, th.handoff) if th.handoff != float("inf") else th.retrieval
            kb_hits = [h for h in kb_hits if h.score >= floor] or None
        if kb_hits:
            ans = self.from_passages(kb_hits, kb_hits[0].score, memory, candidates, floor=floor)
            ans.confidence = p_kb
        elif i1 is not None and p1 >= th.intent:
            ans = self._template(i1, p1, memory, candidates)
        else:
            t1 = time.perf_counter()
            hits = self.retrieve([text], self.top_k)[0]
            timings["retrieval"] = (time.perf_counter() - t1) * 1000
            best = hits[0].score if hits else -1.0
            if best >= th.retrieval:
                ans = self.from_passages(hits, best, memory, candidates)
            elif i2 is not None and p1 + p2 >= th.clarify and p2 >= th.clarify_ratio * p1:
                memory.pending = [i1, i2]
                ans = Answer("clarify", self.message("_clarify", memory, option1=humanize(i1),
                                                     option2=humanize(i2)),
                             p1 + p2, intent=i1, candidates=candidates)
            elif best <= th.handoff or i2 is None:
                memory.pending = []
                ans = Answer("handoff", self.message("_handoff", memory), max(p1, best),
                             intent=i1, candidates=candidates)
            else:  # resembles our pages, yet nothing is sure: ask rather than hand off
                memory.pending = [i1, i2]
                ans = Answer("clarify", self.message("_clarify", memory, option1=humanize(i1),
                                                     option2=humanize(i2)),
                             p1 + p2, intent=i1, candidates=candidates)
            ans.sources = ans.sources or [h.to_dict() for h in hits[:3]]
        ans.timings_ms = {**timings, "total": (time.perf_counter() - t0) * 1000}
        return ans

    def from_passages(self, hits: list[Hit], best: float, memory: Memory, candidates,
                      floor: float | None = None) -> Answer:
        floor = self.thresholds.retrieval if floor is None else floor
        used = [h for h in hits if h.score >= floor][:self.max_passages]
        parts = [self.message("_retrieval", memory)]
        for h in used:
            parts.append(f"{_trim(h.chunk.text)}\n(source: {h.chunk.citation})")
        memory.pending = []
        return Answer("retrieval", "\n\n".join(parts), best, candidates=candidates,
                      sources=[h.to_dict() for h in used])
