"""Event-time windows (issue 16): items are windowed on their own timestamps; out-of-order arrival
inside the allowed lateness (``[windows] grace``) gives the same windows and the same single alert as
the sorted stream; items later than the grace go to the side output (dead-letter file + the store's
``late_items`` table, with the reason) and are counted, never windowed.

Fast: the keyword scorer stands in for the model.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_finance_scenario import RULES

from tuneforge.errors import ConfigError
from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.durations import parse_timestamp
from tuneforge.plugins.finance.monitor import Monitor
from tuneforge.plugins.finance.rules import NegativeSurgeRule
from tuneforge.plugins.finance.sample import make_stream, watchlist_toml
from tuneforge.plugins.finance.scoring import KeywordScorer
from tuneforge.plugins.finance.windows import NEG, NEU, Entry, WindowSet

T0 = 1_714_521_600.0
GRACE = 600.0
SHUFFLES = settings(max_examples=12, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def config(folder: Path, grace: str = "10m") -> MonitorConfig:
    text = (f'[model]\nscorer = "keywords"\n[ingest]\ndead_letter = "dead-letter.jsonl"\n'
            f'[state]\ndb = "monitor.db"\n[windows]\nsizes = ["1h", "24h"]\ngrace = "{grace}"\n'
            f'[sinks]\nconsole = false\n{RULES}\n{watchlist_toml()}')
    path = folder / "monitor.toml"
    path.write_text(text)
    return MonitorConfig.load(path)


def replay(folder: Path, items: list[dict], chunk: int = 37, monitor: Monitor | None = None) -> Monitor:
    mon = monitor or Monitor(config(folder), scorer=KeywordScorer())
    for s in range(0, len(items), chunk):
        mon.submit(items[s:s + chunk], source="test")
    return mon


def windows_of(mon: Monitor) -> dict:
    out = {}
    for key, sizes in mon.windows.keys.items():
        for size, w in sizes.items():
            w.expire(mon.windows.clock)
            out[(key, size)] = (w.n, tuple(w.counts), round(w.sentiment_sum, 6))
    return out


def shuffle_within(items: list[dict], grace: float, seed: int) -> list[dict]:
    """Arrival order = timestamp + a random delay below ``grace``: every item arrives less than
    ``grace`` behind the newest timestamp seen before it."""
    rng = random.Random(seed)
    return sorted(items, key=lambda d: parse_timestamp(d["timestamp"]) + rng.uniform(0, grace * 0.999))


BURST = make_stream(360, burst_ticker="ACME", burst_at=0.6, burst_n=12)


@pytest.fixture(scope="module")
def sorted_run():
    with tempfile.TemporaryDirectory() as tmp:
        mon = replay(Path(tmp), BURST)
        try:
            yield windows_of(mon), mon.store.alerts(), mon.stats
        finally:
            mon.close()


@SHUFFLES
@given(seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 80))
def test_out_of_order_inside_the_grace_gives_the_sorted_windows_and_one_alert(sorted_run, seed, chunk):
    want_windows, want_alerts, _ = sorted_run
    assert [a["key"] for a in want_alerts] == ["ACME"]
    shuffled = shuffle_within(BURST, GRACE, seed)
    with tempfile.TemporaryDirectory() as tmp:
        with replay(Path(tmp), shuffled, chunk=chunk) as mon:
            assert mon.stats.late == 0 and mon.stats.scored == len(BURST)
            assert mon.stats.out_of_order > 0 or shuffled == BURST
            assert windows_of(mon) == want_windows                 # every item in the windows it belongs to
            alerts = mon.store.alerts()
    assert [a["key"] for a in alerts] == ["ACME"]                  # raised once, as for the sorted stream
    burst_start = min(parse_timestamp(d["timestamp"]) for d in BURST if d["id"].startswith("b"))
    assert burst_start <= alerts[0]["ts"] < burst_start + 3600
    assert any(i.startswith("b") for i in alerts[0]["items"])


@SHUFFLES
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(50, 300))
def test_restart_mid_shuffled_stream_keeps_open_buckets_and_raises_once(seed, cut):
    shuffled = shuffle_within(BURST, GRACE, seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with replay(folder, shuffled[:cut]):
            pass
        with Monitor(config(folder), scorer=KeywordScorer()) as mon:      # state from the store
            replay(folder, shuffled[cut:], monitor=mon)
            assert mon.store.count_items() == len(BURST) and mon.stats.late == 0
            assert [a["key"] for a in mon.store.alerts()] == ["ACME"]


def test_items_later_than_the_grace_go_to_the_side_output_with_the_reason(tmp_path):
    calm = make_stream(300)
    late_ids = {calm[20]["id"], calm[21]["id"], calm[100]["id"]}
    arrival = [d for d in calm if d["id"] not in late_ids] + [d for d in calm if d["id"] in late_ids]
    with replay(tmp_path, arrival) as mon:
        assert mon.stats.late == 3 and mon.stats.scored == 300
        late = mon.store.late_items()
        assert {r["id"] for r in late} == late_ids and mon.store.count_items() == 297
        assert all(r["reason"].startswith("late: ") and "grace 10m" in r["reason"] for r in late)
        got = windows_of(mon)
        status = mon.status()
        assert status["dead_letters"] == {"late": 3} and status["grace"] == GRACE
        assert status["watermark"] == status["clock"] - GRACE
        again = mon.submit([d for d in calm if d["id"] in late_ids])        # sent again: known, not re-counted
        assert again["duplicates"] == 3 and mon.stats.late == 3
    dead = [json.loads(x) for x in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert [d["kind"] for d in dead] == ["late"] * 3 and {json.loads(d["raw"])["id"] for d in dead} == late_ids
    (tmp_path / "without").mkdir()
    with replay(tmp_path / "without", [d for d in calm if d["id"] not in late_ids]) as ref:
        assert windows_of(ref) == got                                   # late items never reach a window


def test_post_v1_events_reports_late_items(tmp_path):
    with Monitor(config(tmp_path, grace="0s"), scorer=KeywordScorer()) as mon:
        mon.submit({"id": "a", "timestamp": T0 + 3600, "text": "$ACME files its report"})
        out = mon.submit([{"id": "b", "timestamp": T0, "text": "$ACME misses estimates"},
                          {"id": "c", "timestamp": T0 + 3600, "text": "$ACME misses estimates"}])
        assert out["accepted"] == 2 and out["late"] == 1
        assert mon.windows.get("ACME", 3600.0).n == 2


def test_grace_is_validated_with_a_clear_error(tmp_path):
    assert config(tmp_path).grace == GRACE
    assert MonitorConfig.from_dict({"model": {"scorer": "keywords"}}).grace == 300.0   # default: 5 minutes
    with pytest.raises(ConfigError, match=r"grace \(2h\) must be shorter than the smallest window \(1h\)"):
        config(tmp_path, grace="2h")
    with pytest.raises(ConfigError, match=r"\[windows\] grace must be a duration"):
        config(tmp_path, grace="a while")
    with pytest.raises(ConfigError, match="unknown key"):
        MonitorConfig.from_dict({"model": {"scorer": "keywords"}, "windows": {"lateness": "5m"}})


def test_surge_buckets_close_at_the_watermark_not_at_the_first_newer_item():
    rule = NegativeSurgeRule("surge", bucket=3600, z=3.0, min_count=3, warmup=1)
    ws, state = WindowSet([7200.0], grace=600.0), {}

    def feed(i, ts, label):
        e = Entry(T0 + ts, i, label, -0.9 if label == NEG else 0.0, f"i{i}")
        ws.advance(e.ts)
        rule.observe("ACME", e, state, ws.watermark)

    feed(0, 100, NEU)
    feed(1, 3700, NEG)                    # bucket 1 starts; bucket 0 is still open (watermark 3100)
    assert state["n"] == 0 and set(state["open"]) == {str(int(T0 // 3600)), str(int(T0 // 3600) + 1)}
    feed(2, 3500, NEG)                    # 200 s behind the clock: counted in bucket 0
    assert state["open"][str(int(T0 // 3600))]["count"] == 1
    feed(3, 4300, NEU)                    # watermark 3700 passes the end of bucket 0: folded
    assert state["n"] == 1 and state["mean"] == 1.0 and state["closed"] == int(T0 // 3600)
    feed(4, 3550, NEG)                    # bucket 0 is closed: the baseline is not rewritten
    assert state["mean"] == 1.0 and state["cur"] is None
