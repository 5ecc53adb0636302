"""A news item as the monitor ingests it, and its validation (one reason per malformed line).

JSON: ``{"id": "n1", "timestamp": "2024-05-01T09:30:00Z", "text": "...", "source": "wire",
"entities": ["AAPL"]}`` (``ts``/``time`` accepted for ``timestamp``; epoch seconds too).
CSV: the same names as columns; ``entities`` separated by ``;`` or spaces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from tuneforge.plugins.finance.entities import normalise_entities

from .durations import parse_timestamp

MAX_TEXT_CHARS = 10_000
MAX_ID_CHARS = 200
TS_KEYS = ("timestamp", "ts", "time")
KNOWN = {"id", "text", "source", "entities", "topic", *TS_KEYS}


class Malformed(ValueError):
    """An input record that cannot become an :class:`Item`; the message is the reason."""


@dataclass
class Item:
    """One news item: ``id`` (unique: repeats are ignored), ``ts`` (epoch seconds), ``text``,
    optional ``source``, ``entities`` given by the producer and ``topic``."""

    id: str
    ts: float
    text: str
    source: str = ""
    entities: list[str] = field(default_factory=list)
    topic: str | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > MAX_ID_CHARS:
            raise Malformed(f"id must be a non-empty string of at most {MAX_ID_CHARS} characters")
        if not isinstance(self.text, str) or not self.text.strip():
            raise Malformed("text is empty")
        if len(self.text) > MAX_TEXT_CHARS:
            raise Malformed(f"text has {len(self.text)} characters; the limit is {MAX_TEXT_CHARS}")
        if not isinstance(self.ts, float):
            raise Malformed("ts must be epoch seconds (float)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data, *, default_ts: float | None = None, default_source: str = "") -> "Item":
        """Validate a decoded record; raises :class:`Malformed` with the reason."""
        if not isinstance(data, dict):
            raise Malformed(f"expected a JSON object, got {type(data).__name__}")
        unknown = set(data) - KNOWN
        if unknown:
            raise Malformed(f"unknown field(s) {sorted(unknown)}")
        if "id" not in data or data["id"] in (None, ""):
            raise Malformed("missing id")
        item_id = data["id"]
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
        raw_ts = next((data[k] for k in TS_KEYS if data.get(k) not in (None, "")), None)
        if raw_ts is None:
            if default_ts is None:
                raise Malformed("missing timestamp")
            ts = float(default_ts)
        else:
            try:
                ts = parse_timestamp(raw_ts)
            except ValueError as e:
                raise Malformed(str(e)) from None
        if "text" not in data:
            raise Malformed("missing text")
        try:
            entities = normalise_entities(data.get("entities") or None)
        except ValueError as e:
            raise Malformed(str(e)) from None
        source = data.get("source") or default_source
        topic = data.get("topic") or None
        if not isinstance(source, str) or (topic is not None and not isinstance(topic, str)):
            raise Malformed("source and topic must be strings")
        return cls(id=item_id, ts=ts, text=data["text"], source=source, entities=entities, topic=topic)


def parse_json_line(line: str, **defaults) -> Item:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise Malformed(f"not valid JSON: {e.msg} at column {e.colno}") from None
    return Item.from_dict(data, **defaults)


def parse_csv_row(header: list[str], row: list[str], **defaults) -> Item:
    if len(row) != len(header):
        raise Malformed(f"expected {len(header)} fields ({','.join(header)}), got {len(row)}")
    return Item.from_dict({k: v for k, v in zip(header, row) if v != "" or k in ("id", "text")}, **defaults)
