"""The finance monitor as an app core serves (``tuneforge serve finance-monitor --app-path monitor.toml``):
``/v1/events`` and friends, the ingest loop as a background worker, the monitor's counters on ``/metrics``."""

from __future__ import annotations

import threading

from tuneforge.application import AppContext, LoadedApp

from .durations import format_duration

WARMUP_TEXT = "$ACME shares rise after strong quarterly results"


class MonitorWorker:
    """Runs ``monitor.run`` (files, watched folder) on a thread while the app is served."""

    def __init__(self, monitor):
        self.monitor = monitor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.monitor.run, kwargs={"stop": self._stop},
                                        name="finance-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.monitor.flush(timeout=30)


class MonitorCollector:
    """The monitor's own numbers, read at scrape time (prometheus_client custom collector).

    Label cardinality is bounded: ``entity`` is a watchlist ticker, one of the ``[metrics]
    top_entities`` busiest others, or ``other``; ``rule`` / ``severity`` / ``reason`` / ``kind``
    come from the config, not from the stream.
    """

    def __init__(self, monitor):
        self.monitor = monitor

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        mon = self.monitor
        status = mon.status()
        stats = status["stats"]
        items = CounterMetricFamily("tuneforge_finance_items", "News items by outcome (late: later than the "
                                    "grace, sent to the side output; out_of_order: inside the grace).",
                                    labels=["outcome"])
        for outcome in ("read", "scored", "duplicates", "malformed", "late", "out_of_order"):
            items.add_metric([outcome], stats[outcome])
        yield items
        yield CounterMetricFamily("tuneforge_finance_alerts", "Alerts raised.", value=stats["alerts"])
        raised = CounterMetricFamily("tuneforge_finance_alerts_raised", "Alerts raised, by rule and severity "
                                     "(all alerts in the state database).", labels=["rule", "severity"])
        counts = dict(mon.alert_counts)
        for rule in mon.config.rules:        # series exist at 0 before the first alert (increase() sees it)
            wanted = {rule.severity} | ({"critical"} if rule.critical_at is not None else set())
            for severity in ("info", "warning", "critical"):
                if severity in wanted or (rule.name, severity) in counts:
                    raised.add_metric([rule.name, severity], counts.pop((rule.name, severity), 0))
        for (rule, severity), n in sorted(counts.items()):       # rules since removed from the config
            raised.add_metric([rule, severity], n)
        yield raised
        yield CounterMetricFamily("tuneforge_finance_alerts_suppressed", "Alerts suppressed by cooldown.",
                                  value=status["suppressed"])
        supp = CounterMetricFamily("tuneforge_finance_alerts_held_back", "Alerts held back, by rule and reason "
                                   "(cooldown of the rule, or [alerts] dedup per entity).", labels=["rule", "reason"])
        for row in status["suppressed_by"]:
            supp.add_metric([row["rule"], row["reason"]], row["count"])
        yield supp
        yield GaugeMetricFamily("tuneforge_finance_dead_letters", "Items in the dead-letter file.",
                                value=status["dead_letter"])
        dead = CounterMetricFamily("tuneforge_finance_dead_lettered", "Rows written to the dead-letter file by "
                                   "this process, by kind (malformed, late).", labels=["kind"])
        for kind in ("malformed", "late"):
            dead.add_metric([kind], status["dead_letters"].get(kind, 0))
        yield dead
        yield GaugeMetricFamily("tuneforge_finance_late_items", "Items in the store's side output (later than "
                                "the grace), since the state database was created.", value=mon.store.count_late())
        yield GaugeMetricFamily("tuneforge_finance_watermark_seconds", "Stream clock minus the grace (epoch s).",
                                value=status["watermark"] or 0.0)
        window = format_duration(mon.config.metrics.window or min(mon.windows.sizes))
        volume = GaugeMetricFamily("tuneforge_finance_entity_items", "Items about the entity in the window.",
                                   labels=["entity", "window"])
        share = GaugeMetricFamily("tuneforge_finance_entity_negative_share", "Share of the entity's items in the "
                                  "window that are negative (0 when there are none).", labels=["entity", "window"])
        for entity, n, neg in mon.entity_gauges():
            volume.add_metric([entity, window], n)
            share.add_metric([entity, window], neg / n if n else 0.0)
        yield volume
        yield share


def load(context: AppContext) -> LoadedApp:
    from tuneforge.webpages import WebPages

    from .config import MonitorConfig
    from .http import make_router
    from .live import LiveView, make_live_router
    from .monitor import Monitor

    config = MonitorConfig.load(context.require_path("a monitor.toml"))
    config.http.enabled = True              # served: keep following the sources
    if context.options.get("store"):        # tuneforge serve finance-monitor --store URL
        config.state_db = context.options["store"]
    monitor = context.options.get("monitor") or Monitor(config)
    context.metrics.register(MonitorCollector(monitor))
    worker = None if context.options.get("monitor") else MonitorWorker(monitor)
    return LoadedApp(name=context.name, routers=[make_router(monitor), make_live_router(LiveView(monitor))],
                     pages=WebPages.of(__package__), worker=worker,
                     warmup=lambda: monitor.scorer.score([WARMUP_TEXT]),
                     close=None if context.options.get("monitor") else monitor.close,
                     info={"scorer": monitor.scorer.describe() if hasattr(monitor.scorer, "describe") else
                           type(monitor.scorer).__name__})
