"""``tuneforge finance monitor``: the monitor loop in the foreground, with its dashboard and, when
``[http] enabled``, core's server for ``/v1/events`` on a thread beside it."""

from __future__ import annotations

import json
import sys


def run_monitor(config_path, *, once: bool = False, dashboard: str | None = None, speed: float | None = None,
                stdin: bool = False, http_port: int | None = None, as_json: bool = False,
                store: str | None = None) -> int:
    """Load the config, run the monitor (dashboard, HTTP service as configured) and close it."""
    from rich.console import Console

    from .config import MonitorConfig
    from .monitor import Monitor

    config = MonitorConfig.load(config_path)
    if store:
        config.state_db = store
    if speed is not None:
        config.ingest.speed = speed
    if http_port is not None:
        config.http.enabled, config.http.port = True, http_port
    mode = dashboard or config.dashboard.enabled
    console = Console(stderr=True)
    show = mode == "on" or (mode == "auto" and console.is_terminal)
    monitor = Monitor(config, console=console)
    service = None
    try:
        if config.http.enabled:
            service = _serve_beside(monitor, config_path, config)
            console.print(f"POST http://{config.http.host}:{service.port}/v1/events", highlight=False)
        if show:
            from .dashboard import Dashboard

            d = config.dashboard
            with Dashboard(monitor, console, top=d.top, n_alerts=d.alerts, refresh_s=d.refresh_s) as dash:
                monitor.run(once=once, dashboard=dash, stdin=sys.stdin if stdin else None)
        else:
            monitor.run(once=once, stdin=sys.stdin if stdin else None)
        monitor.flush(timeout=60)
        status = monitor.status()
    finally:
        if service is not None:
            service.stop()
        monitor.close()
    if as_json:
        print(json.dumps(status, indent=2, default=str))
    else:
        s = status["stats"]
        console.print(f"done: {s['scored']:,} items scored ({s['items_per_s']:,.0f}/s), {s['duplicates']:,} "
                      f"duplicates, {s['malformed']:,} malformed, {s['alerts']:,} alerts", highlight=False)
    return 0


def _serve_beside(monitor, config_path, config):
    """Core's server for this monitor (the loop stays in the foreground), started on a thread."""
    from tuneforge.application import load_app
    from tuneforge.serve import ServerThread, create_server, new_registry

    registry = new_registry()
    loaded = load_app("finance-monitor", config_path, registry, monitor=monitor)
    app = create_server(loaded, registry=registry, token=config.http.token)
    return ServerThread(app, config.http.host, config.http.port).start()
