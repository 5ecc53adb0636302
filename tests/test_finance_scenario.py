"""The finance monitor's scenario (issue 6): a calm replayed stream raises no alert; the same stream
with a burst of negative news about one company raises exactly one alert for it, within one window,
delivered to a webhook; killing (SIGKILL) and restarting the monitor mid-stream loses no item and
repeats no alert.

Fast: the keyword scorer stands in for the model (the model path is tested in test_finance_monitor).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.durations import parse_timestamp
from tuneforge.plugins.finance.monitor import Monitor
from tuneforge.plugins.finance.sample import make_stream, watchlist_toml, write_jsonl
from tuneforge.plugins.finance.scoring import KeywordScorer

RULES = """
[alerts]
dedup = "2h"

[[rules]]
name = "negative-share"
kind = "negative_share"
window = "1h"
threshold = 0.6
min_volume = 8
cooldown = "2h"

[[rules]]
name = "negative-surge"
kind = "negative_surge"
bucket = "1h"
z = 4.0
min_count = 6
cooldown = "2h"

[[rules]]
name = "sentiment-drop"
kind = "sentiment_drop"
window = "1h"
baseline = "24h"
drop = 0.5
min_volume = 8
min_baseline = 20
cooldown = "2h"
"""


class WebhookReceiver:
    """A local HTTP server that records POSTed JSON; ``fail_first`` answers 500 that many times."""

    def __init__(self, fail_first: int = 0, status: int = 500):
        self.posts: list[dict] = []
        self.headers: list[dict] = []
        self.fail_left, self.status = fail_first, status
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.fail_left > 0:
                    receiver.fail_left -= 1
                    self.send_response(receiver.status)
                    self.end_headers()
                    return
                receiver.posts.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def write_config(folder, *, files, webhook_url=None, speed=0, extra=""):
    hook = f'\n[sinks.webhook]\nurl = "{webhook_url}"\nretries = 3\nbackoff_s = 0.05\n' if webhook_url else ""
    text = f"""
[model]
scorer = "keywords"

[ingest]
files = {json.dumps(files)}
speed = {speed}
dead_letter = "dead-letter.jsonl"

[state]
db = "monitor.db"

[sinks]
console = false
jsonl = "alerts.jsonl"
{hook}
{RULES}
{extra}
{watchlist_toml()}
"""
    path = folder / "monitor.toml"
    path.write_text(text)
    return path


def run_monitor(folder, **kw):
    cfg = MonitorConfig.load(write_config(folder, **kw))
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        mon.run()
        assert mon.flush(10)
        return mon.stats, mon.store.alerts()


def test_calm_stream_raises_no_alert(tmp_path, receiver):
    write_jsonl(make_stream(600), tmp_path / "news.jsonl")
    stats, alerts = run_monitor(tmp_path, files=["news.jsonl"], webhook_url=receiver.url)
    assert stats.scored == 600 and alerts == [] and receiver.posts == []


def test_burst_raises_exactly_one_alert_for_that_company_within_one_window(tmp_path, receiver):
    items = make_stream(600, burst_ticker="ACME", burst_n=12)
    write_jsonl(items, tmp_path / "news.jsonl")
    stats, alerts = run_monitor(tmp_path, files=["news.jsonl"], webhook_url=receiver.url)
    assert stats.scored == len(items)
    assert [a["key"] for a in alerts] == ["ACME"]
    alert = alerts[0]
    burst_start = min(parse_timestamp(d["timestamp"]) for d in items if d["id"].startswith("b"))
    assert burst_start <= alert["ts"] < burst_start + 3600      # within one (1 h) window of the burst
    assert any(i.startswith("b") for i in alert["items"])       # the items that triggered it
    assert receiver.posts == [alert]                            # delivered to the webhook, once
    assert receiver.headers[0]["Idempotency-Key"] == alert["id"]
    assert [json.loads(x)["id"] for x in (tmp_path / "alerts.jsonl").read_text().splitlines()] == [alert["id"]]


def _db_value(db, query, default=0):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(query).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return default


def _start(config):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tuneforge.apps.finance_monitor", "--config", str(config),
                             "--no-dashboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait(cond, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"monitor exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_kill_and_restart_mid_stream_loses_no_item_and_repeats_no_alert(tmp_path, receiver):
    items = make_stream(400, burst_ticker="ACME", burst_at=0.5)
    lines = [json.dumps(d) for d in items]
    lines.insert(50, json.dumps(items[10]))                           # a duplicate id
    lines.insert(120, '{"id": "bad-1", "text": "no timestamp"}')      # malformed lines -> dead letter
    lines.insert(121, "{not json")
    (tmp_path / "news.jsonl").write_text("\n".join(lines) + "\n")
    span = parse_timestamp(items[-1]["timestamp"]) - parse_timestamp(items[0]["timestamp"])
    config = write_config(tmp_path, files=["news.jsonl"], webhook_url=receiver.url, speed=span / 6.0)
    db = tmp_path / "monitor.db"

    # 1st run: killed a quarter of the way in, before the burst
    proc = _start(config)
    _wait(lambda: _db_value(db, "SELECT COUNT(*) FROM items") >= 100, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _db_value(db, "SELECT COUNT(*) FROM items")
    assert 100 <= first < len(items) and receiver.posts == []

    # 2nd run: resumes, raises the alert, is killed right after the webhook got it (mid-stream)
    proc = _start(config)
    _wait(lambda: _db_value(db, "SELECT COUNT(*) FROM deliveries WHERE sink = 'webhook' AND status = 'done'") == 1,
          proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    second = _db_value(db, "SELECT COUNT(*) FROM items")
    assert second < len(items), "the stream had ended before the kill: not a mid-stream restart"

    # 3rd run: to the end
    proc = _start(config)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]

    con = sqlite3.connect(db)
    ids = [r[0] for r in con.execute("SELECT id FROM items")]
    alerts = [json.loads(r[0]) for r in con.execute("SELECT payload FROM alerts")]
    con.close()
    assert sorted(ids) == sorted(d["id"] for d in items)          # no item lost, none twice
    assert [a["key"] for a in alerts] == ["ACME"]                 # no alert repeated
    assert [p["id"] for p in receiver.posts] == [alerts[0]["id"]]
    dead = [json.loads(x) for x in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert {(d["line"], d["reason"]) for d in dead} == {(121, "missing timestamp"),
                                                        (122, dead[-1]["reason"])}
    assert dead[-1]["reason"].startswith("not valid JSON")
