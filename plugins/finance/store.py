"""The monitor's state in one SQLite file (``[state] db``, the default) or one PostgreSQL schema
(``[state] db = "postgresql://..."`` or ``--store``): items, per-key entries, read positions,
rule state, alerts and their deliveries.

Each batch is written in one transaction (items + positions + rule state + alerts), so a
killed monitor restarts exactly where the last committed batch ended: no item lost, no
alert raised twice.  Deliveries are an outbox: an alert reaches a sink at least once, with
its id as the idempotency key.

The queries are shared between the dialects except where the SQL differs (``INSERT OR
IGNORE`` is PostgreSQL's ``ON CONFLICT DO NOTHING``).  A batch is SQLite's ``BEGIN IMMEDIATE``
or, on PostgreSQL, a transaction holding the store's advisory lock: two monitors writing one
store take turns, and ``next_seq`` continues from the committed maximum under that lock.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from tuneforge.database import open_database

from .windows import Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    p_neg REAL NOT NULL, p_neu REAL NOT NULL, p_pos REAL NOT NULL,
    entities TEXT NOT NULL,
    topic TEXT
);
CREATE INDEX IF NOT EXISTS items_ts ON items(ts);
CREATE TABLE IF NOT EXISTS item_keys (
    key TEXT NOT NULL,
    ts REAL NOT NULL,
    seq INTEGER NOT NULL,
    label INTEGER NOT NULL,
    sentiment REAL NOT NULL,
    item_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS item_keys_key_ts ON item_keys(key, ts);
CREATE INDEX IF NOT EXISTS item_keys_ts ON item_keys(ts);
CREATE TABLE IF NOT EXISTS positions (
    source TEXT PRIMARY KEY,
    offset INTEGER NOT NULL,
    line INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rule_state (
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (rule, key)
);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    severity TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts(ts);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    sink TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (alert_id, sink)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# 2: the side output of event-time windows -- items later than the grace, with the reason
LATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS late_items (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    clock REAL NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
"""
# PostgreSQL: SQLite's version 2 in the store's own schema; 8-byte floats and integers (REAL and
# INTEGER are 4 bytes there), "offset" quoted (a reserved word), seq indexed (read per batch)
PG_SCHEMA = """
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    p_neg DOUBLE PRECISION NOT NULL, p_neu DOUBLE PRECISION NOT NULL, p_pos DOUBLE PRECISION NOT NULL,
    entities TEXT NOT NULL,
    topic TEXT
);
CREATE INDEX items_ts ON items(ts);
CREATE INDEX items_seq ON items(seq);
CREATE TABLE item_keys (
    key TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    seq BIGINT NOT NULL,
    label INTEGER NOT NULL,
    sentiment DOUBLE PRECISION NOT NULL,
    item_id TEXT NOT NULL
);
CREATE INDEX item_keys_key_ts ON item_keys(key, ts);
CREATE INDEX item_keys_ts ON item_keys(ts);
CREATE TABLE positions (
    source TEXT PRIMARY KEY,
    "offset" BIGINT NOT NULL,
    line BIGINT NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE rule_state (
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (rule, key)
);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    severity TEXT NOT NULL,
    payload TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX alerts_ts ON alerts(ts);
CREATE TABLE deliveries (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    sink TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (alert_id, sink)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE late_items (
    id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    clock DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
"""
MIGRATIONS = {"sqlite": [SCHEMA, LATE_SCHEMA], "postgresql": [PG_SCHEMA]}
DEFAULT_SCHEMA = "finance_monitor"
LABEL_NAMES = ("negative", "neutral", "positive")


class Store:
    """Thread-safe (one connection, one lock): the HTTP thread and the webhook worker share it."""

    def __init__(self, path, *, schema: str | None = None):
        self._lock = threading.RLock()
        self.db = open_database(path, MIGRATIONS, schema=schema or DEFAULT_SCHEMA, autocommit=True)
        self.path = Path(self.db.path) if self.db.dialect == "sqlite" else self.db.where   # never the password
        self.where = self.db.where
        self._seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def transaction(self):
        with self._lock, self.db.transaction(exclusive=True):
            if self.db.dialect != "sqlite":     # another process may have written since: continue after it
                self._seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]
            yield self

    # -- items ------------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def known_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT id FROM items WHERE id IN ({marks}) UNION SELECT id FROM late_items WHERE id IN ({marks})"
                found.update(r[0] for r in self.db.execute(q, chunk + chunk))
        return found

    def add_item(self, item, seq: int, label: int, probs, entities: list[str], topic: str | None) -> None:
        self.db.execute("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (item.id, seq, item.ts, item.source, item.text, LABEL_NAMES[label],
                         float(probs[0]), float(probs[1]), float(probs[2]), json.dumps(entities), topic))

    def add_late(self, item, clock: float, reason: str) -> None:
        """An item later than the grace: kept aside with the reason, never in the windows."""
        self.db.execute(self.db.pick(sqlite="INSERT OR IGNORE INTO late_items VALUES (?,?,?,?,?,?,?)",
                                     postgresql="INSERT INTO late_items VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"),
                        (item.id, item.ts, clock, item.source, reason, json.dumps(item.to_dict()), time.time()))

    def late_items(self, limit: int = 100) -> list[dict]:
        with self._lock:
            rows = self.db.execute("SELECT id, ts, clock, reason, payload FROM late_items ORDER BY created DESC "
                                   "LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "ts": r[1], "clock": r[2], "reason": r[3], "item": json.loads(r[4])} for r in rows]

    def count_late(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM late_items").fetchone()[0]

    def alert_counts(self) -> dict[tuple[str, str], int]:
        """Alerts raised so far by (rule, severity)."""
        with self._lock:
            return {(r[0], r[1]): r[2] for r in
                    self.db.execute("SELECT rule, severity, COUNT(*) FROM alerts GROUP BY 1, 2")}

    def add_entries(self, rows: list[tuple[str, Entry]]) -> None:
        self.db.executemany("INSERT INTO item_keys VALUES (?,?,?,?,?,?)",
                            [(k, e.ts, e.seq, e.label, e.sentiment, e.item_id) for k, e in rows])

    def entries_since(self, since: float):
        """``(key, Entry)`` rows with ``ts > since``, in arrival order (to rebuild the windows)."""
        with self._lock:
            rows = self.db.execute("SELECT k.key, k.ts, k.seq, k.label, k.sentiment, k.item_id, i.p_neg "
                                   "FROM item_keys k LEFT JOIN items i ON i.id = k.item_id "
                                   "WHERE k.ts > ? ORDER BY k.seq", (since,)).fetchall()
        return [(r[0], Entry(r[1], r[2], r[3], r[4], r[5], r[6])) for r in rows]

    def clock(self) -> float | None:
        with self._lock:
            return self.db.execute("SELECT MAX(ts) FROM items").fetchone()[0]

    def count_items(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    # -- positions ---------------------------------------------------------------
    def position(self, source: str) -> tuple[int, int]:
        with self._lock:
            row = self.db.execute('SELECT "offset", line FROM positions WHERE source = ?', (source,)).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def set_position(self, source: str, offset: int, line: int) -> None:
        self.db.execute('INSERT INTO positions VALUES (?,?,?,?) ON CONFLICT(source) DO UPDATE SET '
                        '"offset" = excluded."offset", line = excluded.line, updated = excluded.updated',
                        (source, offset, line, time.time()))

    # -- rule state ----------------------------------------------------------------
    def rule_states(self) -> dict[tuple[str, str], dict]:
        with self._lock:
            return {(r[0], r[1]): json.loads(r[2]) for r in self.db.execute("SELECT rule, key, state FROM rule_state")}

    def save_rule_states(self, states: dict[tuple[str, str], dict]) -> None:
        self.db.executemany("INSERT INTO rule_state VALUES (?,?,?) ON CONFLICT(rule, key) DO UPDATE SET "
                            "state = excluded.state", [(r, k, json.dumps(s)) for (r, k), s in states.items()])

    # -- alerts and deliveries -------------------------------------------------------
    def add_alert(self, alert, sinks: list[str]) -> bool:
        cur = self.db.execute(self.db.pick(sqlite="INSERT OR IGNORE INTO alerts VALUES (?,?,?,?,?,?,?,?)",
                                           postgresql="INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?) "
                                                      "ON CONFLICT DO NOTHING"),
                              (alert.id, alert.ts, alert.rule, alert.kind, alert.key, alert.severity,
                               json.dumps(alert.to_dict()), time.time()))
        if cur.rowcount == 0:
            return False  # the same alert id was already raised: de-duplicated
        self.db.executemany(self.db.pick(sqlite="INSERT OR IGNORE INTO deliveries (alert_id, sink, updated) "
                                                "VALUES (?,?,?)",
                                         postgresql="INSERT INTO deliveries (alert_id, sink, updated) VALUES (?,?,?) "
                                                    "ON CONFLICT DO NOTHING"),
                            [(alert.id, s, time.time()) for s in sinks])
        return True

    def alerts(self, since: float | None = None, until: float | None = None, limit: int | None = None) -> list[dict]:
        q, args = "SELECT payload FROM alerts WHERE ts >= ? AND ts <= ? ORDER BY ts DESC, created DESC", \
            [since if since is not None else float("-inf"), until if until is not None else float("inf")]
        if limit:
            q += " LIMIT ?"
            args.append(limit)
        with self._lock:
            return [json.loads(r[0]) for r in self.db.execute(q, args)][::-1]

    def pending_deliveries(self, sink: str, include_failed: bool = True) -> list[dict]:
        statuses = ("pending", "failed") if include_failed else ("pending",)
        with self._lock:
            marks = ",".join("?" * len(statuses))
            rows = self.db.execute("SELECT a.payload FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
                                   f"WHERE d.sink = ? AND d.status IN ({marks}) ORDER BY a.ts",
                                   (sink, *statuses)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def mark_delivery(self, alert_id: str, sink: str, ok: bool, attempts: int = 1, error: str | None = None) -> None:
        with self._lock:
            self.db.execute("UPDATE deliveries SET status = ?, attempts = attempts + ?, last_error = ?, updated = ? "
                            "WHERE alert_id = ? AND sink = ?",
                            ("done" if ok else "failed", attempts, error, time.time(), alert_id, sink))

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for sink, status, n in self.db.execute("SELECT sink, status, COUNT(*) FROM deliveries GROUP BY 1, 2"):
                out.setdefault(sink, {})[status] = n
        return out

    # -- reports --------------------------------------------------------------------
    def key_series(self, since: float, until: float, keys: list[str] | None = None):
        """``(key, ts, label, sentiment)`` rows in ``[since, until]`` (all keys, or ``keys``)."""
        q = "SELECT key, ts, label, sentiment FROM item_keys WHERE ts >= ? AND ts <= ?"
        args: list = [since, until]
        if keys:
            q += " AND key IN (%s)" % ",".join("?" * len(keys))
            args += keys
        with self._lock:
            return self.db.execute(q + " ORDER BY ts", args).fetchall()

    def items_by_id(self, ids: list[str]) -> list[tuple]:
        """``(id, ts, label, text)`` of the items ``ids`` (those that exist)."""
        out: list[tuple] = []
        unique = list(dict.fromkeys(ids))
        with self._lock:
            for at in range(0, len(unique), 500):
                chunk = unique[at:at + 500]
                out += self.db.execute("SELECT id, ts, label, text FROM items WHERE id IN (%s)"
                                       % ",".join("?" * len(chunk)), chunk).fetchall()
        return out

    def time_range(self) -> tuple[float | None, float | None]:
        with self._lock:
            row = self.db.execute("SELECT MIN(ts), MAX(ts) FROM items").fetchone()
        return row[0], row[1]
