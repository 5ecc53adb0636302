"""Load-test a bot's HTTP service: many clients at once, then check that no transcript row was lost.

:func:`run_load` starts ``tuneforge serve support-bot`` in its own process (as in production),
lets ``clients`` threads post ``/v1/chat`` turns for ``seconds``, stops the server, and then
checks every answered turn against the bot's store (``bot.sqlite``, or the PostgreSQL store the
server was given with ``store``): a row with the turn id the client was given,
the client's session and the (masked) message it sent.  Standard library only on the client side.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.pii import mask


@dataclass
class LoadReport:
    clients: int
    seconds: float
    requests: int = 0
    ok: int = 0
    errors: dict = field(default_factory=dict)      # "HTTP 500" / exception name -> count (not retryable)
    retryable: dict = field(default_factory=dict)   # "HTTP 503 unavailable" / "connection lost" -> count
    kinds: dict = field(default_factory=dict)       # answer kind -> count
    latency_ms: dict = field(default_factory=dict)  # p50 / p95 / max, client side
    requests_per_s: float = 0.0
    transcript_rows: int = 0
    missing_rows: int = 0                           # answered turns with no matching row
    mismatched_rows: int = 0                        # rows whose session / text differ from the request

    @property
    def passed(self) -> bool:
        return self.requests > 0 and self.ok == self.requests and not self.errors and not self.retryable \
            and not self.missing_rows and not self.mismatched_rows and self.transcript_rows == self.ok

    @property
    def consistent(self) -> bool:
        """Every request answered or refused with a retryable error, every answered turn stored as sent.
        (A request that failed retryably may still have been stored: rows >= answered turns.)"""
        return self.ok > 0 and not self.errors and not self.missing_rows and not self.mismatched_rows \
            and self.transcript_rows >= self.ok

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "consistent": self.consistent}


# Answers a client should retry: the server (or Ray Serve's proxy, for a request whose replica died)
# says it could not serve the request now.  Everything else that is not 200 is a real error.
RETRYABLE_STATUS = frozenset({502, 503, 504})


def classify(status: int, payload: bytes) -> tuple[str, bool]:
    """(label, retryable) of a non-200 answer; the label names core's error type when the body has one."""
    kind = ""
    try:
        kind = json.loads(payload)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        pass
    return (f"HTTP {status}" + (f" {kind}" if kind else "")), status in RETRYABLE_STATUS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bot_dir: str | Path, port: int, *, timeout: float = 120.0,
                 store: str | None = None, serve_args: list[str] | tuple[str, ...] = ()) -> subprocess.Popen:
    """``tuneforge serve support-bot [serve_args]`` in a child process; returns once /healthz answers.  A
    ``store`` URL reaches it in the environment (TUNEFORGE_STORE), not on its command line;
    ``serve_args`` are more options of ``tuneforge serve`` (``--engine ray --replicas 2``)."""
    cmd = [sys.executable, "-m", "tuneforge", "serve", "support-bot", "--app-path", str(bot_dir),
           "--port", str(port), *serve_args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TUNEFORGE_STORE", None)
    if store:
        env["TUNEFORGE_STORE"] = store
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TuneforgeError(f"the bot server exited with code {proc.returncode}: "
                                 f"{(proc.stderr.read() or '').strip()[-500:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise TuneforgeError(f"the bot server did not answer /healthz within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
        proc.kill()
        proc.wait()


def _client(port: int, messages: list[str], offset: int, stop: float, sent: list, lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    session, i = None, offset
    local = []
    while time.monotonic() < stop:
        text = messages[i % len(messages)]
        i += 1
        body = json.dumps({"message": text, **({"session_id": session} if session else {})})
        start = time.perf_counter()
        try:
            conn.request("POST", "/v1/chat", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as e:   # the connection went: retry on a new one
            local.append({"error": f"connection lost ({type(e).__name__})", "retryable": True,
                          "at": time.monotonic()})
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        ms = (time.perf_counter() - start) * 1000
        if status != 200:
            label, retryable = classify(status, payload)
            local.append({"error": label, "retryable": retryable, "ms": ms, "at": time.monotonic()})
            continue
        data = json.loads(payload)
        session = data["session_id"]
        local.append({"turn": data["turn"], "session": session, "text": text, "kind": data["kind"],
                      "ms": ms})
    conn.close()
    with lock:
        sent.extend(local)


def check_transcripts(bot_dir: str | Path, answered: list[dict], store: str | None = None) -> tuple[int, int, int]:
    """(rows in the table, answered turns with no row, rows that do not match their request), read
    from the same store the server wrote (``bot.sqlite``, or the PostgreSQL URL ``store``)."""
    from .store import open_bot_store

    db = open_bot_store(bot_dir, store)
    try:
        rows = db.transcript()
    finally:
        db.close()
    missing = sum(1 for a in answered if a["turn"] not in rows)
    mismatched = sum(1 for a in answered if a["turn"] in rows
                     and rows[a["turn"]] != (a["session"], mask(a["text"])))
    return len(rows), missing, mismatched


def run_load(bot_dir: str | Path, messages: list[str], *, clients: int = 20, seconds: float = 30.0,
             port: int | None = None, store: str | None = None, server_port: int | None = None,
             serve_args: list[str] | tuple[str, ...] = (), ready_timeout: float = 120.0,
             during=None, sent_out: list | None = None) -> LoadReport:
    """Serve ``bot_dir``, load it with ``clients`` concurrent sessions for ``seconds``, check the store.

    ``server_port``: load a server that is already running there (started with the same
    ``store``, e.g. ``tuneforge serve support-bot --engine ray --replicas 2 --store URL``)
    instead of starting one.  ``serve_args`` go to the ``tuneforge serve`` it starts (e.g.
    ``--engine ray --replicas 2``); ``during(proc, port)``, if given, runs on its own thread
    while the clients send (the kill -9 drill in bench/scale_out.py)."""
    import numpy as np

    if not messages:
        raise TuneforgeError("no messages to send")
    bot_dir = Path(bot_dir)
    before = 0
    if store or (bot_dir / "bot.sqlite").exists():
        from .store import open_bot_store

        counted = open_bot_store(bot_dir, store)
        try:
            before = counted.count_turns()
        finally:
            counted.close()
    if server_port:
        port, proc = server_port, None
    else:
        port = port or free_port()
        proc = start_server(bot_dir, port, timeout=ready_timeout, store=store, serve_args=tuple(serve_args))
    sent: list[dict] = []
    lock = threading.Lock()
    try:
        stop = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(port, messages, k * 7, stop, sent, lock))
                   for k in range(clients)]
        if during is not None:
            threads.append(threading.Thread(target=during, args=(proc, port), daemon=True))
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        if proc is not None:
            stop_server(proc)
    if sent_out is not None:
        sent_out.extend(sent)
    report = LoadReport(clients=clients, seconds=round(elapsed, 1), requests=len(sent))
    answered = [s for s in sent if "turn" in s]
    report.ok = len(answered)
    for s in sent:
        if "error" in s:
            bucket = report.retryable if s.get("retryable") else report.errors
            bucket[s["error"]] = bucket.get(s["error"], 0) + 1
        else:
            report.kinds[s["kind"]] = report.kinds.get(s["kind"], 0) + 1
    if answered:
        ms = np.array([s["ms"] for s in answered])
        report.latency_ms = {"p50": round(float(np.percentile(ms, 50)), 1),
                             "p95": round(float(np.percentile(ms, 95)), 1), "max": round(float(ms.max()), 1)}
    report.requests_per_s = round(report.ok / max(elapsed, 1e-9), 1)
    rows, report.missing_rows, report.mismatched_rows = check_transcripts(bot_dir, answered, store)
    report.transcript_rows = rows - before
    return report
