"""Finance monitor pieces: entities, items, windows, rules, alerts, ingest, sinks, HTTP, the model
scorer on a tiny bundle, reports, CLI, the app template."""

from __future__ import annotations

import math

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from _bundle_helpers import make_run
from click.testing import CliRunner
from test_finance_scenario import WebhookReceiver, write_config

from tuneforge.errors import ConfigError, UsageError
from tuneforge.plugins.finance.alerts import AlertEngine
from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.durations import parse_duration, parse_timestamp
from tuneforge.plugins.finance.entities import Company, Watchlist, extract_entities
from tuneforge.plugins.finance.ingest import FileSource
from tuneforge.plugins.finance.items import Item, Malformed, parse_json_line
from tuneforge.plugins.finance.monitor import Monitor
from tuneforge.plugins.finance.rules import (NegativeRunRule, NegativeShareRule, NegativeSurgeRule, SentimentDropRule,
                                             rule_from_dict)
from tuneforge.plugins.finance.sample import make_stream, write_jsonl
from tuneforge.plugins.finance.scoring import BundleScorer, KeywordScorer
from tuneforge.plugins.finance.sinks import WebhookSink
from tuneforge.plugins.finance.windows import NEG, NEU, POS, Entry, WindowSet

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z


# -- entities ---------------------------------------------------------------------------------
def test_cashtags_and_watchlist_aliases():
    wl = Watchlist([Company("AAPL", "Apple", ["Apple Inc", "iPhone maker"]), Company("F", aliases=["Ford Motor"])])
    assert wl.find("$tsla falls; Apple Inc beats, iPhone maker rallies, $AAPL up") == ["TSLA", "AAPL"]
    assert wl.find("Ford Motor recalls cars; F stands for nothing; pineapple") == ["F"]   # bare "F" is no alias
    assert extract_entities("paid $100 and $5bn for $BRK.B, mail a$b") == ["BRK.B"]
    assert Watchlist([Company("AAPL")], only_listed=True).find("$AAPL and $MSFT") == ["AAPL"]
    with pytest.raises(ConfigError, match="not a ticker"):
        Company("not a ticker")
    with pytest.raises(ConfigError, match="unknown key"):
        Watchlist.from_config({"companies": [{"ticker": "A", "alias": ["x"]}]})


def test_ticker_tag_puts_one_random_ticker_in_front_and_replaces_a_tag_already_there():
    import random

    from tuneforge.plugins import finance
    from tuneforge.plugins.finance.entities import ticker_tag

    rng = random.Random(3)
    tagged = [ticker_tag("Shares fall after $ACME misses", rng) for _ in range(200)]
    fronts = [extract_entities(t)[0] for t in tagged]
    assert all(t.endswith(" - Shares fall after $ACME misses") for t in tagged)
    assert all(2 <= len(f) <= 5 and f.isalpha() and f.isupper() for f in fronts) and len(set(fronts)) > 150
    swapped = ticker_tag("$BRK.B: Berkshire holds", rng)
    assert swapped.endswith(" - Berkshire holds") and "BRK" not in swapped and len(extract_entities(swapped)) == 1
    got = []   # the task carries it; the default recipe adds a tagged copy of half its rows
    finance.tuneforge_register_tasks(register=got.append)
    assert got[0].text_augmenter is ticker_tag and got[0].train_defaults["text_augment"] == 0.5


def test_finance_postprocess_adds_sentiment_and_entities():
    from tuneforge.plugins.finance import tuneforge_postprocess
    from tuneforge.runtime import Prediction
    from tuneforge.tasks import get_task

    out = tuneforge_postprocess(task=get_task("finance-sentiment"), texts=["$ACME slumps"],
                                predictions=[Prediction(label="negative", score=0.9)])
    assert out == [{"label": "negative", "score": 0.9, "sentiment": "negative", "entities": ["ACME"]}]
    scored = tuneforge_postprocess(task=get_task("finance-sentiment"), texts=["$ACME beats"], predictions=[
        Prediction(label="positive", score=0.7, scores={"negative": 0.1, "neutral": 0.2, "positive": 0.7})])
    assert scored[0]["sentiment_score"] == 0.6 and scored[0]["sentiment"] == "positive"
    assert tuneforge_postprocess(task=get_task("support-intents"), texts=["x"], predictions=[None]) is None


# -- items and durations -----------------------------------------------------------------------
def test_items_parse_and_every_malformed_line_has_a_reason():
    item = parse_json_line('{"id": 7, "timestamp": "2024-05-01T00:00:00Z", "text": "hi", "entities": ["$acme"]}')
    assert (item.id, item.ts, item.entities) == ("7", T0, ["ACME"])
    assert parse_json_line('{"id": "a", "ts": 1714521600000, "text": "x"}').ts == T0     # epoch milliseconds
    for line, reason in [("{oops", "not valid JSON"), ('["a"]', "expected a JSON object"),
                         ('{"id": "a", "text": "x"}', "missing timestamp"),
                         ('{"id": "a", "ts": "yesterday", "text": "x"}', "not ISO 8601"),
                         ('{"ts": 1, "text": "x"}', "missing id"), ('{"id": "a", "ts": 1, "text": "  "}', "empty"),
                         ('{"id": "a", "ts": 1, "text": "x", "colour": 1}', "unknown field"),
                         ('{"id": "a", "ts": 1, "text": "x", "entities": ["$1"]}', "not a ticker"),
                         # found by the fuzzer: a clock past year 9999 broke every later late-item message
                         ('{"id": "a", "ts": 1e15, "text": "x"}', "outside 1900-01-01 .. 9999-12-31"),
                         ('{"id": "a", "ts": -1e12, "text": "x"}', "outside 1900")]:
        with pytest.raises(Malformed, match=reason):
            parse_json_line(line)
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400 and parse_duration(30) == 30
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")
    assert parse_timestamp("2024-05-01T02:00:00+02:00") == T0


# -- windows ------------------------------------------------------------------------------------
def _entry(i, ts, label=NEU, sentiment=0.0):
    return Entry(T0 + ts, i, label, sentiment, f"i{i}")


def test_windows_count_expire_and_take_late_items_in_order():
    ws = WindowSet([60.0, 3600.0])
    for i, (ts, label) in enumerate([(0, NEG), (30, POS), (50, NEG)]):
        ws.advance(T0 + ts)
        ws.add("ACME", _entry(i, ts, label, {NEG: -1.0, POS: 1.0}[label]))
    short = ws.get("ACME", 60.0)
    assert (short.n, short.counts, round(short.mean, 3)) == (3, [2, 0, 1], -0.333)
    ws.advance(T0 + 70)                 # the item at 0 leaves the 1-minute window
    assert ws.get("ACME", 60.0).counts == [1, 0, 1] and ws.get("ACME", 3600.0).n == 3
    ws.add("ACME", _entry(9, 65, NEG))  # out of order, still inside: counted
    assert ws.get("ACME", 60.0).item_ids(NEG) == ["i2", "i9"]
    assert not ws.add("ACME", _entry(10, -5000, NEG))   # late for every window
    assert [k for k, _ in ws.top(3600.0)] == ["ACME"]


# -- rules and alerts ---------------------------------------------------------------------------
def _feed(engine, ws, key, labels, start=0.0, step=60.0):
    alerts = []
    for i, label in enumerate(labels):
        e = Entry(T0 + start + i * step, int(start / step) + i, label, {NEG: -0.9, NEU: 0.0, POS: 0.9}[label],
                  f"{key}-{int(start)}-{i}")
        ws.advance(e.ts)
        ws.add(key, e)
        alerts += engine.on_entry(key, e, ws)
    return alerts


def test_negative_share_fires_once_per_episode_with_cooldown_and_severity():
    rule = NegativeShareRule("share", window=600, threshold=0.5, min_volume=4, cooldown=3600, critical_at=0.9)
    ws, engine = WindowSet(rule.windows()), AlertEngine([rule])
    assert _feed(engine, ws, "ACME", [NEU, NEG, NEU, NEU]) == []                   # 25 %: below
    alerts = _feed(engine, ws, "ACME", [NEG, NEG], start=240)                      # 3 of 6 = 50 %
    assert len(alerts) == 1 and alerts[0].key == "ACME" and alerts[0].severity == "warning"
    assert alerts[0].ts == T0 + 300 and alerts[0].items == ["ACME-0-1", "ACME-240-0", "ACME-240-1"]
    assert _feed(engine, ws, "ACME", [NEG] * 5, start=360) == []                   # still active: no repeat
    assert _feed(engine, ws, "ACME", [POS] * 12, start=720) == []                  # clears
    assert _feed(engine, ws, "ACME", [NEG] * 12, start=1440) == []                 # again, but within cooldown
    assert engine.suppressed == 1
    assert _feed(engine, ws, "ACME", [POS] * 20, start=5 * 3600) == []
    again = _feed(engine, ws, "ACME", [NEG] * 20, start=6 * 3600)
    assert [a.severity for a in again] == ["critical"]                             # 100 % >= critical_at
    assert engine.states[("share", "ACME")]["last"] == again[0].ts


def test_share_rule_volume_condition_needs_news_on_top_of_the_usual_flow():
    """With ``volume_ratio``, five bad items of six in an hour fire for a name that usually gets one
    item an hour, not for one that usually gets six (the same share, no extra news)."""
    kw = dict(window=3600, threshold=0.7, min_volume=6)
    plain, vol = NegativeShareRule("s", **kw), NegativeShareRule("s", baseline=86400, volume_ratio=2.0, **kw)
    assert vol.windows() == [3600, 86400] and plain.windows() == [3600]
    hour = [NEG, NEG, NEU, NEG, NEG, NEG]
    for per_hour, fires in ((1, True), (6, False)):
        ws = WindowSet(vol.windows())
        entries = [Entry(T0 + i * 3600 / per_hour, i, NEU, 0.0, f"d{i}") for i in range(23 * per_hour)]
        entries += [Entry(T0 + 23 * 3600 + 1 + i * 500, 10_000 + i, lab, 0.0, f"h{i}") for i, lab in enumerate(hour)]
        for e in entries:
            ws.advance(e.ts)
            ws.add("ACME", e)
        rest = ws.get("ACME", 86400).n - ws.get("ACME", 3600).n
        assert vol.expected_volume("ACME", ws) == pytest.approx(rest / 82800 * 3600)
        assert plain.check("ACME", ws, {}) is not None
        found = vol.check("ACME", ws, {})
        assert (found is not None) is fires, per_hour
        if fires:
            assert "x the usual volume" in found.message and found.volume == 6
    ws = WindowSet(vol.windows())                 # no history before the window: the condition passes
    for i, lab in enumerate(hour):
        ws.advance(T0 + i * 500)
        ws.add("ACME", Entry(T0 + i * 500, i, lab, 0.0, f"n{i}"))
    assert vol.expected_volume("ACME", ws) is None and vol.check("ACME", ws, {}) is not None
    with pytest.raises(ConfigError, match="baseline .* must be longer than window"):
        rule_from_dict({"name": "x", "kind": "negative_share", "window": "2h", "baseline": "1h", "volume_ratio": 2})
    with pytest.raises(ConfigError, match="volume_ratio"):
        rule_from_dict({"name": "x", "kind": "negative_share", "baseline": "24h", "volume_ratio": 0})


def test_surge_rule_uses_an_ewma_baseline_and_dedup_folds_rules():
    surge = NegativeSurgeRule("surge", bucket=3600, z=3.0, min_count=4, warmup=3)
    share = NegativeShareRule("share", window=3600, threshold=0.5, min_volume=4)
    ws, engine = WindowSet([3600.0]), AlertEngine([surge, share], dedup_s=7200)
    for hour in range(5):   # baseline: 1 negative in 6 per hour
        assert _feed(engine, ws, "ACME", [NEG, NEU, POS, NEU, POS, NEU], start=hour * 3600, step=600) == []
    st = engine.states[("surge", "ACME")]
    assert st["n"] == 4 and 0.9 < st["mean"] <= 1.0
    alerts = _feed(engine, ws, "ACME", [NEG] * 8, start=5 * 3600, step=60)
    assert [a.rule for a in alerts] == ["surge"]          # the share rule fired too: folded by dedup
    assert "z =" in alerts[0].message and engine.suppressed == 1


def test_sentiment_drop_compares_with_the_rest_of_the_baseline():
    rule = SentimentDropRule("drop", window=3600, baseline=86400, drop=0.5, min_volume=4, min_baseline=10)
    ws, engine = WindowSet(rule.windows()), AlertEngine([rule])
    assert _feed(engine, ws, "ACME", [POS, NEU] * 10, step=600) == []
    alerts = _feed(engine, ws, "ACME", [NEG] * 4, start=20 * 600, step=300)
    assert len(alerts) == 1 and alerts[0].value >= 0.5


def test_negative_run_adds_up_a_slow_burst_that_no_hourly_window_sees():
    """Six negatives in 12 items spread over 3 h (never more than 2 in an hour) fire the CUSUM rule
    once; a busy day of the same number of negatives among mostly neutral news never does."""
    run = NegativeRunRule("run", window=4 * 3600, baseline_share=0.15, event_share=0.6, threshold=4.0,
                          min_count=4)
    share = NegativeShareRule("share", window=3600, threshold=0.6, min_volume=4)
    up, down = math.log(0.6 / 0.15), math.log(0.4 / 0.85)
    ws, engine = WindowSet([3600.0, 4 * 3600.0]), AlertEngine([run, share])
    busy = [NEU, NEU, NEG, NEU, POS, NEU, NEU, NEG] * 6          # 25 % negative over 8 h
    assert _feed(engine, ws, "GLBX", busy, step=600) == []
    slow = [NEG, NEU] * 6                                        # 50 % negative, one every 30 min
    alerts = _feed(engine, ws, "ACME", slow, start=8 * 3600, step=900)
    assert [a.rule for a in alerts] == ["run"]
    a = alerts[0]
    # the best run ending at the alerting item: all of it so far (n negatives, n - 1 others)
    negatives = len(a.items)
    assert a.value == pytest.approx(negatives * up + (negatives - 1) * down) and a.value >= 4.0
    assert negatives == 6 and a.items == [f"ACME-28800-{i}" for i in range(0, 11, 2)]
    assert "CUSUM" in a.message and f"{negatives} of the last {2 * negatives - 1} items negative" in a.message


def test_negative_run_is_the_same_whatever_order_the_items_arrive_in():
    rule = NegativeRunRule("run", window=3 * 3600, threshold=3.0, min_count=3)
    labels = [NEU, NEG, NEG, NEU, NEG, POS, NEG, NEU, NEG]
    entries = [Entry(T0 + i * 300, i, lab, 0.0, f"i{i}") for i, lab in enumerate(labels)]
    values = []
    for order in (entries, entries[::-1], entries[3:] + entries[:3]):
        ws = WindowSet([3 * 3600.0], grace=3000)
        for e in order:
            ws.advance(e.ts)
            ws.add("ACME", e)
        values.append(rule.check("ACME", ws, {}).value)
    assert values[0] == pytest.approx(values[1]) == pytest.approx(values[2])
    with pytest.raises(ConfigError, match="baseline_share < event_share"):
        rule_from_dict({"name": "x", "kind": "negative_run", "baseline_share": 0.5, "event_share": 0.4})


def _scored(ps, start=0.0, step=600.0, key="ACME"):
    """Entries whose label is the top class at 0.5 but which carry their calibrated p(negative)."""
    return [Entry(T0 + start + i * step, int(start) + i, NEG if p >= 0.5 else NEU, -p, f"{key}-{int(start)}-{i}", p)
            for i, p in enumerate(ps)]


def _check(rule, entries, key="ACME"):
    ws = WindowSet(rule.windows())
    for e in entries:
        ws.advance(e.ts)
        ws.add(key, e)
    return rule.check(key, ws, {})


def test_negative_run_on_probabilities_counts_headlines_the_labels_call_neutral():
    """A burst of headlines the model finds only somewhat negative (p 0.3 - 0.45, none of them a
    negative label) fires the probability rule, not the label rule; a calm stream of clearly neutral
    items (p 0.02) does not; at p 0 / 1 both rules give the same statistic."""
    kw = dict(window=4 * 3600, baseline_share=0.15, event_share=0.6, threshold=4.0, min_count=3)
    by_label = NegativeRunRule("run", **kw)
    by_prob = NegativeRunRule("run", evidence="probability", model_prior=0.15, **kw)
    burst = _scored([0.02] * 6 + [0.35, 0.4, 0.3, 0.45, 0.38, 0.42, 0.33, 0.4, 0.36, 0.41, 0.39, 0.44])
    assert _check(by_label, burst) is None
    found = _check(by_prob, burst)
    assert found is not None and found.value >= 4.0 and "about" in found.message
    # the best run starts at the first of the somewhat negative items, not in the calm before
    assert found.volume == 12
    # its value: the exact mixture likelihood ratio of each item
    odds = (0.15 / 0.85)
    expect = sum(math.log((0.6 * (p / (1 - p)) / odds + 0.4) / (0.15 * (p / (1 - p)) / odds + 0.85))
                 for p in [0.35, 0.4, 0.3, 0.45, 0.38, 0.42, 0.33, 0.4, 0.36, 0.41, 0.39, 0.44])
    assert found.value == pytest.approx(expect)
    assert _check(by_prob, _scored([0.02] * 40)) is None
    hard = _scored([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    assert _check(by_prob, hard).value == pytest.approx(_check(by_label, hard).value, rel=1e-4)
    # min_count is the expected number of negatives: 12 items at ~0.39 are ~4.6, not enough for 5
    assert _check(NegativeRunRule("run", evidence="probability", **{**kw, "min_count": 5}), burst) is None
    # an entry written before probabilities were kept counts by its label
    old = [Entry(e.ts, e.seq, NEG, -0.9, e.item_id) for e in hard]
    assert _check(by_prob, old).value == pytest.approx(_check(by_label, old).value)
    with pytest.raises(ConfigError, match="evidence must be one of"):
        rule_from_dict({"name": "x", "kind": "negative_run", "evidence": "score"})
    with pytest.raises(ConfigError, match="model_prior"):
        rule_from_dict({"name": "x", "kind": "negative_run", "model_prior": 1.5})


def test_negative_run_baseline_is_the_entitys_own_usual_share():
    """With ``baseline`` set, the share tested against is the entity's own over the 24 h before the
    CUSUM's window, smoothed towards ``baseline_share``: the same four bad headlines fire the rule
    for a name whose news is usually clean, and not for one that always draws bad news."""
    kw = dict(window=3 * 3600, baseline_share=0.15, event_share=0.8, threshold=5.0, min_count=3)
    fixed, own = NegativeRunRule("run", **kw), NegativeRunRule("run", baseline=86400, baseline_weight=20, **kw)
    assert own.windows() == [3 * 3600, 86400] and fixed.windows() == [3 * 3600]
    burst = [NEG, NEG, NEU, NEG, NEG]
    for usual, fires in ((NEU, True), (NEG, False)):
        day = [usual if i % 3 == 0 else NEU for i in range(60)]          # 20 or 0 negatives in 60
        entries = [Entry(T0 + i * 1200, i, lab, 0.0, f"d{i}") for i, lab in enumerate(day)]
        entries += [Entry(T0 + 60 * 1200 + i * 300, 100 + i, lab, 0.0, f"b{i}") for i, lab in enumerate(burst)]
        ws = WindowSet(own.windows())
        for e in entries:
            ws.advance(e.ts)
            ws.add("ACME", e)
        # "before": the day's items in the 24 h window but not in the 3 h one
        w, b = ws.get("ACME", 3 * 3600), ws.get("ACME", 86400)
        before, neg_before = b.n - w.n, b.counts[NEG] - w.counts[NEG]
        assert own.baseline_for("ACME", ws) == pytest.approx((neg_before + 20 * 0.15) / (before + 20))
        assert fixed.baseline_for("ACME", ws) == 0.15
        assert (own.check("ACME", ws, {}) is not None) is fires, usual
        assert fixed.check("ACME", ws, {}) is not None        # the fixed share cannot tell the two apart
        if fires:
            assert "usual share" in own.check("ACME", ws, {}).message
    # a name with every item negative: the share is capped at event_share / 2 (a bad headline is evidence)
    ws = WindowSet(own.windows())
    for i in range(80):
        ws.advance(T0 + i * 600)
        ws.add("ACME", Entry(T0 + i * 600, i, NEG, -1.0, f"n{i}"))
    assert own.baseline_for("ACME", ws) == pytest.approx(0.4)
    with pytest.raises(ConfigError, match="baseline .* must be longer than window"):
        rule_from_dict({"name": "x", "kind": "negative_run", "window": "3h", "baseline": "2h"})
    with pytest.raises(ConfigError, match="baseline_weight"):
        rule_from_dict({"name": "x", "kind": "negative_run", "baseline": "24h", "baseline_weight": 0})
    assert rule_from_dict({"name": "x", "kind": "negative_run", "baseline": "24h"}).baseline == 86400


def test_rule_config_errors_are_one_clear_line():
    with pytest.raises(ConfigError, match="kind must be one of"):
        rule_from_dict({"name": "x", "kind": "nope"})
    with pytest.raises(ConfigError, match="unknown key"):
        rule_from_dict({"name": "x", "kind": "negative_share", "treshold": 0.5})
    with pytest.raises(ConfigError, match="duration"):
        rule_from_dict({"name": "x", "kind": "negative_share", "window": "an hour"})
    with pytest.raises(ConfigError, match="baseline must be longer"):
        rule_from_dict({"name": "x", "kind": "sentiment_drop", "window": "1d", "baseline": "1h"})
    with pytest.raises(ConfigError, match=r"\[sinks\]: unknown key"):
        MonitorConfig.from_dict({"model": {"scorer": "keywords"}, "sinks": {"slack": "x"}})
    with pytest.raises(ConfigError, match="needs `bundle"):
        MonitorConfig.from_dict({"model": {}})


# -- ingest --------------------------------------------------------------------------------------
def test_csv_with_quoted_newlines_resumes_from_its_offset(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text('id,timestamp,text,entities\n1,2024-05-01T00:00:00Z,"Acme, Inc. beats\nestimates",ACME\n'
                    "2,2024-05-01T00:01:00Z,,\n3,2024-05-01T00:02:00Z,Globex slumps,GLBX;ACME\n")
    src = FileSource(path)
    first = src.poll(1)
    assert first[0].item.text == "Acme, Inc. beats\nestimates" and first[0].line == 3
    resumed = FileSource(path, (first[0].offset, first[0].line))
    rest = resumed.poll(10)
    assert [r.error for r in rest] == ["text is empty", None] and rest[1].item.entities == ["GLBX", "ACME"]
    assert rest[0].line == 4 and resumed.done


def test_replay_is_time_compressed(tmp_path):
    write_jsonl([{"id": str(i), "ts": T0 + i * 60, "text": "x"} for i in range(4)], tmp_path / "n.jsonl")
    src = FileSource(tmp_path / "n.jsonl", speed=600)      # a minute of news every 0.1 s
    got, t = [], time.monotonic()
    while not src.done:
        got += src.poll(10)
        time.sleep(src.wait_hint())
    assert len(got) == 4 and 0.25 < time.monotonic() - t < 1.5


def test_duplicates_malformed_and_watch_dir_and_stdin(tmp_path):
    import io

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = MonitorConfig.load(write_config(tmp_path, files=[], extra='[ingest.watch]\n'.replace(
        "[ingest.watch]\n", "")))
    cfg.ingest.watch_dir, cfg.ingest.poll_s = str(inbox), 0.05
    write_jsonl([{"id": "a", "ts": T0, "text": "$ACME beats"}, {"id": "b", "ts": T0 + 1, "text": "$ACME misses"}],
                inbox / "01.jsonl")
    (inbox / "02.jsonl").write_text('{"id": "a", "ts": 1, "text": "dup"}\nnot json\n')
    old = time.time() - 60
    for f in inbox.iterdir():
        import os

        os.utime(f, (old, old))
    stdin = io.StringIO('{"id": "s1", "text": "$GLBX surges"}\n{"id": "s2"}\n')
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        stats = mon.run(once=True, stdin=stdin)
        assert (stats.scored, stats.duplicates, stats.malformed) == (3, 1, 2)
        labels = dict(mon.store.db.execute("SELECT id, label FROM items").fetchall())
    assert labels == {"a": "positive", "b": "negative", "s1": "positive"}
    dead = [json.loads(x) for x in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert {d["reason"].split(":")[0] for d in dead} == {"not valid JSON", "missing text"}


# -- sinks ---------------------------------------------------------------------------------------
def test_webhook_retries_with_backoff_then_gives_up_on_client_errors():
    r = WebhookReceiver(fail_first=2)
    waits = []
    try:
        sink = WebhookSink(r.url, retries=3, backoff_s=0.01, max_backoff_s=0.02, sleep=waits.append)
        assert sink.send({"id": "a1", "x": 1}) == (True, 3, None)
        assert r.attempts == 3 and len(waits) == 2 and waits[0] <= 0.01 and waits[1] <= 0.02
        assert r.headers[0]["Idempotency-Key"] == "a1"
        r.fail_left, r.status = 5, 400                       # a client error is not retried
        assert sink.send({"id": "a2"}) == (False, 1, "HTTP 400")
        r.fail_left, r.status = 10, 503
        assert sink.send({"id": "a3"})[:2] == (False, 4)    # 1 + 3 retries
    finally:
        r.close()
    dead = WebhookSink("http://127.0.0.1:9/x", retries=1, backoff_s=0, timeout_s=0.5, sleep=lambda s: None)
    ok, attempts, error = dead.send({"id": "a4"})
    assert (ok, attempts) == (False, 2) and "URLError" in error


def test_failed_webhook_delivery_is_retried_on_restart(tmp_path):
    items = make_stream(300, burst_ticker="ACME", burst_at=0.5)
    write_jsonl(items, tmp_path / "news.jsonl")
    down = WebhookReceiver(fail_first=100)
    cfg = MonitorConfig.load(write_config(tmp_path, files=["news.jsonl"], webhook_url=down.url))
    cfg.sinks.webhook.retries, cfg.sinks.sqlite = 1, "alerts.db"
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        mon.run()
        mon.flush(10)
        assert mon.store.delivery_counts()["webhook"] == {"failed": 1}
    down.close()
    up = WebhookReceiver()
    try:
        cfg.sinks.webhook.url = up.url
        with Monitor(cfg, scorer=KeywordScorer()) as mon:   # nothing new to read; the outbox is retried
            assert mon.flush(10)
            assert mon.store.delivery_counts()["webhook"] == {"done": 1}
        assert [p["key"] for p in up.posts] == ["ACME"]
    finally:
        up.close()
    import sqlite3

    con = sqlite3.connect(tmp_path / "alerts.db")
    assert [r[0] for r in con.execute("SELECT key FROM alerts")] == ["ACME"]   # the SQLite sink
    con.close()


# -- HTTP ----------------------------------------------------------------------------------------
def test_post_v1_events(tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.application import load_app
    from tuneforge.serve import create_server, new_registry

    path = write_config(tmp_path, files=[])
    cfg = MonitorConfig.load(path)
    with Monitor(cfg, scorer=KeywordScorer()) as mon, TestClient(create_server(
            load_app("finance-monitor", path, registry := new_registry(), monitor=mon), registry=registry,
            token="s3cret")) as client:
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/events", json={"id": "1", "text": "x"}).status_code == 401
        r = client.post("/v1/events", headers=auth, json={"events": [
            {"id": "1", "timestamp": "2024-05-01T00:00:00Z", "text": "$ACME beats estimates"},
            {"id": "1", "text": "repeat"}, {"id": "2"}, {"id": "3", "text": "Globex slumps", "ts": T0 + 5}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["accepted"], body["duplicates"]) == (2, 1)
        assert body["malformed"] == [{"line": 3, "reason": "missing text"}]
        assert client.post("/v1/events", headers={**auth, "Content-Type": "application/json"},
                           content=b"{").status_code == 400
        assert client.post("/v1/events", headers=auth, json=[]).status_code == 422
        assert client.get("/v1/status", headers=auth).json()["stats"]["scored"] == 2
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/v1/status").json()["error"]["type"] == "unauthorized"   # the project's error shape
        assert "tuneforge_finance_items_total{outcome=\"scored\"} 2.0" in client.get("/metrics", headers=auth).text
        ents = dict(mon.store.db.execute("SELECT id, entities FROM items").fetchall())
        assert json.loads(ents["3"]) == ["GLBX"]


# -- the model path: a tiny exported bundle ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sentiment_bundle(tiny_encoder_dir, tmp_path_factory):
    from tuneforge.export import export_run

    root = tmp_path_factory.mktemp("fin-bundle")
    run = make_run(root / "runs", tiny_encoder_dir, "classification", labels=["negative", "neutral", "positive"],
                   task="finance-sentiment", n_rows=24)
    return export_run(run, out_dir=root / "exports", variants=["fp32", "int8"], measure=False)


def test_bundle_scorer_through_the_monitor_config(tmp_path, tiny_sentiment_bundle):
    items = make_stream(50)
    write_jsonl(items, tmp_path / "news.jsonl")
    path = write_config(tmp_path, files=["news.jsonl"])
    path.write_text(path.read_text().replace('scorer = "keywords"',
                                             f'bundle = "{tiny_sentiment_bundle}"\nvariant = "int8"'))
    with Monitor(MonitorConfig.load(path)) as mon:
        assert isinstance(mon.scorer, BundleScorer) and mon.scorer.predictor.variant == "int8"
        assert mon.run().scored == 50
        probs = np.array(mon.store.db.execute("SELECT p_neg, p_neu, p_pos FROM items").fetchall())
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    raw = mon.scorer.predictor.predict([items[0]["text"]])[0]
    # INT8 quantises activations per batch: alone vs in a batch of 50 differs a little
    assert abs(probs[0][["negative", "neutral", "positive"].index(raw.label)] - raw.score) < 0.01


def test_negative_at_counts_an_item_negative_from_that_probability(tmp_path):
    """``[model] negative_at``: p(negative) at or above it makes the item negative (for windows, rules
    and the stored label); without it the most likely label wins."""
    from tuneforge.plugins.finance.scoring import decide_labels

    probs = np.array([[0.30, 0.60, 0.10], [0.20, 0.30, 0.50], [0.70, 0.20, 0.10], [0.05, 0.15, 0.80]])
    assert decide_labels(probs).tolist() == [NEU, POS, NEG, POS]
    assert decide_labels(probs, 0.25).tolist() == [NEG, POS, NEG, POS]
    assert decide_labels(np.zeros((0, 3)), 0.3).tolist() == []
    items = make_stream(40)
    write_jsonl(items, tmp_path / "news.jsonl")
    path = write_config(tmp_path, files=["news.jsonl"])
    labels = {}
    for negative_at in (None, 0.04):   # the keyword scorer gives every text p(negative) >= 0.05
        text = path.read_text().replace('scorer = "keywords"', 'scorer = "keywords"' + (
            f"\nnegative_at = {negative_at}" if negative_at else ""))
        cfg_path = tmp_path / f"monitor-{negative_at}.toml"
        cfg_path.write_text(text.replace('db = "', f'db = "{negative_at}-'))
        with Monitor(MonitorConfig.load(cfg_path)) as mon:
            mon.run()
            labels[negative_at] = [r[0] for r in mon.store.db.execute("SELECT label FROM items").fetchall()]
    assert len(labels[None]) == 40 and set(labels[None]) != {"negative"}
    assert labels[0.04] == ["negative"] * 40
    with pytest.raises(ConfigError, match="negative_at must be a probability"):
        MonitorConfig.from_dict({"model": {"scorer": "keywords", "negative_at": 1.5}})


def test_window_entries_keep_the_calibrated_p_negative_across_a_restart(tmp_path):
    """The probability CUSUM reads each entry's p(negative): the monitor puts the scorer's value
    there, and windows rebuilt from the store after a restart carry the same values."""
    write_jsonl(make_stream(30), tmp_path / "news.jsonl")
    path = write_config(tmp_path, files=["news.jsonl"])
    with Monitor(MonitorConfig.load(path)) as mon:
        mon.run()
        stored = dict(mon.store.db.execute("SELECT id, p_neg FROM items").fetchall())
        live = {e.item_id: e.p_negative for _, e in mon.store.entries_since(0.0)}
    assert len(stored) == 30 and live == pytest.approx(stored)
    with Monitor(MonitorConfig.load(path)) as mon:   # windows rebuilt from the store
        rebuilt = [e for ws in mon.windows.keys.values() for w in ws.values() for e in w.entries()]
    assert rebuilt and all(e.p_negative == pytest.approx(stored[e.item_id]) for e in rebuilt)


@pytest.fixture(scope="module")
def tiny_topic_bundle(tiny_encoder_dir, tmp_path_factory):
    from tuneforge.export import export_run

    root = tmp_path_factory.mktemp("topic-bundle")
    run = make_run(root / "runs", tiny_encoder_dir, "classification", n_rows=16)   # labels card/payment/account
    return export_run(run, out_dir=root / "exports", variants=["fp32"], measure=False)


def test_bundle_with_other_labels_is_refused(tiny_topic_bundle):
    from tuneforge.runtime import Predictor

    with pytest.raises(ConfigError, match="negative / neutral / positive"):
        BundleScorer(Predictor.load(tiny_topic_bundle))


def test_topic_model_labels_items_and_topic_windows_get_rules(tmp_path, tiny_topic_bundle):
    write_jsonl([{"id": "t1", "ts": T0, "text": "$ACME misses"},
                 {"id": "t2", "ts": T0 + 1, "text": "$ACME misses", "topic": "earnings"}], tmp_path / "n.jsonl")
    path = write_config(tmp_path, files=["n.jsonl"], extra="")
    cfg = MonitorConfig.load(path)
    cfg.model.topic_bundle = str(tiny_topic_bundle)
    rule = NegativeShareRule("topic-share", scope="topic", window=3600, threshold=0.5, min_volume=1)
    assert rule.applies_to("topic:earnings") and not rule.applies_to("ACME") and not rule.applies_to("*")
    cfg.rules = [rule]
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        assert mon.topic_scorer is not None
        mon.run()
        topics = dict(mon.store.db.execute("SELECT id, topic FROM items").fetchall())
        alerts = mon.store.alerts()
    assert topics["t1"] in {"card", "payment", "account"} and topics["t2"] == "earnings"   # the item's own wins
    assert sorted(a["key"] for a in alerts) == sorted({f"topic:{topics['t1']}", "topic:earnings"})


# -- report and CLI ------------------------------------------------------------------------------------
@pytest.fixture
def monitored(tmp_path):
    write_jsonl(make_stream(400, burst_ticker="ACME", burst_at=0.7), tmp_path / "news.jsonl")
    cfg = MonitorConfig.load(write_config(tmp_path, files=["news.jsonl"]))
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        mon.run()
    return tmp_path / "monitor.db"


def test_report_finance_cli_writes_png_and_self_contained_html(monitored, tmp_path):
    from tuneforge.cli import cli

    out = tmp_path / "reports"
    res = CliRunner().invoke(cli, ["report", "finance", "--db", str(monitored), "--since", "12h", "--out", str(out),
                                   "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["alerts"] == 1 and data["entities"][0]["key"] in {"ACME", "GLBX", "INIT", "UMBR", "HOOL"}
    png = (out / "finance-report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "finance-report.html").read_text()
    assert "data:image/png;base64," in page and "ACME" in page and "<link" not in page and "src=\"http" not in page
    res = CliRunner().invoke(cli, ["report", "finance", "--db", str(monitored), "--entity", "NOPE", "--out", str(out)])
    assert res.exit_code == 2 and "no items for NOPE" in res.output
    res = CliRunner().invoke(cli, ["report", "finance", "--db", str(monitored), "--since", "last week"])
    assert res.exit_code == 2 and "--since/--until" in res.output


def test_finance_commands_and_help():
    from tuneforge.cli import cli

    res = CliRunner().invoke(cli, ["finance", "entities", "--text", "$ACME and $GLBX drop"])
    assert res.exit_code == 0 and json.loads(res.output)["entities"] == ["ACME", "GLBX"]
    for args in (["finance", "--help"], ["report", "finance", "--help"], ["finance", "monitor", "--help"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0 and "Examples:" in res.output


def test_python_m_entry_point_reports_config_errors_in_one_line(tmp_path):
    (tmp_path / "monitor.toml").write_text('[model]\nscorer = "keywords"\n[[rules]]\nname = "x"\nkind = "?"\n')
    proc = subprocess.run([sys.executable, "-m", "tuneforge.apps.finance_monitor", "--config",
                           str(tmp_path / "monitor.toml")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: rule #1 (x): kind must be one of")


def test_template_generates_a_project_whose_test_passes(tmp_path):
    from tuneforge.cli import cli

    res = CliRunner().invoke(cli, ["new", "app", "news-watch", "--template", "finance-monitor", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    project = tmp_path / "news-watch"
    assert {p.name for p in project.rglob("*") if p.is_file()} == {"README.md", "monitor.toml", "news.jsonl",
                                                                  "test_news_watch.py"}
    assert "# news-watch" in (project / "README.md").read_text()
    MonitorConfig.load(project / "monitor.toml")   # the config is valid as generated
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    with pytest.raises(UsageError):   # an existing folder is never overwritten
        from tuneforge.cli.apps import render_template
        from tuneforge.tasks import all_templates

        render_template(__import__("pathlib").Path(all_templates()["finance-monitor"].path), project, {})


def test_item_dataclass_validates():
    with pytest.raises(Malformed):
        Item(id="", ts=1.0, text="x")


def test_dashboard_renders_top_entities_and_alerts(monitored, tmp_path, capsys):
    import io

    from rich.console import Console

    from tuneforge.cli import cli
    from tuneforge.plugins.finance.dashboard import render

    cfg = MonitorConfig.load(tmp_path / "monitor.toml")
    with Monitor(cfg, scorer=KeywordScorer()) as mon:    # state from the earlier run: windows restored
        console = Console(file=io.StringIO(), width=140)
        console.print(render(mon))
        text = console.file.getvalue()
    assert "top entities, last 1h" in text and "HOOL" in text and "recent alerts" in text and "ACME:" in text
    # the app entry point with the live dashboard forced on (nothing new to read: exits at once)
    res = CliRunner().invoke(cli, ["finance", "monitor", "--config", str(tmp_path / "monitor.toml"),
                                   "--dashboard", "on", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["stats"]["scored"] == 0


def test_http_service_on_a_real_port(tmp_path):
    import socket
    import urllib.request

    from tuneforge.plugins.finance.run import _serve_beside

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_config(tmp_path, files=[])
    cfg = MonitorConfig.load(path)
    cfg.http.port = port
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        service = _serve_beside(mon, path, cfg)
        try:
            body = json.dumps({"id": "h1", "text": "$ACME plunges after fraud probe"}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=body,
                                         headers={"Content-Type": "application/json"})
            for _ in range(100):   # wait for uvicorn to listen
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        answer = json.loads(resp.read())
                    break
                except OSError:
                    time.sleep(0.05)
            assert answer["accepted"] == 1
        finally:
            service.stop()
        row = mon.store.db.execute("SELECT label, entities FROM items").fetchone()
        assert tuple(row) == ("negative", '["ACME"]')
