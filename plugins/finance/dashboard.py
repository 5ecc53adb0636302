"""A live terminal dashboard (rich): throughput, top entities with their sentiment shares, recent alerts."""

from __future__ import annotations

from .durations import format_duration, iso
from .sinks import SEVERITY_STYLE


def render(monitor, top: int = 10, n_alerts: int = 8):
    """The dashboard as a rich renderable (also usable without a live display)."""
    from rich.console import Group
    from rich.table import Table

    with monitor.lock:
        st = monitor.status()
        size = min(monitor.windows.sizes)
        rows = [(k, w.n, w.share(0), w.share(1), w.share(2), w.mean)
                for k, w in monitor.windows.top(size, top + 1) if k != "*"][:top]
        market = monitor.windows.get("*", size)
        market_row = (market.n, market.share(0), market.share(1), market.share(2), market.mean)
        alerts = list(monitor.recent_alerts)[-n_alerts:]
        names = monitor.watchlist.name_of
    s = st["stats"]
    clock = iso(st["clock"]) if st["clock"] not in (None, float("-inf")) else "-"
    head = Table.grid(padding=(0, 2))
    head.add_row(f"[bold]finance monitor[/]  stream time {clock}",
                 f"items {s['scored']:,}  ({s['items_per_s']:,.0f}/s)",
                 f"duplicates {s['duplicates']:,}", f"malformed {s['malformed']:,}", f"late {s['late']:,}",
                 f"alerts {s['alerts']:,}  (suppressed {st['suppressed']:,})")
    ents = Table(title=f"top entities, last {format_duration(size)}  "
                       f"(all items: {market_row[0]:,}, {market_row[1]:.0%} negative)", expand=True)
    for col in ("entity", "name", "items", "negative", "neutral", "positive", "mean"):
        ents.add_column(col, justify="left" if col in ("entity", "name") else "right")
    for key, n, neg, neu, pos, mean in rows:
        style = "red" if neg >= 0.5 else ("green" if pos >= 0.5 else "")
        ents.add_row(key, names(key), f"{n:,}", f"[{style}]{neg:.0%}[/]" if style else f"{neg:.0%}",
                     f"{neu:.0%}", f"{pos:.0%}", f"{mean:+.2f}")
    al = Table(title="recent alerts", expand=True)
    for col in ("time", "severity", "rule", "message"):
        al.add_column(col)
    for a in reversed(alerts):
        al.add_row(a["time"], f"[{SEVERITY_STYLE.get(a['severity'], '')}]{a['severity']}[/]", a["rule"], a["message"])
    return Group(head, ents, al)


class Dashboard:
    """``with Dashboard(monitor, console):`` shows :func:`render` live, refreshed by rich's thread."""

    def __init__(self, monitor, console=None, top: int = 10, n_alerts: int = 8, refresh_s: float = 0.5):
        from rich.live import Live

        self.monitor, self.top, self.n_alerts = monitor, top, n_alerts
        self.live = Live(get_renderable=self._render, console=console, refresh_per_second=max(1 / refresh_s, 0.2),
                         transient=False)

    def _render(self):
        return render(self.monitor, self.top, self.n_alerts)

    def refresh(self) -> None:
        pass  # rich's refresh thread redraws; kept so the run loop can nudge any display

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)
