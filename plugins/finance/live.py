"""What the monitor's live web page polls: ``GET /v1/live`` (behind the token, like every API).

One JSON snapshot of the monitor's state, read-only: the stream clock and counters, the
entities with the most items in the shortest window (their negative share, volume, mean
sentiment), a trend per entity over the longest window (volume, negative count and mean
sentiment per bucket), and the newest alerts with the items that triggered them.

``?version=V`` (the ``version`` of the last snapshot) answers ``{"version": V, "changed": false}``
while nothing was ingested since, so a page polling every second costs almost nothing when the
stream is quiet; snapshots are computed at most once per ``min_interval_s`` and shared by every
viewer.  Polling, not server-sent events: a browser's ``EventSource`` cannot send the
``Authorization`` header, and a held-open stream would occupy one of the server's in-flight slots
per viewer.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Query

from .durations import format_duration, iso

ALL = "*"
NICE_BUCKETS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass
class LiveConfig:
    top: int = 8                 # entities in the table and the trend
    buckets: int = 48            # trend buckets over the longest window
    alerts: int = 20             # newest alerts
    items_per_alert: int = 10    # triggering items shown per alert
    min_interval_s: float = 1.0  # at most one snapshot computation per this long

    def __post_init__(self):
        for name in ("top", "buckets", "alerts", "items_per_alert"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"LiveConfig.{name} must be a whole number >= 1")
        if self.min_interval_s < 0:
            raise ValueError("LiveConfig.min_interval_s must not be negative")


def _iso(ts: float) -> str | None:
    """``iso(ts)``, or None for a timestamp no calendar can show (an item from the year 300,000)."""
    try:
        return iso(ts)
    except (OverflowError, OSError, ValueError):
        return None


class LiveView:
    """Snapshots of one monitor (its public state: status, store queries), cached by version."""

    def __init__(self, monitor, config: LiveConfig | None = None):
        self.monitor, self.config = monitor, config or LiveConfig()
        self._lock = threading.Lock()
        self._cached: dict | None = None
        self._computed = 0.0

    def version(self) -> str:
        s = self.monitor.status()["stats"]
        return f"{s['read']}.{s['scored']}.{s['alerts']}.{s['late']}"

    def snapshot(self, known: str | None = None) -> dict:
        with self._lock:
            cached = self._cached
            fresh = time.monotonic() - self._computed < self.config.min_interval_s
            if cached is None or (cached["version"] != self.version() and not fresh):
                cached = self._cached = self._compute()
                self._computed = time.monotonic()
        if known is not None and known == cached["version"]:
            return {"version": known, "changed": False}
        return cached

    # -- computing -------------------------------------------------------------------------------
    def _compute(self) -> dict:
        mon, cfg = self.monitor, self.config
        version = self.version()
        status = mon.status()
        window, span = min(mon.config.windows), max(mon.config.windows)
        clock = mon.store.clock()
        body = {"version": version, "changed": True, "clock": None if clock is None else _iso(clock),
                "window": format_duration(window),
                "stats": status["stats"], "dead_letter": status["dead_letter"], "suppressed": status["suppressed"],
                "market": None, "entities": [], "trend": None, "alerts": []}
        if clock is None:
            return body
        first, _ = mon.store.time_range()
        span = min(span, max(clock - (first if first is not None else clock), window))   # no empty stretch
        bucket = next((b for b in NICE_BUCKETS if b * cfg.buckets >= span), NICE_BUCKETS[-1])
        n_buckets = max(1, math.ceil(span / bucket))
        start = clock - n_buckets * bucket
        current: dict[str, list] = {}
        series: dict[str, list] = {}
        for key, ts, label, sentiment in mon.store.key_series(start, clock):
            if key.startswith("topic:"):
                continue
            if ts > clock - window:
                c = current.setdefault(key, [0, 0, 0, 0.0])
                c[int(label)] += 1
                c[3] += sentiment
            i = min(max(int((ts - start) // bucket), 0), n_buckets - 1)
            s = series.setdefault(key, [[0] * n_buckets, [0] * n_buckets, [0.0] * n_buckets])
            s[0][i] += 1
            s[1][i] += int(label) == 0
            s[2][i] += sentiment

        def row(key, c):
            n = c[0] + c[1] + c[2]
            return {"key": key, "name": mon.watchlist.name_of(key), "volume": n,
                    "negative": round(c[0] / n, 4), "neutral": round(c[1] / n, 4), "positive": round(c[2] / n, 4),
                    "mean": round(c[3] / n, 4)}

        if ALL in current:
            body["market"] = row(ALL, current.pop(ALL))
        series.pop(ALL, None)
        alerts = list(reversed(mon.store.alerts(limit=cfg.alerts)))
        entities = sorted(current, key=lambda k: (-sum(current[k][:3]), k))[:cfg.top]
        body["entities"] = [row(k, current[k]) for k in entities]
        shown = list(dict.fromkeys(entities + [a["key"] for a in alerts if a["key"] in series]))[:cfg.top + 4]
        body["trend_span"] = format_duration(n_buckets * bucket)
        body["trend"] = {"start": _iso(start), "start_ts": start, "bucket_s": bucket, "buckets": n_buckets,
                         "series": {k: {"name": mon.watchlist.name_of(k), "volume": series[k][0],
                                        "negative": series[k][1],
                                        "mean": [round(m / v, 4) if v else None
                                                 for m, v in zip(series[k][2], series[k][0])]}
                                    for k in shown if k in series}}
        texts = self._items([i for a in alerts for i in a.get("items", [])[-cfg.items_per_alert:]])
        body["alerts"] = [{"id": a["id"], "time": a["time"], "ts": a["ts"], "rule": a["rule"], "kind": a["kind"],
                           "key": a["key"], "name": a.get("name", a["key"]), "severity": a["severity"],
                           "message": a["message"], "volume": a.get("volume"),
                           "items": [texts[i] for i in a.get("items", [])[-cfg.items_per_alert:] if i in texts]}
                          for a in alerts]
        return body

    def _items(self, ids: list[str]) -> dict[str, dict]:
        """Time, label and text of items by id (a read-only connection to the state database)."""
        if not ids:
            return {}
        if self.monitor.store.db.dialect != "sqlite":    # PostgreSQL: through the store's pool
            return {i: {"id": i, "time": _iso(ts), "label": label, "text": text}
                    for i, ts, label, text in self.monitor.store.items_by_id(ids)}
        uri = Path(self.monitor.store.path).resolve().as_uri() + "?mode=ro"
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(ids))
        db = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            for at in range(0, len(unique), 500):
                chunk = unique[at:at + 500]
                rows = db.execute("SELECT id, ts, label, text FROM items WHERE id IN (%s)"
                                  % ",".join("?" * len(chunk)), chunk)
                for item_id, ts, label, text in rows:
                    found[item_id] = {"id": item_id, "time": _iso(ts), "label": label, "text": text}
        finally:
            db.close()
        return found


def make_live_router(view: LiveView) -> APIRouter:
    router = APIRouter(tags=["finance-monitor"])

    @router.get("/v1/live")
    def live(version: str | None = Query(None, max_length=80,
                                         description="the version of the last snapshot: unchanged -> changed=false")):
        """The live page's snapshot: counters, top entities (negative share, volume), per-entity trend,
        newest alerts with their triggering items."""
        return view.snapshot(version)

    return router
