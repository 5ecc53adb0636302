"""Alert rules (``[[rules]]`` in ``monitor.toml``), checked per key after every item.

==================  ==========================================================================
``negative_share``  share of negative items in ``window`` >= ``threshold``, at least ``min_volume``
                    (with ``volume_ratio``: and at least that many times the items the entity's
                    rate over the rest of ``baseline`` predicts for the window)
``negative_surge``  negative items in the current ``bucket`` vs an EWMA baseline of past buckets:
                    z-score >= ``z`` and count >= ``min_count`` (after ``warmup`` buckets)
``sentiment_drop``  mean sentiment (p(pos) - p(neg)) in ``window`` fell by >= ``drop`` below the
                    rest of the ``baseline`` window
``negative_run``    CUSUM of the entity's recent items (within ``window``, newest last): the
                    log-likelihood ratio of "``event_share`` of items negative" against
                    "``baseline_share``" over the best run ending now >= ``threshold``, with at
                    least ``min_count`` negative items in that run; ``evidence = "probability"``
                    weighs each item by its calibrated p(negative) instead of its label
==================  ==========================================================================

A rule is a condition; :class:`tuneforge.plugins.finance.alerts.AlertEngine` turns it
into alerts: one when the condition starts to hold (not again until it has cleared), and
never within ``cooldown`` of the previous alert for the same rule and key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tuneforge.errors import ConfigError

from .durations import format_duration, parse_duration
from .windows import NEG, Entry, WindowSet

SCOPES = ("entity", "topic", "all")
SEVERITIES = ("info", "warning", "critical")


def before_window(windows: WindowSet, key: str, window: float, baseline: float):
    """``key``'s ``window`` and what its longer ``baseline`` window holds *before* it: (window,
    items, negative items, sentiment sum)."""
    w, b = windows.get(key, window), windows.get(key, baseline)
    return (w, max(b.n - w.n, 0), max(b.counts[NEG] - w.counts[NEG], 0), b.sentiment_sum - w.sentiment_sum)


@dataclass
class Finding:
    """A rule's condition holds for a key: the measured ``value`` against ``threshold``."""

    value: float
    threshold: float
    severity: str
    message: str
    item_ids: list[str]
    volume: int


@dataclass
class Rule:
    name: str
    kind: str = ""
    scope: str = "entity"
    entities: list[str] = field(default_factory=list)   # only these keys (empty: all in scope)
    cooldown: float = 3600.0
    severity: str = "warning"
    critical_at: float | None = None                    # value at or above which severity is critical
    max_items: int = 20

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("every [[rules]] needs a name")
        if self.scope not in SCOPES:
            raise ConfigError(f"rule {self.name}: scope must be one of {', '.join(SCOPES)}")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"rule {self.name}: severity must be one of {', '.join(SEVERITIES)}")
        self.entities = [e.upper().lstrip("$") for e in self.entities]
        self.kind = {cls: k for k, cls in KINDS.items()}.get(type(self), self.kind)

    def applies_to(self, key: str) -> bool:
        if self.scope == "all":
            return key == "*"
        if self.scope == "topic":
            return key.startswith("topic:") and (not self.entities or key[6:].upper() in self.entities)
        return not key.startswith("topic:") and key != "*" and (not self.entities or key in self.entities)

    def windows(self) -> list[float]:
        return []

    def observe(self, key: str, entry: Entry, state: dict, watermark: float | None = None) -> None:
        """Called for each item of ``key`` before :meth:`check` (rules with their own state);
        ``watermark``: the stream clock minus the grace (no later item can be older)."""

    def check(self, key: str, windows: WindowSet, state: dict) -> Finding | None:
        raise NotImplementedError

    def _baseline_longer_than_window(self) -> None:
        """Rules with an optional ``baseline`` window, when it is on: longer than their ``window``."""
        if not self.baseline > self.window:
            raise ConfigError(f"rule {self.name}: baseline ({format_duration(self.baseline)}) must be longer than "
                              f"window ({format_duration(self.window)})")

    def _severity(self, value: float) -> str:
        return "critical" if self.critical_at is not None and value >= self.critical_at else self.severity

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NegativeShareRule(Rule):
    """``volume_ratio`` (default off) adds a volume condition: the window must also hold at least
    that many times the items the entity's own rate predicts, the rate measured over the rest of
    ``baseline`` (its items older than ``window``; 24 h by default).  A bad-news event brings news
    *on top of* the usual flow; a quiet hour in which five of six items happen to be negative does
    not.  A name with no history before the window passes the condition."""

    window: float = 3600.0
    threshold: float = 0.5
    min_volume: int = 5
    volume_ratio: float | None = None
    baseline: float = 86400.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.threshold <= 1 or self.min_volume < 1:
            raise ConfigError(f"rule {self.name}: threshold must be in (0, 1] and min_volume >= 1")
        if self.volume_ratio is not None:
            if not self.volume_ratio > 0:
                raise ConfigError(f"rule {self.name}: volume_ratio must be > 0, got {self.volume_ratio!r}")
            self._baseline_longer_than_window()

    def windows(self):
        return [self.window] if self.volume_ratio is None else [self.window, self.baseline]

    def expected_volume(self, key: str, windows: WindowSet) -> float | None:
        """Items the window would hold at the entity's rate over the rest of ``baseline``
        (None: no ``volume_ratio``, or no item before the window)."""
        if self.volume_ratio is None:
            return None
        _, rest, _, _ = before_window(windows, key, self.window, self.baseline)
        return rest / (self.baseline - self.window) * self.window if rest > 0 else None

    def check(self, key, windows, state):
        w = windows.get(key, self.window)
        if w.n < self.min_volume:
            return None
        share = w.share(NEG)
        if share < self.threshold:
            return None
        expected = self.expected_volume(key, windows)
        if expected is not None and w.n < self.volume_ratio * expected:
            return None
        usual = "" if expected is None else f"; {w.n / expected:.1f}x the usual volume"
        return Finding(share, self.threshold, self._severity(share),
                       f"{key}: {share:.0%} of {w.n} items negative in {format_duration(self.window)} "
                       f"(threshold {self.threshold:.0%}{usual})", w.item_ids(NEG, self.max_items), w.n)


@dataclass
class NegativeSurgeRule(Rule):
    bucket: float = 3600.0
    z: float = 3.0
    min_count: int = 5
    alpha: float = 0.3        # EWMA weight of the newest closed bucket
    warmup: int = 3           # closed buckets needed before the baseline is trusted
    min_std: float = 1.0      # floor for the baseline's standard deviation

    def __post_init__(self):
        super().__post_init__()
        if self.bucket <= 0 or not 0 < self.alpha <= 1 or self.min_count < 1 or self.min_std <= 0:
            raise ConfigError(f"rule {self.name}: bucket > 0, 0 < alpha <= 1, min_count >= 1, min_std > 0")

    def observe(self, key, entry, state, watermark=None):
        """Count the item in its own bucket; close (fold into the baseline) every bucket that
        ends at or before the ``watermark`` -- no item inside the grace can reach it any more.
        ``watermark`` None: the item's own bucket start (in-order streams, the pre-grace behaviour)."""
        self._migrate(state)
        b = int(entry.ts // self.bucket)
        if state["closed"] is not None and b <= state["closed"]:
            state["cur"] = None
            return  # later than the grace allowed: the baseline is not rewritten
        wm = entry.ts if watermark is None else watermark
        self._close(state, int(wm // self.bucket))
        slot = state["open"].setdefault(str(b), {"count": 0, "ids": []})
        if entry.label == NEG:
            slot["count"] += 1
            slot["ids"] = (slot["ids"] + [entry.item_id])[-self.max_items:]
        state["cur"] = b

    @staticmethod
    def _migrate(state: dict) -> None:
        """State written before event-time buckets (one ``bucket``/``count``) -> open buckets."""
        if "open" in state:
            return
        if "bucket" in state:
            state["open"] = {str(state.pop("bucket")): {"count": state.pop("count", 0), "ids": state.pop("ids", [])}}
            state["closed"] = int(next(iter(state["open"]))) - 1 if state.get("n") else None
        else:
            state.update(open={}, closed=None, mean=0.0, var=0.0, n=0)
        state.setdefault("mean", 0.0), state.setdefault("var", 0.0), state.setdefault("n", 0)

    def _fold(self, state: dict, c: int) -> None:
        if state["n"] == 0:
            state["mean"], state["var"] = float(c), 0.0
        else:
            diff = c - state["mean"]
            incr = self.alpha * diff
            state["mean"] += incr
            state["var"] = (1 - self.alpha) * (state["var"] + diff * incr)
        state["n"] += 1

    def _close(self, state: dict, limit: int) -> None:
        """Fold buckets ``< limit`` in order, the empty ones in between too (a gap decays the
        baseline; at most 200 empty buckets per gap)."""
        ready = sorted(int(k) for k in state["open"] if int(k) < limit)
        if not ready:
            if state["closed"] is not None and state["closed"] < limit - 1 and state["n"]:
                for _ in range(min(limit - 1 - state["closed"], 200)):
                    self._fold(state, 0)
                state["closed"] = limit - 1
            return
        prev = ready[0] - 1 if state["closed"] is None else state["closed"]
        for k in ready:
            for _ in range(min(k - prev - 1, 200)):
                self._fold(state, 0)
            self._fold(state, state["open"].pop(str(k))["count"])
            prev = k
        state["closed"] = prev

    def check(self, key, windows, state):
        """The most anomalous open bucket (stable when items of two buckets interleave)."""
        if state.get("n", 0) < self.warmup or not state.get("open"):
            return None
        std = max(math.sqrt(max(state["var"], 0.0)), self.min_std)
        best = None
        for slot in state["open"].values():
            if slot["count"] >= self.min_count:
                z = (slot["count"] - state["mean"]) / std
                if best is None or z > best[0]:
                    best = (z, slot)
        if best is None or best[0] < self.z:
            return None
        z, slot = best
        return Finding(z, self.z, self._severity(z),
                       f"{key}: {slot['count']} negative items this {format_duration(self.bucket)} vs a baseline "
                       f"of {state['mean']:.1f} (z = {z:.1f})", list(slot["ids"]), slot["count"])


@dataclass
class SentimentDropRule(Rule):
    window: float = 3600.0
    baseline: float = 86400.0
    drop: float = 0.4
    min_volume: int = 5
    min_baseline: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.baseline <= self.window:
            raise ConfigError(f"rule {self.name}: baseline must be longer than window")
        if not 0 < self.drop <= 2 or self.min_volume < 1 or self.min_baseline < 1:
            raise ConfigError(f"rule {self.name}: drop in (0, 2], min_volume and min_baseline >= 1")

    def windows(self):
        return [self.window, self.baseline]

    def check(self, key, windows, state):
        w, rest, _, sentiment = before_window(windows, key, self.window, self.baseline)
        if w.n < self.min_volume or rest < self.min_baseline:
            return None
        before = sentiment / rest
        fall = before - w.mean
        if fall < self.drop:
            return None
        return Finding(fall, self.drop, self._severity(fall),
                       f"{key}: mean sentiment {w.mean:+.2f} over {format_duration(self.window)} "
                       f"vs {before:+.2f} before (drop {fall:.2f})", w.item_ids(NEG, self.max_items), w.n)


@dataclass
class NegativeRunRule(Rule):
    """Page's CUSUM over items instead of clock buckets: the statistic is the largest sum, over the
    runs of items that end at the newest one, of each item's log-likelihood ratio of "``event_share``
    of the items are negative" against "``baseline_share``".  A burst spread over two hours adds up
    as well as one in ten minutes, and a busy day of neutral news pulls the sum down.  Computed from
    the window's items in timestamp order at every check (the newest :attr:`MAX_SCAN` of them), so
    out-of-order arrival inside the grace gives the same value.

    ``evidence`` says what an item contributes:

    * ``"label"``: its label -- a negative item adds ``log(event_share / baseline_share)``, any
      other ``log((1 - event_share) / (1 - baseline_share))`` (< 0); ``min_count`` counts negative
      labels.
    * ``"probability"``: the model's calibrated p(negative), so a headline the model finds only
      somewhat negative still counts for something.  The posterior is turned into the likelihood
      ratio ``L = odds(p) / odds(model_prior)`` (``model_prior``: the share of negatives in the
      model's training data: 0.17 for Twitter + posts, 0.18 with the authored headlines) and the item adds
      ``log((e L + 1 - e) / (b L + 1 - b))`` with ``e`` = ``event_share``, ``b`` =
      ``baseline_share`` -- the exact likelihood ratio of the two mixtures, which is the label
      rule's two steps when p is 0 or 1.
      ``min_count`` compares with the expected number of negatives, the sum of p.  Items without a
      probability (written by a version before it) count by their label.

    ``baseline`` (a duration longer than ``window``, default off): the entity's own share of negative
    items over that window, older than the CUSUM's ``window``, takes the place of ``baseline_share``
    -- smoothed towards it with ``baseline_weight`` pseudo-items, and kept within
    [:attr:`MIN_BASELINE`, ``event_share`` / 2] so a negative item always counts as evidence.  A
    name that is usually quiet then alerts on fewer bad headlines, and one that always draws some
    needs more.  Counted by label from the monitor's windows, so it is event-time and order-free too.
    """

    window: float = 10800.0
    baseline_share: float = 0.15
    event_share: float = 0.6
    threshold: float = 5.0
    min_count: float = 4
    evidence: str = "label"
    model_prior: float = 0.17
    baseline: float | None = None
    baseline_weight: float = 20.0
    MIN_BASELINE = 0.01
    MAX_SCAN = 256   # runs considered: at most the newest 256 items of the window (a busy name stays O(1))
    EVIDENCE = ("label", "probability")

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.baseline_share < self.event_share < 1:
            raise ConfigError(f"rule {self.name}: need 0 < baseline_share < event_share < 1, got "
                              f"{self.baseline_share} and {self.event_share}")
        if self.threshold <= 0 or not self.min_count > 0:
            raise ConfigError(f"rule {self.name}: threshold and min_count must be > 0")
        if self.evidence not in self.EVIDENCE:
            raise ConfigError(f"rule {self.name}: evidence must be one of {', '.join(self.EVIDENCE)}, "
                              f"got {self.evidence!r}")
        if not 0 < self.model_prior < 1:
            raise ConfigError(f"rule {self.name}: model_prior must be in (0, 1), got {self.model_prior!r}")
        if self.baseline is not None:
            self._baseline_longer_than_window()
        if not self.baseline_weight > 0:
            raise ConfigError(f"rule {self.name}: baseline_weight must be > 0, got {self.baseline_weight!r}")

    def windows(self):
        return [self.window] if self.baseline is None else [self.window, self.baseline]

    def baseline_for(self, key: str, windows: WindowSet) -> float:
        """The share of negative items ``key`` usually has: ``baseline_share``, or with ``baseline``
        set, the share in that window before the CUSUM's ``window``, smoothed towards ``baseline_share``."""
        if self.baseline is None:
            return self.baseline_share
        _, rest, negatives, _ = before_window(windows, key, self.window, self.baseline)
        share = (negatives + self.baseline_weight * self.baseline_share) / (rest + self.baseline_weight)
        return min(max(share, self.MIN_BASELINE), self.event_share / 2)

    def _evidence(self, entries: list[Entry], baseline: float | None = None) -> list[tuple[float, float]]:
        """Each item's (log-likelihood ratio, share of being negative): from its label (0 / 1), or
        from its calibrated p(negative) when ``evidence`` is "probability" and the item has one;
        ``baseline``: the share of negatives to test against (default ``baseline_share``)."""
        e, b = self.event_share, self.baseline_share if baseline is None else baseline
        neg, other = (math.log(e / b), 1.0), (math.log((1 - e) / (1 - b)), 0.0)
        if self.evidence == "label":
            return [neg if x.label == NEG else other for x in entries]
        prior_odds = (1 - self.model_prior) / self.model_prior
        out = []
        for x in entries:
            if x.p_negative is None:
                out.append(neg if x.label == NEG else other)
                continue
            p = min(max(x.p_negative, 1e-6), 1 - 1e-6)
            ratio = p / (1 - p) * prior_odds
            out.append((math.log((e * ratio + 1 - e) / (b * ratio + 1 - b)), p))
        return out

    def check(self, key, windows, state):
        entries = windows.get(key, self.window).entries(self.MAX_SCAN)
        baseline = self.baseline_for(key, windows)
        evidence = self._evidence(entries, baseline)
        total, negatives, best = 0.0, 0.0, (0.0, 0.0, len(entries))
        for i in range(len(entries) - 1, -1, -1):
            llr, weight = evidence[i]
            total += llr
            negatives += weight
            if total > best[0]:
                best = (total, negatives, i)
        value, count, start = best
        if value < self.threshold or count < self.min_count:
            return None
        run = entries[start:]
        ids = [e.item_id for e, (_, w) in zip(run, evidence[start:]) if w >= 0.5 or e.label == NEG][-self.max_items:]
        about = f"{count:.0f}" if self.evidence == "label" else f"about {count:.1f}"
        return Finding(value, self.threshold, self._severity(value),
                       f"{key}: {about} of the last {len(run)} items negative over "
                       f"{max(round((run[-1].ts - run[0].ts) / 60), 1)} min (CUSUM {value:.1f}"
                       + (f", usual share {baseline:.0%})" if self.baseline is not None else ")"), ids, len(run))


KINDS = {"negative_share": NegativeShareRule, "negative_surge": NegativeSurgeRule,
         "sentiment_drop": SentimentDropRule, "negative_run": NegativeRunRule}
DURATIONS = ("cooldown", "window", "bucket", "baseline")


def rule_from_dict(data: dict, index: int = 0) -> Rule:
    if not isinstance(data, dict):
        raise ConfigError(f"rule #{index + 1} must be a table")
    data = dict(data)
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"rule #{index + 1} ({data.get('name', '?')}): kind must be one of {', '.join(KINDS)}, "
                          f"got {kind!r}")
    cls = KINDS[kind]
    allowed = set(cls.__dataclass_fields__)
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"rule {data.get('name', index + 1)}: unknown key(s) {sorted(unknown)}",
                          hint="allowed: " + ", ".join(sorted(allowed)))
    data.setdefault("name", f"{kind}-{index + 1}")
    for k in DURATIONS:
        if k in data:
            try:
                data[k] = parse_duration(data[k], f"rule {data['name']} {k}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"rule {data['name']}: {e}") from None
