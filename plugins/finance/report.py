"""``tuneforge report finance``: sentiment trend and volume per entity from the monitor's state,
as a PNG (matplotlib) and a self-contained HTML page (the chart inlined, alert table), alerts marked.

Times are stream times (item timestamps); ``--since 24h`` counts back from the newest item,
so a report of a replayed stream works the same as one of a live stream.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneforge.errors import UsageError
from tuneforge.storage import atomic_write

from .durations import iso, parse_duration, parse_timestamp
from .store import Store

NICE_BUCKETS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)


@dataclass
class EntitySeries:
    key: str
    buckets: list[float]             # bucket start times
    volume: list[int]
    negative: list[int]
    mean: list[float | None]         # mean sentiment, None where no items
    total: int = 0


@dataclass
class FinanceReport:
    since: float
    until: float
    bucket_s: float
    entities: list[EntitySeries]
    alerts: list[dict] = field(default_factory=list)
    png: str | None = None
    html: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["since"], d["until"] = iso(self.since), iso(self.until)
        d["entities"] = [{"key": e.key, "items": e.total} for e in self.entities]
        d["alerts"] = len(self.alerts)
        return d


def resolve_time(value: str | None, latest: float, default: float) -> float:
    """``"24h"`` / ``"7d"`` back from ``latest``, or an ISO date/time / epoch; ``None`` -> ``default``."""
    if value is None:
        return default
    try:
        return latest - parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_timestamp(value)
    except ValueError:
        raise UsageError(f"--since/--until {value!r}: use a duration back from the newest item (24h, 7d) "
                         "or an ISO date/time (2024-05-01, 2024-05-01T09:00:00Z)") from None


def choose_bucket(span: float, target: int = 48) -> float:
    want = max(span / target, 1.0)
    return next((b for b in NICE_BUCKETS if b >= want), NICE_BUCKETS[-1])


def collect(store: Store, since: str | None = None, until: str | None = None, entities: list[str] | None = None,
            top: int = 6, bucket: str | None = None) -> FinanceReport:
    first, last = store.time_range()
    if last is None:
        raise UsageError(f"{store.path} has no items yet", hint="run the monitor first")
    t1 = resolve_time(until, last, last)
    t0 = max(resolve_time(since, last, first), first)    # no empty stretch before the first item
    if t0 >= t1:
        raise UsageError(f"nothing between {iso(t0)} and {iso(t1)}: --since must be before --until")
    bucket_s = parse_duration(bucket, "--bucket") if bucket else choose_bucket(t1 - t0)
    keys = [e.upper().lstrip("$") for e in entities] if entities else None
    rows = store.key_series(t0, t1, keys)
    by_key: dict[str, list] = {}
    for key, ts, label, sentiment in rows:
        if key == "*" or key.startswith("topic:") and not keys:
            continue
        by_key.setdefault(key, []).append((ts, label, sentiment))
    if keys:
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise UsageError(f"no items for {', '.join(missing)} between {iso(t0)} and {iso(t1)}")
        chosen = keys
    else:
        chosen = sorted(by_key, key=lambda k: (-len(by_key[k]), k))[:top]
    n_buckets = max(1, math.ceil((t1 - t0) / bucket_s))
    starts = [t0 + i * bucket_s for i in range(n_buckets)]
    series = []
    for key in chosen:
        vol, neg, ssum = [0] * n_buckets, [0] * n_buckets, [0.0] * n_buckets
        for ts, label, sentiment in by_key[key]:
            i = min(int((ts - t0) // bucket_s), n_buckets - 1)
            vol[i] += 1
            neg[i] += label == 0
            ssum[i] += sentiment
        series.append(EntitySeries(key, starts, vol, neg, [s / v if v else None for s, v in zip(ssum, vol)],
                                   total=sum(vol)))
    alerts = [a for a in store.alerts(t0, t1) if a["key"] in set(chosen)]
    return FinanceReport(t0, t1, bucket_s, series, alerts)




def draw_png(report: FinanceReport) -> bytes:
    import io
    from datetime import datetime, timezone

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    n = max(1, len(report.entities))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n), sharex=True, squeeze=False)
    width = report.bucket_s / 86400 * 0.9
    colors = {"critical": "#c0392b", "warning": "#e67e22", "info": "#2980b9"}
    for ax, s in zip(axes[:, 0], report.entities):
        x = [datetime.fromtimestamp(t, tz=timezone.utc) for t in s.buckets]
        ax2 = ax.twinx()
        ax2.bar(x, s.volume, width=width, align="edge", color="#bdc3c7", alpha=0.6, label="items")
        ax2.bar(x, s.negative, width=width, align="edge", color="#e74c3c", alpha=0.5, label="negative")
        ax2.set_ylabel("items", fontsize=8)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        pts = [(xi + (datetime.fromtimestamp(report.bucket_s / 2, tz=timezone.utc) -
                      datetime.fromtimestamp(0, tz=timezone.utc)), m) for xi, m in zip(x, s.mean) if m is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#2c3e50", marker=".", lw=1.5,
                    label="mean sentiment")
        ax.axhline(0, color="#7f8c8d", lw=0.5)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("sentiment", fontsize=8)
        ax.set_title(f"{s.key}  ({s.total} items)", fontsize=10, loc="left")
        for a in report.alerts:
            if a["key"] == s.key:
                t = datetime.fromtimestamp(a["ts"], tz=timezone.utc)
                ax.axvline(t, color=colors.get(a["severity"], "red"), lw=1.5, ls="--")
                ax.annotate(f"▲ {a['rule']}", (t, 0.92), fontsize=7, color=colors.get(a["severity"], "red"))
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    fig.suptitle(f"finance monitor: {iso(report.since)} to {iso(report.until)}, "
                 f"buckets of {int(report.bucket_s // 60)} min", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render_html(report: FinanceReport, png: bytes) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(a['time'])}</td><td class='{esc(a['severity'])}'>{esc(a['severity'])}</td>"
        f"<td>{esc(a['rule'])}</td><td>{esc(a['key'])}</td><td>{esc(a['message'])}</td>"
        f"<td>{len(a.get('items', []))}</td></tr>" for a in report.alerts) or "<tr><td colspan=6>no alerts</td></tr>"
    ents = "".join(
        f"<tr><td>{esc(e.key)}</td><td>{e.total}</td><td>{sum(e.negative) / max(e.total, 1):.0%}</td>"
        f"<td>{_mean(e):+.2f}</td></tr>" for e in report.entities)
    data = esc(json.dumps({"since": iso(report.since), "until": iso(report.until), "alerts": report.alerts}))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>finance monitor report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#2c3e50}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:4px 8px;font-size:13px}}th{{background:#f4f6f7}}
.critical{{color:#c0392b;font-weight:bold}}.warning{{color:#e67e22}}img{{max-width:100%}}</style></head>
<body><h1>Finance monitor report</h1>
<p>{esc(iso(report.since))} to {esc(iso(report.until))} (stream time); buckets of
{int(report.bucket_s // 60)} minutes; {len(report.alerts)} alert(s).</p>
<h2>Entities</h2><table><tr><th>entity</th><th>items</th><th>negative</th><th>mean sentiment</th></tr>{ents}</table>
<h2>Sentiment trend and volume</h2>
<img alt="sentiment trend and volume per entity" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Alerts</h2><table><tr><th>time</th><th>severity</th><th>rule</th><th>entity</th><th>message</th>
<th>items</th></tr>{rows}</table>
<script type="application/json" id="report-data">{data}</script>
</body></html>
"""


def _mean(e: EntitySeries) -> float:
    vals = [(m, v) for m, v in zip(e.mean, e.volume) if m is not None]
    return sum(m * v for m, v in vals) / max(sum(v for _, v in vals), 1)


def write_report(db, out_dir, *, since=None, until=None, entities=None, top: int = 6, bucket=None,
                 name: str = "finance-report") -> FinanceReport:
    """Write ``out_dir/NAME.png`` and ``out_dir/NAME.html`` (atomically) and return the report."""
    from tuneforge.database import is_url

    if not is_url(str(db)) and not Path(db).is_file():
        raise UsageError(f"state database {db} does not exist", hint="pass --db (the monitor's [state] db)")
    with Store(db) as store:
        report = collect(store, since, until, entities, top, bucket)
    png = draw_png(report)
    out = Path(out_dir)
    atomic_write(out / f"{name}.png", png)
    atomic_write(out / f"{name}.html", render_html(report, png).encode("utf-8"))
    report.png, report.html = str(out / f"{name}.png"), str(out / f"{name}.html")
    return report
