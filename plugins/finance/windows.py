"""Rolling windows of counts and sentiment per key (an entity ``AAPL``, a topic ``topic:earnings``, ``*``).

Time is *event time*: the items' own timestamps.  The clock is the newest timestamp seen, so a
replay of last year's news behaves exactly like the live stream did.  A window of size W holds
the items with ``clock - W < ts <= clock``.  Items may arrive out of order: one up to ``grace``
seconds behind the clock (the *watermark* is ``clock - grace``) is put into the windows where
its timestamp belongs; one older than the watermark is *too late* and the monitor sends it to a
side output (the dead-letter file and the store's ``late_items`` table) instead.  Counts and sums
are kept incrementally: adding and expiring are O(1) amortised (an out-of-order insert is a bisect).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

NEG, NEU, POS = 0, 1, 2
LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True, order=True)
class Entry:
    ts: float
    seq: int
    label: int          # NEG / NEU / POS
    sentiment: float    # p(positive) - p(negative), in [-1, 1]
    item_id: str
    p_negative: float | None = field(default=None, compare=False)   # calibrated p(negative); None: unknown


class Window:
    """Items of one key within ``size`` seconds of the clock."""

    def __init__(self, size: float):
        self.size = size
        self._entries: list[Entry] = []
        self._head = 0
        self.counts = [0, 0, 0]
        self.sentiment_sum = 0.0

    def add(self, entry: Entry, clock: float) -> bool:
        """Add ``entry`` (already counted in ``clock``); False if it is too old for this window."""
        if entry.ts <= clock - self.size:
            return False
        if self._entries and entry < self._entries[-1]:
            bisect.insort(self._entries, entry, lo=self._head)   # out of order: rare
        else:
            self._entries.append(entry)
        self.counts[entry.label] += 1
        self.sentiment_sum += entry.sentiment
        self.expire(clock)
        return True

    def expire(self, clock: float) -> None:
        limit = clock - self.size
        entries, head = self._entries, self._head
        while head < len(entries) and entries[head].ts <= limit:
            e = entries[head]
            self.counts[e.label] -= 1
            self.sentiment_sum -= e.sentiment
            head += 1
        if head > 512 and head * 2 > len(entries):
            del entries[:head]
            head = 0
        self._head = head
        if head == len(entries):
            self.sentiment_sum = 0.0   # no float drift once empty

    @property
    def n(self) -> int:
        return len(self._entries) - self._head

    def entries(self, limit: int | None = None) -> list[Entry]:
        """The window's items, oldest first (by timestamp, then arrival); ``limit``: only the newest
        that many (copies no more than it returns)."""
        start = self._head if limit is None else max(self._head, len(self._entries) - limit)
        return self._entries[start:]

    def share(self, label: int) -> float:
        return self.counts[label] / self.n if self.n else 0.0

    @property
    def mean(self) -> float:
        return self.sentiment_sum / self.n if self.n else 0.0

    def item_ids(self, label: int | None = None, limit: int = 20) -> list[str]:
        """The newest ``limit`` item ids in the window (of ``label`` only if given), oldest first."""
        out = []
        for e in reversed(self._entries[self._head:]):
            if label is None or e.label == label:
                out.append(e.item_id)
                if len(out) >= limit:
                    break
        return out[::-1]

    def summary(self) -> dict:
        n = self.n
        return {"n": n, "negative": self.share(NEG), "neutral": self.share(NEU), "positive": self.share(POS),
                "mean": round(self.mean, 4)} if n else {"n": 0}


class WindowSet:
    """Windows of every configured size for every key seen, the stream clock and its watermark.

    ``grace``: allowed lateness in seconds (shorter than the smallest window, so an item inside
    the grace always fits every window).
    """

    def __init__(self, sizes: list[float], grace: float = 0.0):
        self.sizes = sorted(sizes)
        if grace < 0 or (self.sizes and grace >= self.sizes[0]):
            raise ValueError(f"grace {grace} must be >= 0 and shorter than the smallest window {self.sizes[0]}")
        self.grace = float(grace)
        self.clock = float("-inf")
        self.keys: dict[str, dict[float, Window]] = {}

    @property
    def watermark(self) -> float:
        """Items older than this are too late: ``clock - grace``."""
        return self.clock - self.grace

    def too_late(self, ts: float) -> bool:
        return ts < self.watermark

    def advance(self, ts: float) -> None:
        if ts > self.clock:
            self.clock = ts

    def add(self, key: str, entry: Entry) -> bool:
        """Add to every window of ``key``; False if the item is late for all of them."""
        windows = self.keys.get(key)
        if windows is None:
            windows = self.keys[key] = {s: Window(s) for s in self.sizes}
        added = False
        for w in windows.values():
            added = w.add(entry, self.clock) or added
        return added

    def get(self, key: str, size: float) -> Window:
        windows = self.keys.get(key)
        if windows is None:
            return Window(size)
        w = windows[size]
        w.expire(self.clock)
        return w

    def top(self, size: float, n: int = 10, prefix: str | None = None) -> list[tuple[str, Window]]:
        """Keys with the most items in the ``size`` window (``prefix``: only keys starting with it)."""
        rows = []
        for key, windows in self.keys.items():
            if prefix is not None and not key.startswith(prefix):
                continue
            w = windows[size]
            w.expire(self.clock)
            if w.n:
                rows.append((key, w))
        rows.sort(key=lambda kw: (-kw[1].n, kw[0]))
        return rows[:n]
