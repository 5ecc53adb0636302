"""Durations (``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``) and timestamps (ISO 8601 or epoch) as seconds."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value, what: str = "duration") -> float:
    """``"1h"`` -> 3600.0; a bare number is seconds.  Raises ``ValueError`` naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration like '15m' or '1h', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{what} must be a duration like '90s', '15m', '1h' or '1d', got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


EARLIEST, LATEST = -2208988800.0, 253402300799.0        # 1900-01-01T00:00:00Z, 9999-12-31T23:59:59Z


def parse_timestamp(value) -> float:
    """Epoch seconds from a number (seconds; milliseconds above 1e12) or an ISO 8601 string.

    A string without a zone is taken as UTC.  Raises ``ValueError``.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"timestamp must be ISO 8601 or epoch seconds, got {value!r}")
    if isinstance(value, (int, float)):
        ts = float(value)
    else:
        text = str(value).strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError(f"timestamp {value!r} is not ISO 8601 (2024-05-01T09:30:00Z) "
                                 "or epoch seconds") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
    if ts != ts or ts in (float("inf"), float("-inf")):
        raise ValueError(f"timestamp {value!r} is not a finite number")
    ts = ts / 1000.0 if ts > 1e12 else ts
    if not EARLIEST <= ts <= LATEST:
        raise ValueError(f"timestamp {value!r} is outside 1900-01-01 .. 9999-12-31")
    return ts


def iso(ts: float) -> str:
    """Epoch seconds -> ``2024-05-01T09:30:00Z``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
