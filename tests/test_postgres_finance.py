"""The finance monitor with its state in PostgreSQL (issue 17, part 3): the scenario of
test_finance_scenario.py -- calm stream, burst, SIGKILL and restart -- on a real server, and two
stores writing batches into one schema at once (the advisory lock, ``next_seq``)."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from _postgres import pg_schema, pg_server, query, with_schema  # noqa: F401  (fixtures)
from test_finance_scenario import _start, _wait, receiver, write_config  # noqa: F401  (receiver: a fixture)

from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.durations import parse_timestamp
from tuneforge.plugins.finance.items import Item
from tuneforge.plugins.finance.monitor import Monitor
from tuneforge.plugins.finance.sample import make_stream, write_jsonl
from tuneforge.plugins.finance.scoring import KeywordScorer
from tuneforge.plugins.finance.store import Store


def run_on(store_url, folder, **kw):
    cfg = MonitorConfig.load(write_config(folder, **kw))
    cfg.state_db = store_url
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        mon.run()
        assert mon.flush(10)
        return mon.stats, mon.store.alerts()


def test_calm_and_burst_streams_on_postgres(pg_schema, tmp_path, receiver):
    url, schema = pg_schema
    calm, burst = tmp_path / "calm", tmp_path / "burst"
    calm.mkdir()
    burst.mkdir()
    write_jsonl(make_stream(300), calm / "news.jsonl")
    stats, alerts = run_on(with_schema(url, schema), calm, files=["news.jsonl"], webhook_url=receiver.url)
    assert stats.scored == 300 and alerts == [] and receiver.posts == []

    items = make_stream(600, burst_ticker="ACME", burst_n=12)
    write_jsonl(items, burst / "news.jsonl")
    stats, alerts = run_on(with_schema(url, schema + "_burst"), burst, files=["news.jsonl"], webhook_url=receiver.url)
    try:
        assert stats.scored == len(items) and [a["key"] for a in alerts] == ["ACME"]
        burst_start = min(parse_timestamp(d["timestamp"]) for d in items if d["id"].startswith("b"))
        assert burst_start <= alerts[0]["ts"] < burst_start + 3600
        assert receiver.posts == alerts and receiver.headers[0]["Idempotency-Key"] == alerts[0]["id"]
        assert query(url, schema + "_burst", "SELECT sink, status FROM deliveries ORDER BY sink") == \
            [("jsonl", "done"), ("webhook", "done")]
        # a second run over the same file and store: everything is a duplicate, no alert again
        stats, again = run_on(with_schema(url, schema + "_burst"), burst, files=["news.jsonl"],
                              webhook_url=receiver.url)
        assert stats.scored == 0 and again == alerts and len(receiver.posts) == 1
    finally:
        query(url, schema, f'DROP SCHEMA "{schema}_burst" CASCADE')
    assert not (calm / "monitor.db").exists() and not (burst / "monitor.db").exists()


def test_kill_and_restart_on_postgres_loses_no_item_and_repeats_no_alert(pg_schema, tmp_path, receiver,
                                                                         monkeypatch):
    url, schema = pg_schema
    monkeypatch.setenv("TUNEFORGE_STORE", with_schema(url, schema))    # the monitor's --store, from the env
    items = make_stream(400, burst_ticker="ACME", burst_at=0.5)
    lines = [json.dumps(d) for d in items]
    lines.insert(50, json.dumps(items[10]))                           # a duplicate id
    (tmp_path / "news.jsonl").write_text("\n".join(lines) + "\n")
    span = parse_timestamp(items[-1]["timestamp"]) - parse_timestamp(items[0]["timestamp"])
    config = write_config(tmp_path, files=["news.jsonl"], webhook_url=receiver.url, speed=span / 6.0)

    def value(sql):
        try:
            return query(url, schema, sql)[0][0]
        except Exception:        # the schema is not there before the first start
            return 0

    proc = _start(config)
    _wait(lambda: value("SELECT COUNT(*) FROM items") >= 100, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = value("SELECT COUNT(*) FROM items")
    assert 100 <= first < len(items) and receiver.posts == []

    proc = _start(config)
    _wait(lambda: value("SELECT COUNT(*) FROM deliveries WHERE sink = 'webhook' AND status = 'done'") == 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert value("SELECT COUNT(*) FROM items") < len(items), "the stream had ended: not a mid-stream restart"

    proc = _start(config)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    ids = [r[0] for r in query(url, schema, "SELECT id FROM items")]
    alerts = [json.loads(r[0]) for r in query(url, schema, "SELECT payload FROM alerts")]
    assert sorted(ids) == sorted(d["id"] for d in items)          # no item lost, none twice
    assert [a["key"] for a in alerts] == ["ACME"]                 # no alert repeated
    assert [p["id"] for p in receiver.posts] == [alerts[0]["id"]]
    seqs = [r[0] for r in query(url, schema, "SELECT seq FROM items ORDER BY seq")]
    assert seqs == list(range(1, len(items) + 1))                 # the counter survived the kills
    assert not (tmp_path / "monitor.db").exists()


def test_two_stores_writing_batches_at_once_keep_seq_unique(pg_schema):
    """Two Store objects (two pools: what two processes are to the server) commit batches into one
    schema at once: every item lands, no ``seq`` twice, positions and entries consistent."""
    url, schema = pg_schema
    stores = [Store(url, schema=schema) for _ in range(2)]
    errors: list[BaseException] = []

    def writer(k, st):
        try:
            for b in range(15):
                with st.transaction():
                    for i in range(8):
                        item = Item(id=f"w{k}-{b}-{i}", ts=1_714_550_400.0 + b * 60 + i, text=f"headline {k} {b} {i}",
                                    source=f"src{k}")
                        seq = st.next_seq()
                        st.add_item(item, seq, 1, [0.1, 0.8, 0.1], ["ACME"], None)
                        from tuneforge.plugins.finance.windows import Entry

                        st.add_entries([("ACME", Entry(item.ts, seq, 1, 0.0, item.id))])
                    st.set_position(f"src{k}", (b + 1) * 100, (b + 1) * 8)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k, st)) for k, st in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        seqs = [r[0] for r in query(url, schema, "SELECT seq FROM items")]
        assert len(seqs) == 240 and sorted(seqs) == list(range(1, 241))
        assert query(url, schema, "SELECT COUNT(*), COUNT(DISTINCT seq) FROM item_keys") == [(240, 240)]
        assert stores[0].position("src0") == (1500, 120) and stores[1].position("src1") == (1500, 120)
        assert stores[0].count_items() == 240 and stores[0].known_ids(["w0-0-0", "w1-14-7", "nope"]) == \
            {"w0-0-0", "w1-14-7"}
        assert [r[0] for r in stores[1].items_by_id(["w1-3-2"])] == ["w1-3-2"]
        assert stores[0].alerts(since=None, until=None) == []      # +-infinity bounds on PostgreSQL
    finally:
        for st in stores:
            st.close()


def test_a_failed_batch_rolls_back_on_postgres(pg_schema):
    url, schema = pg_schema
    with Store(url, schema=schema) as st:
        with pytest.raises(RuntimeError):
            with st.transaction():
                st.add_item(Item(id="x1", ts=1.0, text="t"), st.next_seq(), 0, [1, 0, 0], [], None)
                raise RuntimeError("scorer crashed mid-batch")
        assert st.count_items() == 0 and st.known_ids(["x1"]) == set()
        with st.transaction():
            assert st.next_seq() == 1                                 # the rolled-back seq is reused


def test_live_page_reads_alert_items_through_the_postgres_store(pg_schema, tmp_path):
    from tuneforge.plugins.finance.live import LiveView

    url, schema = pg_schema
    write_jsonl(make_stream(600, burst_ticker="ACME", burst_n=12), tmp_path / "news.jsonl")
    cfg = MonitorConfig.load(write_config(tmp_path, files=["news.jsonl"]))
    cfg.state_db = with_schema(url, schema)
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        mon.run()
        body = LiveView(mon).snapshot(None)
    assert [a["key"] for a in body["alerts"]] == ["ACME"]
    assert body["alerts"][0]["items"] and all(i["text"] for i in body["alerts"][0]["items"])
