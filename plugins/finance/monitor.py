"""The monitor: records -> dead letters / duplicates -> sentiment + entities -> windows -> rules
-> alerts -> sinks, one transaction per batch.

    from tuneforge.plugins.finance.monitor import Monitor
    from tuneforge.plugins.finance.config import MonitorConfig
    mon = Monitor(MonitorConfig.load("monitor.toml"))          # or scorer=<any object with .score>
    mon.run()                                                   # files, watch dir, stdin until done
    mon.submit([{"id": "n1", "timestamp": "2024-05-01T09:30:00Z", "text": "$ACME misses estimates"}])
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from .alerts import Alert, AlertEngine
from .config import MonitorConfig
from .ingest import DeadLetter, DirectorySource, Record, StdinSource, file_sources
from .items import Item, Malformed
from .scoring import decide_labels, scorer_from_config, topic_scorer_from_config
from .sinks import ConsoleSink, JsonlSink, SqliteSink, WebhookSink
from .store import Store
from .windows import Entry, WindowSet

ALL = "*"


@dataclass
class Stats:
    read: int = 0
    scored: int = 0
    duplicates: int = 0
    malformed: int = 0
    late: int = 0            # later than the grace: side output (dead letter + late_items), not windowed
    out_of_order: int = 0    # behind the clock but inside the grace: windowed where they belong
    alerts: int = 0
    batches: int = 0
    score_s: float = 0.0
    started: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        d["items_per_s"] = round(self.scored / elapsed, 1)
        d.pop("started")
        return d


class Monitor:
    """One monitor over one state database.  ``scorer`` / ``topic_scorer`` / ``sinks`` replace
    what the config would build (tests, benchmarks, other models)."""

    def __init__(self, config: MonitorConfig, *, scorer=None, topic_scorer=None, sinks=None, console=None):
        self.config = config
        self.store = Store(config.store_target(), schema=config.state_schema)
        if scorer is None:
            scorer = scorer_from_config(config.model, config.path)
        if topic_scorer is None:
            topic_scorer = topic_scorer_from_config(config.model, config.path)
        self.scorer, self.topic_scorer = scorer, topic_scorer
        self.watchlist = config.watchlist
        self.windows = WindowSet(config.windows, grace=config.grace)
        self.engine = AlertEngine(config.rules, self.store.rule_states(), names=self.watchlist.name_of,
                                  dedup_s=config.dedup)
        self.dead_letter = DeadLetter(config.path(config.ingest.dead_letter))
        self.stats = Stats(started=time.monotonic())
        self.lock = threading.RLock()
        self.console = console
        self.sinks = self._build_sinks() if sinks is None else list(sinks)
        for sink in self.sinks:
            if isinstance(sink, WebhookSink) and sink.on_result is None:
                sink.on_result = self._webhook_result
        self.recent_alerts: deque = deque(self.store.alerts(limit=50), maxlen=50)
        self.alert_counts: dict[tuple[str, str], int] = self.store.alert_counts()   # (rule, severity)
        self._restore_windows()
        self._redeliver()
        self._closed = False

    # -- setup -------------------------------------------------------------------------
    def _build_sinks(self) -> list:
        cfg = self.config.sinks
        sinks: list = []
        if cfg.console:
            sinks.append(ConsoleSink(self.console))
        if cfg.jsonl:
            sinks.append(JsonlSink(self.config.path(cfg.jsonl)))
        if cfg.sqlite:
            sinks.append(SqliteSink(self.config.path(cfg.sqlite)))
        if cfg.webhook is not None:
            h = cfg.webhook
            sinks.append(WebhookSink(h.url, retries=h.retries, backoff_s=h.backoff_s, max_backoff_s=h.max_backoff_s,
                                     timeout_s=h.timeout_s, headers=h.headers))
        return sinks

    def _restore_windows(self) -> None:
        """Windows from the items of the last ``max_window`` (stream time) in the store."""
        clock = self.store.clock()
        if clock is None:
            return
        self.windows.advance(clock)
        for key, entry in self.store.entries_since(clock - self.config.max_window):
            self.windows.add(key, entry)

    def _redeliver(self) -> None:
        """Deliveries left pending or failed by an earlier run (a crash, a webhook that was down)."""
        for sink in self.sinks:
            for alert in self.store.pending_deliveries(sink.name):
                self._deliver_one(sink, alert)

    # -- processing ------------------------------------------------------------------------
    def process(self, records: list[Record]) -> dict:
        """Score and apply one batch; returns counts, malformed reasons and new alert ids."""
        with self.lock:
            self.stats.read += len(records)
            self.stats.batches += 1
            malformed, good = [], []
            for r in records:
                if r.item is None:
                    self.dead_letter.write(r.source, r.line, r.error or "malformed", r.raw)
                    malformed.append({"line": r.line, "reason": r.error})
                else:
                    good.append(r)
            self.stats.malformed += len(malformed)
            known = self.store.known_ids([r.item.id for r in good]) if good else set()
            new: list[Item] = []
            new_records: list[Record] = []
            seen: set[str] = set()
            for r in good:
                if r.item.id in known or r.item.id in seen:
                    continue
                seen.add(r.item.id)
                new.append(r.item)
                new_records.append(r)
            duplicates = len(good) - len(new)
            self.stats.duplicates += duplicates
            t0 = time.perf_counter()
            probs = self.scorer.score([i.text for i in new]) if new else np.zeros((0, 3))
            topics = [i.topic for i in new]
            if self.topic_scorer is not None:
                todo = [j for j, t in enumerate(topics) if t is None]
                for j, t in zip(todo, self.topic_scorer.topics([new[j].text for j in todo])):
                    topics[j] = t
            self.stats.score_s += time.perf_counter() - t0
            raised, late = self._apply(records, new_records, np.asarray(probs), topics)
            self.stats.scored += len(new)
            self.stats.late += late
        self._deliver(raised)
        return {"accepted": len(new), "duplicates": duplicates, "malformed": malformed, "late": late,
                "alerts": [a["id"] for a in raised]}

    def _apply(self, records, new_records, probs, topics) -> tuple[list[dict], int]:
        alerts: list[Alert] = []
        rows: list[tuple[str, Entry]] = []
        late = 0
        find = self.watchlist.find
        windows = self.windows
        labels = decide_labels(probs, self.config.model.negative_at)
        with self.store.transaction() as st:
            for rec, p, label, topic in zip(new_records, probs, labels, topics):
                item = rec.item
                if windows.too_late(item.ts):
                    self._side_output(st, rec)
                    late += 1
                    continue
                self.stats.out_of_order += item.ts < windows.clock
                label = int(label)
                entities = list(dict.fromkeys(item.entities + find(item.text)))
                seq = st.next_seq()
                st.add_item(item, seq, label, p, entities, topic)
                self.windows.advance(item.ts)
                entry = Entry(item.ts, seq, label, float(p[2] - p[0]), item.id, float(p[0]))
                keys = entities + ([f"topic:{topic}"] if topic else []) + [ALL]
                for key in keys:   # inside the grace: fits every window (grace < smallest window)
                    rows.append((key, entry))
                    if self.windows.add(key, entry):
                        alerts += self.engine.on_entry(key, entry, self.windows)
            st.add_entries(rows)
            st.save_rule_states(self.engine.take_dirty())
            names = [s.name for s in self.sinks]
            raised = [a.to_dict() for a in alerts if st.add_alert(a, names)]
            last: dict[str, Record] = {}
            for r in records:
                if r.offset >= 0:
                    last[r.source] = r
            for src, r in last.items():
                st.set_position(src, r.offset, r.line)
        self.stats.alerts += len(raised)
        for a in raised:
            pair = (a["rule"], a["severity"])
            self.alert_counts[pair] = self.alert_counts.get(pair, 0) + 1
        self.recent_alerts.extend(raised)
        return raised, late

    def _side_output(self, st, rec: Record) -> None:
        """An item later than the grace: the dead-letter file and the ``late_items`` table, with the reason."""
        import json

        from .durations import format_duration, iso

        item, clock = rec.item, self.windows.clock
        reason = (f"late: {format_duration(round(clock - item.ts))} behind the stream clock {iso(clock)} "
                  f"(grace {format_duration(self.windows.grace)})")
        st.add_late(item, clock, reason)
        raw = rec.raw or json.dumps({**item.to_dict(), "timestamp": iso(item.ts)}, ensure_ascii=False)
        self.dead_letter.write(rec.source, rec.line, reason, raw, kind="late")

    def submit(self, events, *, source: str = "http") -> dict:
        """Items from an API call (one dict or a list): a missing timestamp means now."""
        if isinstance(events, dict):
            events = [events]
        now = time.time()
        records = []
        for i, ev in enumerate(events):
            try:
                records.append(Record(source, -1, i + 1, Item.from_dict(ev, default_ts=now, default_source=source)))
            except Malformed as e:
                import json

                records.append(Record(source, -1, i + 1, None, str(e), json.dumps(ev, default=str)[:2000]))
        return self.process(records)

    # -- delivery -----------------------------------------------------------------------------
    def _deliver(self, alerts: list[dict]) -> None:
        for alert in alerts:
            for sink in self.sinks:
                self._deliver_one(sink, alert)

    def _deliver_one(self, sink, alert: dict) -> None:
        if isinstance(sink, WebhookSink):
            sink.deliver(alert)  # settled on its thread -> _webhook_result
            return
        try:
            sink.deliver(alert)
        except Exception as e:  # a sink failure never stops the stream; retried on restart
            self.store.mark_delivery(alert["id"], sink.name, False, error=f"{type(e).__name__}: {e}")
        else:
            self.store.mark_delivery(alert["id"], sink.name, True)

    def _webhook_result(self, alert_id: str, ok: bool, attempts: int, error: str | None) -> None:
        if not self._closed_db():
            self.store.mark_delivery(alert_id, "webhook", ok, attempts=attempts, error=error)

    def _closed_db(self) -> bool:
        return getattr(self, "_db_closed", False)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait for background deliveries (the webhook) to settle."""
        return all(s.flush(timeout) for s in self.sinks if isinstance(s, WebhookSink))

    # -- running -----------------------------------------------------------------------------------
    def sources(self, *, stdin=None) -> list:
        ing = self.config.ingest
        srcs: list = file_sources([self.config.path(f) for f in ing.files], self.store.position,
                                  speed=ing.speed, max_gap_s=ing.max_gap_s)
        if ing.watch_dir:
            srcs.append(DirectorySource(self.config.path(ing.watch_dir), self.store.position, poll_s=ing.poll_s))
        if ing.stdin or stdin is not None:
            srcs.append(StdinSource(stdin))
        return srcs

    def run(self, *, stop: threading.Event | None = None, once: bool = False, dashboard=None, stdin=None) -> Stats:
        """Read every source until done (files), or until ``stop`` is set / Ctrl-C when following
        (a watched folder, the HTTP service, ``[ingest] follow``).  ``once``: stop when nothing is left now."""
        stop = stop or threading.Event()
        srcs = self.sources(stdin=stdin)
        ing = self.config.ingest
        follow = not once and (ing.follow or bool(ing.watch_dir) or self.config.http.enabled)
        try:
            while not stop.is_set():
                records: list[Record] = []
                for s in srcs:
                    if not s.done and len(records) < ing.chunk:
                        records += s.poll(ing.chunk - len(records))
                if records:
                    self.process(records)
                    if dashboard is not None:
                        dashboard.refresh()
                    continue
                if all(s.done for s in srcs) and not follow:
                    break
                if once and all(s.done or isinstance(s, DirectorySource) for s in srcs):
                    break
                hints = [s.wait_hint() for s in srcs if not s.done] or [ing.poll_s]
                stop.wait(min(max(min(hints), 0.001), ing.poll_s))
        except KeyboardInterrupt:
            pass
        return self.stats

    def status(self) -> dict:
        """Counts (``stats``), dead letters, suppressed alerts, the stream clock and deliveries; the
        event-time fields (``watermark``, ``grace``, ``dead_letters`` by kind, ``suppressed_by``) were
        added beside the older ones, which keep their meaning."""
        with self.lock:
            clock = self.windows.clock if self.windows.clock != float("-inf") else None   # None: no item yet
            return {"stats": self.stats.to_dict(), "dead_letter": self.dead_letter.count,
                    "suppressed": self.engine.suppressed, "clock": clock,
                    "deliveries": self.store.delivery_counts(),
                    "watermark": None if clock is None else self.windows.watermark, "grace": self.windows.grace,
                    "dead_letters": dict(self.dead_letter.by_kind),
                    "suppressed_by": [{"rule": r, "reason": why, "count": n}
                                      for (r, why), n in sorted(self.engine.suppressed_by.items())]}

    def entity_gauges(self) -> list[tuple[str, int, int]]:
        """``(entity, items, negative items)`` in the ``[metrics] window`` with bounded cardinality:
        every watchlist ticker, the ``top_entities`` busiest other entities, the rest summed as
        ``"other"`` (topic keys and ``*`` are not entities)."""
        cfg = self.config.metrics
        size = cfg.window or min(self.windows.sizes)
        with self.lock:
            rows = {}
            for key in self.windows.keys:
                if key == ALL or key.startswith("topic:"):
                    continue
                w = self.windows.get(key, size)
                rows[key] = (w.n, w.counts[0])
        listed = set(self.watchlist.companies)
        out = [(t, *rows.get(t, (0, 0))) for t in sorted(listed)]
        rest = sorted(((k, v) for k, v in rows.items() if k not in listed), key=lambda kv: (-kv[1][0], kv[0]))
        out += [(k, n, neg) for k, (n, neg) in rest[:cfg.top_entities] if n]
        other = [v for _, v in rest[cfg.top_entities:]]
        out.append(("other", sum(n for n, _ in other), sum(neg for _, neg in other)))
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()
        self._db_closed = True
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
