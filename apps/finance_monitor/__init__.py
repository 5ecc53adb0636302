"""Finance monitor: sentiment of a news stream per company and topic, rolling windows, surge alerts.

    python -m tuneforge.apps.finance_monitor --config monitor.toml

One job per module:

==============  ===================================================================
``config``      ``monitor.toml`` -> typed, validated sections
``items``       an item (id, timestamp, text, source, entities) and its validation
``ingest``      JSONL/CSV files (replay, time compression), watched folder, stdin; dead letters
``scoring``     bundle (onnxruntime) / keyword scorers -> negative, neutral, positive
``windows``     rolling counts and sentiment per key, in stream time
``rules``       negative share, negative surge (EWMA z-score), sentiment drop
``alerts``      edge-triggered alerts with cooldown and de-duplication
``sinks``       console, JSONL, SQLite, webhook (retries, back-off)
``store``       SQLite state: items, read positions, rule state, alerts, delivery outbox
``monitor``     the loop; ``http`` (POST /v1/events); ``dashboard`` (rich); ``report`` (PNG + HTML)
==============  ===================================================================

Entities (cashtags, watchlist) come from :mod:`tuneforge.plugins.finance.entities`.
Docs: ``docs/finance-monitor.md``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import MonitorConfig
from .monitor import Monitor

__all__ = ["Monitor", "MonitorConfig", "main", "run_monitor"]

EXAMPLES = """examples:
  python -m tuneforge.apps.finance_monitor --config monitor.toml
  python -m tuneforge.apps.finance_monitor --config monitor.toml --speed 600 --no-dashboard
  tail -f news.jsonl | python -m tuneforge.apps.finance_monitor --config monitor.toml --stdin
  python -m tuneforge.apps.finance_monitor --config monitor.toml --http-port 8088   # POST /v1/events
"""


def run_monitor(config_path, *, once: bool = False, dashboard: str | None = None, speed: float | None = None,
                stdin: bool = False, http_port: int | None = None, as_json: bool = False) -> int:
    """Load the config, run the monitor (dashboard, HTTP service as configured) and close it."""
    from rich.console import Console

    config = MonitorConfig.load(config_path)
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
            from .http import HttpService

            service = HttpService(monitor, config.http.host, config.http.port, config.http.token).start()
            console.print(f"POST http://{config.http.host}:{config.http.port}/v1/events", highlight=False)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneforge.apps.finance_monitor",
                                     description=__doc__.split("\n")[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", required=True, help="monitor.toml")
    parser.add_argument("--once", action="store_true", help="exit when nothing is left to read now")
    parser.add_argument("--dashboard", choices=["auto", "on", "off"], help="live dashboard (default: config)")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_const", const="off")
    parser.add_argument("--speed", type=float, help="replay speed: N x real time (0: as fast as possible)")
    parser.add_argument("--stdin", action="store_true", help="also read JSON lines from stdin")
    parser.add_argument("--http-port", type=int, help="serve POST /v1/events on this port")
    parser.add_argument("--json", action="store_true", help="print the final status as JSON")
    args = parser.parse_args(argv)
    from tuneforge.errors import TuneforgeError

    try:
        return run_monitor(args.config, once=args.once, dashboard=args.dashboard, speed=args.speed,
                           stdin=args.stdin, http_port=args.http_port, as_json=args.json)
    except TuneforgeError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
