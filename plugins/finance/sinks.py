"""Where alerts go: console (rich), a JSONL file, an SQLite table, a webhook.

Every sink has a ``name`` and ``deliver(alert_dict)`` that raises on failure.  The monitor
records each (alert, sink) pair in the store's outbox and marks it done after delivery;
pending or failed deliveries are retried on the next start.  The webhook delivers from a
background thread with retries and exponential back-off (honouring ``Retry-After``), and
sends the alert id as ``Idempotency-Key`` so a receiver can drop a repeat after a crash.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tuneforge.storage import open_sqlite

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


class ConsoleSink:
    name = "console"

    def __init__(self, console=None):
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console

    def deliver(self, alert: dict) -> None:
        style = SEVERITY_STYLE.get(alert["severity"], "")
        self.console.print(f"[{style}]ALERT {alert['severity'].upper()}[/] {alert['time']} "
                           f"[bold]{alert['rule']}[/] {alert['message']}", highlight=False)


class JsonlSink:
    name = "jsonl"

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def deliver(self, alert: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(alert, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


SINK_SCHEMA = ("CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, time TEXT NOT NULL, rule TEXT NOT NULL, "
               "key TEXT NOT NULL, severity TEXT NOT NULL, value REAL, message TEXT NOT NULL, items TEXT NOT NULL, "
               "payload TEXT NOT NULL)")


class SqliteSink:
    """An ``alerts`` table in its own database file (for other tools to read); idempotent by id."""

    name = "sqlite"

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.db = open_sqlite(self.path, [SINK_SCHEMA])

    def deliver(self, alert: dict) -> None:
        with self._lock, self.db:
            self.db.execute("INSERT OR IGNORE INTO alerts VALUES (?,?,?,?,?,?,?,?,?)",
                            (alert["id"], alert["time"], alert["rule"], alert["key"], alert["severity"],
                             alert["value"], alert["message"], json.dumps(alert["items"]), json.dumps(alert)))

    def close(self) -> None:
        self.db.close()


class DeliveryError(Exception):
    def __init__(self, message: str, retry: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retry, self.retry_after = retry, retry_after


def post_json(url: str, body: dict, *, timeout: float, headers: dict | None = None) -> int:
    """POST ``body``; returns the status, raises :class:`DeliveryError` (``retry`` says if worth retrying)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "tuneforge-finance-monitor",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        retry_after = None
        if e.headers.get("Retry-After", "").strip().isdigit():
            retry_after = float(e.headers["Retry-After"])
        retry = e.code >= 500 or e.code in (408, 425, 429)
        raise DeliveryError(f"HTTP {e.code}", retry=retry, retry_after=retry_after) from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise DeliveryError(f"{type(e).__name__}: {reason}", retry=True) from None


class WebhookSink:
    """HTTP POST of each alert (JSON) from a worker thread; ``retries`` more tries after the first,
    waiting ``backoff_s * 2**attempt`` (jittered, at most ``max_backoff_s``) in between.

    ``on_result(alert_id, ok, attempts, error)`` is called once per alert when it is settled.
    """

    name = "webhook"

    def __init__(self, url: str, *, retries: int = 5, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 timeout_s: float = 5.0, headers: dict | None = None, on_result=None, sleep=None):
        self.url, self.retries, self.backoff_s, self.max_backoff_s = url, retries, backoff_s, max_backoff_s
        self.timeout_s, self.headers = timeout_s, dict(headers or {})
        self.on_result = on_result
        self.queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait     # a back-off wait ends early when the sink is closed
        self._thread: threading.Thread | None = None
        self.sent = self.failed = 0

    def start(self) -> "WebhookSink":
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="finance-monitor-webhook", daemon=True)
            self._thread.start()
        return self

    def deliver(self, alert: dict) -> None:
        """Queue ``alert``; delivery (and ``on_result``) happen on the worker thread."""
        self.start()
        self.queue.put(alert)

    def delays(self):
        for attempt in range(self.retries):
            base = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
            yield base * (0.5 + random.random() / 2)

    def send(self, alert: dict) -> tuple[bool, int, str | None]:
        """Deliver one alert now, retrying; returns ``(ok, attempts, last error)``."""
        headers = {"Idempotency-Key": alert["id"], **self.headers}
        delays = self.delays()
        attempts, error = 0, None
        while True:
            attempts += 1
            try:
                post_json(self.url, alert, timeout=self.timeout_s, headers=headers)
                return True, attempts, None
            except DeliveryError as e:
                error = str(e)
                if not e.retry or self._stop.is_set():
                    return False, attempts, error
                wait = next(delays, None)
                if wait is None:
                    return False, attempts, error
                if e.retry_after is not None:
                    wait = min(max(wait, e.retry_after), self.max_backoff_s)
                self.sleep(wait)

    def _work(self) -> None:
        while True:
            alert = self.queue.get()
            try:
                if alert is None:
                    return
                ok, attempts, error = self.send(alert)
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                if self.on_result is not None:
                    self.on_result(alert["id"], ok, attempts, error)
            finally:
                self.queue.task_done()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued alert is settled; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self.queue.put(None)
            self._thread.join(timeout=1.0)
