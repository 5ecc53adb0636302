"""Pick decision thresholds on held-out data so that accepted answers reach a target precision.

For a list of (score, correct) pairs, :func:`threshold_for_precision` returns the lowest
threshold whose accepted set (score >= threshold) has precision >= target -- the most
answers for the promised precision.  The thresholds are saved as JSON beside the bot.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError, UsageError
from tuneforge.storage import write_json

NEVER = math.inf
THRESHOLD_NAMES = ("intent", "retrieval", "clarify", "handoff")


@dataclass
class Calibration:
    """One calibrated threshold and how it did on the data it was chosen on."""

    threshold: float
    target: float
    precision: float      # of the accepted set on the calibration data
    coverage: float       # share of the calibration items accepted
    accepted: int
    n: int
    reached: bool         # False: no threshold reached the target; ``threshold`` is +inf

    def to_dict(self) -> dict:
        d = asdict(self)
        d["threshold"] = None if math.isinf(self.threshold) else self.threshold
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        d = dict(d)
        d["threshold"] = NEVER if d.get("threshold") is None else float(d["threshold"])
        return cls(**d)


def threshold_for_precision(scores, correct, target: float, *, min_accepted: int = 5,
                            weights=None) -> Calibration:
    """Lowest threshold t with precision(score >= t) >= ``target`` over at least ``min_accepted`` items.

    ``weights`` (one per item, default 1) make precision and coverage weighted: e.g. to give
    out-of-scope questions the share of traffic they are expected to have.
    """
    if not 0 < target <= 1:
        raise ConfigError(f"target precision must be in (0, 1], got {target}")
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    if s.shape != c.shape or s.ndim != 1:
        raise UsageError("scores and correct flags must be two lists of the same length")
    n = len(s)
    if n == 0:
        raise UsageError("no calibration data")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != s.shape or (w < 0).any():
        raise UsageError("weights must be one non-negative number per score")
    order = np.argsort(-s, kind="stable")
    s_sorted, c_sorted, w_sorted = s[order], c[order], w[order]
    hits = np.cumsum(c_sorted * w_sorted)
    mass = np.cumsum(w_sorted)
    counts = np.arange(1, n + 1)
    # only cut between different scores: all items with equal scores are accepted together
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    precision = hits / np.maximum(mass, 1e-12)
    ok = last_of_run & (counts >= min_accepted) & (precision >= target - 1e-12)
    if not ok.any():
        return Calibration(NEVER, target, 0.0, 0.0, 0, n, False)
    k = int(np.nonzero(ok)[0].max())
    return Calibration(float(s_sorted[k]), target, float(precision[k]), float(mass[k] / mass[-1]),
                       int(counts[k]), n, True)


@dataclass
class Thresholds:
    """The bot's decision thresholds (saved as ``thresholds.json``).

    ``intent``: top intent probability for a template answer.  ``clarify``: the top two
    probabilities together, for "did you mean A or B?".  ``retrieval``: cosine similarity
    of the best passage for a knowledge-base answer.  ``clarify_ratio``: the second intent
    must have at least this share of the first one's probability to count as "close".
    ``handoff``: a question nothing answers is handed to a human only when its best passage's
    similarity is at most this (out-of-scope questions resemble no page); above it, the bot asks
    which of its two best intents was meant.  ``null`` (+inf): always hand off.
    """

    intent: float
    retrieval: float
    clarify: float = NEVER
    handoff: float = NEVER
    clarify_ratio: float = 0.3
    target_precision: float = 0.9
    details: dict = field(default_factory=dict)
    calibrated_for: dict | None = None    # the intent bundle: {"model_id", "manifest_sha256"}

    def __post_init__(self):
        for name in THRESHOLD_NAMES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or (not math.isinf(value) and not -1 <= value <= 2):
                raise ConfigError(f"threshold {name} must be a number in [-1, 2] (or null), got {value!r}")
        if not 0 <= self.clarify_ratio <= 1:
            raise ConfigError(f"clarify_ratio must be in [0, 1], got {self.clarify_ratio}")

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in THRESHOLD_NAMES:
            if math.isinf(d[name]):
                d[name] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Thresholds":
        d = dict(d)
        for name in THRESHOLD_NAMES:
            if d.get(name) is None:
                d[name] = NEVER
        return cls(**d)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Thresholds":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise UsageError(f"cannot read thresholds {path}: {e}",
                             hint="run `tuneforge support-bot build` (or calibrate)") from None
