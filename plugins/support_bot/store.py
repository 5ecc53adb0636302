"""Transcripts, feedback and hand-off tickets in SQLite -- personal data masked on the way in.

Every text goes through :func:`pii.mask` inside this module, so no caller can store
a card number, IBAN, e-mail address or phone number by mistake.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

from tuneforge.errors import UsageError
from tuneforge.pii import mask
from tuneforge.storage import open_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    ts REAL NOT NULL,
    user_text TEXT NOT NULL,
    answer TEXT NOT NULL,
    kind TEXT NOT NULL,
    intent TEXT,
    confidence REAL,
    sources TEXT NOT NULL DEFAULT '[]',
    feedback TEXT CHECK (feedback IN ('right', 'wrong')),
    correct_intent TEXT
);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    turn_id INTEGER REFERENCES turns(id),
    session TEXT NOT NULL,
    ts REAL NOT NULL,
    question TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    label TEXT
);
"""
# 2: turns get an unguessable ``ref`` (what clients see instead of the sequential id); sessions are
#    issued by the server and remembered, so a client cannot invent one (nor send a card number as one)
MIGRATIONS = [SCHEMA, """
ALTER TABLE turns ADD COLUMN ref TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS turns_ref ON turns(ref);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created REAL NOT NULL);
"""]
VERDICTS = ("right", "wrong")


class Store:
    """One SQLite file; safe to share between threads (one lock, one connection)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        # WAL (core's SQLite helper): a commit appends to the log without an fsync of the main
        # file (~30 ms per turn on this project's disks); a crashed process loses no committed turn
        self._db = open_sqlite(self.path, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple) -> int:
        with self._lock, self._db:
            return self._db.execute(sql, args).lastrowid

    def _rows(self, sql: str, args: tuple = ()) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    # -- writing ---------------------------------------------------------------
    def add_turn(self, session: str, user_text: str, answer: str, kind: str, intent: str | None,
                 confidence: float | None, sources: list[dict] | None = None) -> int:
        """Record a turn; returns its id (``turn_ref(id)`` is what clients see)."""
        return self._write(
            "INSERT INTO turns (session, ts, user_text, answer, kind, intent, confidence, sources, ref) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session, time.time(), mask(user_text), mask(answer), kind, intent, confidence,
             json.dumps(sources or []), secrets.token_urlsafe(12)))

    def turn_ref(self, turn_id: int) -> str:
        return self._rows("SELECT ref FROM turns WHERE id = ?", (turn_id,))[0]["ref"]

    def new_session(self) -> str:
        """A server-issued session id: random, so it is neither guessable nor anyone's data."""
        session = secrets.token_urlsafe(18)
        self._write("INSERT INTO sessions (id, created) VALUES (?, ?)", (session, time.time()))
        return session

    def has_session(self, session: str) -> bool:
        return bool(self._rows("SELECT 1 FROM sessions WHERE id = ?", (session,)))

    def turn_of_session(self, ref: str, session: str) -> dict | None:
        """The turn ``ref`` if it belongs to ``session`` (else None: no cross-session access)."""
        rows = self._rows("SELECT * FROM turns WHERE ref = ? AND session = ?", (ref, session))
        return rows[0] if rows else None

    def add_ticket(self, session: str, question: str, turn_id: int | None = None) -> int:
        return self._write("INSERT INTO tickets (turn_id, session, ts, question) VALUES (?, ?, ?, ?)",
                           (turn_id, session, time.time(), mask(question)))

    def mark_turn(self, turn_id: int, verdict: str, correct_intent: str | None = None) -> dict:
        """Record whether a turn's answer was right; a wrong one may name the right intent."""
        if verdict not in VERDICTS:
            raise UsageError(f"feedback must be 'right' or 'wrong', got {verdict!r}")
        if not self.turn(turn_id):
            raise UsageError(f"no turn {turn_id} in {self.path}", hint="see `tuneforge support-bot feedback --list`")
        with self._lock, self._db:
            self._db.execute("UPDATE turns SET feedback = ?, correct_intent = ? WHERE id = ?",
                             (verdict, correct_intent, turn_id))
        return self.turn(turn_id)

    def label_ticket(self, ticket_id: int, label: str) -> dict:
        """Give a hand-off ticket the intent it should have been answered with."""
        if not self.tickets(ticket_id=ticket_id):
            raise UsageError(f"no ticket {ticket_id} in {self.path}", hint="see `tuneforge support-bot tickets`")
        with self._lock, self._db:
            self._db.execute("UPDATE tickets SET label = ?, status = 'labelled' WHERE id = ?", (label, ticket_id))
        return self.tickets(ticket_id=ticket_id)[0]

    # -- reading ---------------------------------------------------------------
    def turn(self, turn_id: int) -> dict | None:
        rows = self._rows("SELECT * FROM turns WHERE id = ?", (turn_id,))
        return rows[0] if rows else None

    def turns(self, session: str | None = None, limit: int = 1000) -> list[dict]:
        if session is None:
            return self._rows("SELECT * FROM turns ORDER BY id DESC LIMIT ?", (limit,))
        return self._rows("SELECT * FROM turns WHERE session = ? ORDER BY id DESC LIMIT ?", (session, limit))

    def tickets(self, status: str | None = None, ticket_id: int | None = None) -> list[dict]:
        if ticket_id is not None:
            return self._rows("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        if status is None:
            return self._rows("SELECT * FROM tickets ORDER BY id")
        return self._rows("SELECT * FROM tickets WHERE status = ? ORDER BY id", (status,))

    def training_rows(self) -> list[tuple[str, str, str]]:
        """(text, intent, origin) learned from feedback: confirmed turns, corrected turns, labelled tickets."""
        rows = [(r["user_text"], r["intent"], f"turn:{r['id']}") for r in self._rows(
            "SELECT * FROM turns WHERE feedback = 'right' AND kind = 'template' AND intent IS NOT NULL")]
        rows += [(r["user_text"], r["correct_intent"], f"turn:{r['id']}") for r in self._rows(
            "SELECT * FROM turns WHERE feedback = 'wrong' AND correct_intent IS NOT NULL")]
        rows += [(r["question"], r["label"], f"ticket:{r['id']}") for r in self._rows(
            "SELECT * FROM tickets WHERE label IS NOT NULL")]
        return rows
