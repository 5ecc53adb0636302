"""Sessions: short memory per session id, chat commands, and every turn recorded (masked).

``/help`` lists what the bot can do, ``/reset`` forgets the session's memory, ``/quit``
ends a terminal chat (the caller's job: :meth:`Conversation.turn` answers kind ``quit``).
A hand-off files a ticket; its number is added to the answer.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict

from tuneforge.pii import mask

from .cascade import Answer, Cascade, Memory
from .store import Store

log = logging.getLogger(__name__)
HELP = """Ask me a question about your cards, payments, transfers, top-ups or your account.
Commands: /help (this text), /reset (forget this conversation), /quit (leave).
If I can't answer, I'll hand your question to a human colleague and give you a ticket number."""
MAX_SESSIONS = 10_000


class Conversation:
    """Answers turns for many sessions; thread-safe (the HTTP service shares one)."""

    def __init__(self, cascade: Cascade, store: Store):
        self.cascade, self.store = cascade, store
        self._sessions: OrderedDict[str, Memory] = OrderedDict()
        self._lock = threading.Lock()

    def greeting(self) -> str:
        return self.cascade.message("_greeting")

    def memory(self, session: str) -> Memory:
        with self._lock:
            mem = self._sessions.pop(session, None) or Memory()
            self._sessions[session] = mem            # most recently used last
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return mem

    @staticmethod
    def new_session() -> str:
        return uuid.uuid4().hex[:12]

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
        answer = self.cascade.answer(text, memory)
        answer.turn_id = self.store.add_turn(session, text, answer.text, answer.kind, answer.intent,
                                             answer.confidence, answer.sources)
        if answer.kind == "handoff":
            answer.ticket_id = self.store.add_ticket(session, text, turn_id=answer.turn_id)
            answer.text += f" Your ticket number is #{answer.ticket_id}."
        log.info("session=%s turn=%s kind=%s intent=%s conf=%.3f text=%r", session, answer.turn_id,
                 answer.kind, answer.intent, answer.confidence, mask(text))
        return answer
