"""The finance monitor as an app core serves (``tuneforge serve finance-monitor --app-path monitor.toml``):
``/v1/events`` and friends, the ingest loop as a background worker, the monitor's counters on ``/metrics``."""

from __future__ import annotations

import threading

from tuneforge.application import AppContext, LoadedApp

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
    """The monitor's own numbers, read at scrape time (prometheus_client custom collector)."""

    def __init__(self, monitor):
        self.monitor = monitor

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self.monitor.status()
        stats = status["stats"]
        items = CounterMetricFamily("tuneforge_finance_items", "News items by outcome.", labels=["outcome"])
        for outcome in ("read", "scored", "duplicates", "malformed", "late"):
            items.add_metric([outcome], stats[outcome])
        yield items
        yield CounterMetricFamily("tuneforge_finance_alerts", "Alerts raised.", value=stats["alerts"])
        yield CounterMetricFamily("tuneforge_finance_alerts_suppressed", "Alerts suppressed by cooldown.",
                                  value=status["suppressed"])
        yield GaugeMetricFamily("tuneforge_finance_dead_letters", "Items in the dead-letter file.",
                                value=status["dead_letter"])


def load(context: AppContext) -> LoadedApp:
    from tuneforge.webpages import WebPages

    from .config import MonitorConfig
    from .http import make_router
    from .live import LiveView, make_live_router
    from .monitor import Monitor

    config = MonitorConfig.load(context.require_path("a monitor.toml"))
    config.http.enabled = True              # served: keep following the sources
    monitor = context.options.get("monitor") or Monitor(config)
    context.metrics.register(MonitorCollector(monitor))
    worker = None if context.options.get("monitor") else MonitorWorker(monitor)
    return LoadedApp(name=context.name, routers=[make_router(monitor), make_live_router(LiveView(monitor))],
                     pages=WebPages.of(__package__), worker=worker,
                     warmup=lambda: monitor.scorer.score([WARMUP_TEXT]),
                     close=None if context.options.get("monitor") else monitor.close,
                     info={"scorer": monitor.scorer.describe() if hasattr(monitor.scorer, "describe") else
                           type(monitor.scorer).__name__})
