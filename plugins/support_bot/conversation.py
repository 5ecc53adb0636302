"""Sessions: short memory per session id, chat commands, and every turn recorded (masked).

``/help`` lists what the bot can do, ``/reset`` forgets the session's memory, ``/quit``
ends a terminal chat (the caller's job: :meth:`Conversation.turn` answers kind ``quit``).
A hand-off files a ticket; its number is added to the answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from tuneforge.pii import mask

from .cascade import Answer, Cascade, Memory
from .smalltalk import DECLINE, follow_up, pick, small_talk_answer
from .store import Store

log = logging.getLogger(__name__)
HELP = """Ask me a question about your cards, payments, transfers, top-ups or your account.
Commands: /help (this text), /reset (forget this conversation), /quit (leave).
If I can't answer, I'll hand your question to a human colleague and give you a ticket number."""
MAX_SESSIONS = 10_000


class Conversation:
    """Answers turns for many sessions; thread-safe (the HTTP service shares one).

    With a ``bot`` that has a conversation router, each message is first routed (small talk,
    off-topic, bank); only bank questions reach the cascade, and a cascade hand-off of a message
    that resembles no bank question is declined rather than ticketed.
    """

    def __init__(self, cascade: Cascade, store: Store, bot=None):
        self.cascade, self.store, self.bot = cascade, store, bot
        self._sessions: OrderedDict[str, Memory] = OrderedDict()
        self._lock = threading.Lock()
        self._turns = 0

    def greeting(self) -> str:
        return self.cascade.message("_greeting")

    def memory(self, session: str) -> Memory:
        with self._lock:
            mem = self._sessions.pop(session, None) or Memory()
            self._sessions[session] = mem            # most recently used last
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return mem

    def new_session(self) -> str:
        """A server-issued session id (random; remembered by the store)."""
        return self.store.new_session()

    def respond(self, text: str, memory: Memory, seed: str = "") -> Answer:
        """The answer to one message, without recording it (evaluation uses this too)."""
        t0 = time.perf_counter()
        choice = follow_up(text, memory)
        if choice == "no":
            memory.pending = []
            return Answer("clarify", "No problem. Could you tell me a bit more about what you need?", 1.0)
        if choice is not None:
            return self.cascade.answer(str(choice + 1), memory)
        router = getattr(self.bot, "router", None)
        route = None
        if router is not None:
            prepare = getattr(self.bot, "prepare", None)
            if prepare is not None:         # encoder and intent model side by side (Bot.prepare)
                prepare(text)
            route = router.routes(self.bot.embed([text]))[0]
            if not route.is_bank:
                memory.pending = []
                answer = small_talk_answer(route, self.bot.responses, seed or text)
                answer.timings_ms = {"route": (time.perf_counter() - t0) * 1000}
                answer.timings_ms["total"] = answer.timings_ms["route"]
                return answer
        answer = self.cascade.answer(text, memory)
        if route is not None and answer.kind != "retrieval" and route.prefers_passages > router.thresholds.kb_margin:
            # closer to a knowledge-base passage than to anything the intent model was trained on
            hits = self.bot.retrieve([text], self.cascade.top_k)[0]
            if hits and hits[0].score >= self.cascade.thresholds.retrieval:
                answer = self.cascade.from_passages(hits, hits[0].score, memory, answer.candidates)
        if answer.kind == "handoff" and route is not None and route.bank < router.thresholds.ood:
            answer = Answer("decline", pick(self.bot.responses, DECLINE, seed or text), route.bank,
                            candidates=answer.candidates, timings_ms=answer.timings_ms)
        answer.timings_ms["total"] = (time.perf_counter() - t0) * 1000
        return answer

    def turn(self, session: str, text: str) -> Answer:
        command = text.strip().lower()
        if command in ("/quit", "/exit"):
            return Answer("quit", "Goodbye!", 1.0)
        if command == "/help":
            return Answer("help", HELP, 1.0)
        if command == "/reset":
            self.memory(session).reset()
            return Answer("reset", "OK, I've forgotten our conversation. How can I help?", 1.0)
        memory = self.memory(session)
        with self._lock:
            self._turns += 1
            seed = f"{session}:{self._turns}"
        answer = self.respond(text, memory, seed)
        answer.turn_id = self.store.add_turn(session, text, answer.text, answer.kind, answer.intent,
                                             answer.confidence, answer.sources)
        answer.turn_ref = self.store.turn_ref(answer.turn_id)
        if answer.kind == "handoff":
            answer.ticket_id = self.store.add_ticket(session, text, turn_id=answer.turn_id)
            answer.text += f" Your ticket number is #{answer.ticket_id}."
        log.info("session=%s turn=%s kind=%s intent=%s conf=%.3f text=%r", session, answer.turn_id,
                 answer.kind, answer.intent, answer.confidence, mask(text))
        return answer
