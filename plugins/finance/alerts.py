"""Rules -> alerts: edge-triggered, with cooldown and de-duplication, state kept for restarts.

Per (rule, key) the engine keeps ``{"active": bool, "last": ts}`` (plus the rule's own
state, e.g. the surge rule's EWMA baseline).  An alert fires when the condition starts to
hold, the previous alert for the pair is at least ``cooldown`` old (stream time), and it
is not already active; it re-arms once the condition has cleared.  With ``dedup_s`` > 0 a key
gets at most one alert per ``dedup_s`` whatever the rule (the first rule to fire wins; the
others are counted as suppressed), so one burst of news is one alert, not one per rule.  The alert id is derived
from (rule, key, stream time), so re-processing the same items after a crash gives the
same id and the store ignores it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from .durations import iso
from .rules import Rule
from .windows import Entry, WindowSet


@dataclass
class Alert:
    id: str
    ts: float
    rule: str
    kind: str
    key: str
    name: str
    severity: str
    value: float
    threshold: float
    message: str
    volume: int
    items: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time"] = iso(self.ts)
        d["value"], d["threshold"] = round(self.value, 4), round(self.threshold, 4)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Alert":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def alert_id(rule: str, key: str, ts: float) -> str:
    return hashlib.sha1(f"{rule}\x1f{key}\x1f{ts!r}".encode()).hexdigest()[:16]


class AlertEngine:
    """Checks every rule for the keys an item touched; keeps and exposes the per-pair state."""

    KEY = "__key__"   # rule-state name of the per-key de-duplication state

    def __init__(self, rules: list[Rule], states: dict[tuple[str, str], dict] | None = None,
                 names=lambda key: key, dedup_s: float = 0.0):
        self.rules = rules
        self.dedup_s = dedup_s
        self.states: dict[tuple[str, str], dict] = states or {}
        self.dirty: set[tuple[str, str]] = set()
        self.suppressed = 0
        self.suppressed_by: dict[tuple[str, str], int] = {}   # (rule, "cooldown" | "dedup") -> count
        self.names = names

    def on_entry(self, key: str, entry: Entry, windows: WindowSet) -> list[Alert]:
        out = []
        for rule in self.rules:
            if not rule.applies_to(key):
                continue
            pair = (rule.name, key)
            state = self.states.setdefault(pair, {"active": False, "last": None})
            rule.observe(key, entry, state, windows.watermark)
            finding = rule.check(key, windows, state)
            clock = windows.clock
            if finding is None:
                if state["active"]:
                    state["active"] = False
                    self.dirty.add(pair)
            elif not state["active"]:
                key_state = self.states.setdefault((self.KEY, key), {"last": None})
                if state["last"] is not None and clock - state["last"] < rule.cooldown:
                    self._suppress(rule.name, "cooldown")
                elif self.dedup_s and key_state["last"] is not None and clock - key_state["last"] < self.dedup_s:
                    self._suppress(rule.name, "dedup")
                else:
                    key_state["last"] = clock
                    self.dirty.add((self.KEY, key))
                    out.append(Alert(alert_id(rule.name, key, clock), clock, rule.name, rule.kind, key,
                                     self.names(key), finding.severity, finding.value, finding.threshold,
                                     finding.message, finding.volume, finding.item_ids))
                    state["last"] = clock
                state["active"] = True
            if rule.kind == "negative_surge" or finding is not None or pair in self.dirty:
                self.dirty.add(pair)
        return out

    def _suppress(self, rule: str, reason: str) -> None:
        self.suppressed += 1
        self.suppressed_by[(rule, reason)] = self.suppressed_by.get((rule, reason), 0) + 1

    def take_dirty(self) -> dict[tuple[str, str], dict]:
        out = {p: self.states[p] for p in self.dirty}
        self.dirty = set()
        return out
