"""Scorers: texts -> ``[N, 3]`` probabilities in the order negative, neutral, positive.

:class:`BundleScorer` runs an exported finance-sentiment bundle through
:class:`tuneforge.runtime.Predictor` (onnxruntime + tokenizers + numpy, no torch).
:class:`KeywordScorer` is a word-list stand-in for dry runs and tests -- it is *not*
a sentiment model.  Any object with ``score(texts) -> np.ndarray`` can be passed to
:class:`tuneforge.plugins.finance.Monitor` (``scorer=``).
"""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np

from tuneforge.errors import ConfigError

ORDER = ("negative", "neutral", "positive")


def decide_labels(probs: np.ndarray, negative_at: float | None = None) -> np.ndarray:
    """Label index per row (``ORDER``): the most likely sentiment, or negative as soon as p(negative)
    reaches ``negative_at`` -- a monitor that exists to catch bad news may trade some negative
    precision for recall (``[model] negative_at``, tuned on the backtest's tune half)."""
    probs = np.asarray(probs)
    labels = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    if negative_at is not None and len(probs):
        labels = np.where(probs[:, 0] >= negative_at, 0, labels)
    return labels


class Scorer(Protocol):
    def score(self, texts: list[str]) -> np.ndarray: ...


class BundleScorer:
    """A finance-sentiment bundle; its labels must be negative / neutral / positive (any order)."""

    def __init__(self, predictor, batch_size: int = 32, temperature: float = 1.0):
        labels = [str(x).lower() for x in predictor.manifest.labels]
        if predictor.manifest.kind != "classification" or sorted(labels) != sorted(ORDER):
            raise ConfigError(f"bundle {predictor.root} has labels {labels}; the monitor needs a classification "
                              "model over negative / neutral / positive",
                              hint="export a finance-sentiment run (tuneforge train --task finance-sentiment)")
        self.predictor = predictor
        self.batch_size = batch_size
        self.temperature = float(temperature)
        self.columns = [labels.index(name) for name in ORDER]

    @classmethod
    def load(cls, bundle_dir, variant: str | None = None, threads: int | None = None,
             batch_size: int = 32, temperature: float = 1.0) -> "BundleScorer":
        from tuneforge.runtime import Predictor

        return cls(Predictor.load(bundle_dir, variant=variant, threads=threads), batch_size=batch_size,
                   temperature=temperature)

    def score(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 3), dtype=np.float32)
        probs = self.predictor.probabilities(texts, batch_size=self.batch_size)[:, self.columns]
        if self.temperature != 1.0:
            from tuneforge.temperature import apply_temperature

            probs = apply_temperature(probs, self.temperature)
        return probs

    def describe(self) -> str:
        p = self.predictor
        return f"{p.manifest.model_id} ({p.variant}, {p.provider}, {p.threads} threads)"


class TopicScorer:
    """An optional topic model (any single-label classification bundle): one label per text,
    ``None`` where its probability is below ``min_score``."""

    def __init__(self, predictor, min_score: float = 0.0, batch_size: int = 32):
        if predictor.manifest.kind != "classification":
            raise ConfigError(f"topic bundle {predictor.root} is a {predictor.manifest.kind} model; "
                              "it must be single-label classification")
        self.predictor, self.min_score, self.batch_size = predictor, min_score, batch_size
        self.labels = list(predictor.manifest.labels)

    def topics(self, texts: list[str]) -> list[str | None]:
        if not texts:
            return []
        probs = self.predictor.probabilities(texts, batch_size=self.batch_size)
        best = probs.argmax(axis=1)
        return [self.labels[j] if probs[i, j] >= self.min_score else None for i, j in enumerate(best)]


NEGATIVE_WORDS = """miss misses missed cut cuts downgrade downgrades downgraded fall falls fell plunge plunges plunged
slump slumps drop drops dropped loss losses lawsuit sued probe fraud recall recalls weak weaker warning warns
bankruptcy default layoffs layoff slash slashes tumble tumbles sink sinks crash crashes investigation fine fined
halt halted scandal breach outage lower lowers decline declines bearish sell-off selloff resign resigns""".split()
POSITIVE_WORDS = """beat beats raise raises raised upgrade upgrades upgraded rise rises rose jump jumps jumped
surge surges soar soars record gain gains growth strong stronger bullish rally rallies outperform buy profit
profits wins win approval approved expands expansion higher boost boosts""".split()
_WORD = re.compile(r"[a-z][a-z-]*")


class KeywordScorer:
    """Counts finance words (``miss``, ``downgrade``, ``lawsuit`` ... vs ``beat``, ``upgrade`` ...).

    For tests, demos and dry runs without a trained model; use a bundle for real monitoring.
    """

    def __init__(self, negative=NEGATIVE_WORDS, positive=POSITIVE_WORDS):
        self.negative, self.positive = set(negative), set(positive)

    def score(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 3), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            neg = sum(w in self.negative for w in words)
            pos = sum(w in self.positive for w in words)
            if neg > pos:
                out[i] = (0.8, 0.15, 0.05)
            elif pos > neg:
                out[i] = (0.05, 0.15, 0.8)
            else:
                out[i] = (0.1, 0.8, 0.1)
        return out

    def describe(self) -> str:
        return "keyword scorer (word lists; not a model)"


def scorer_from_config(model_cfg, path_of) -> Scorer:
    """The sentiment scorer ``[model]`` names; ``path_of`` resolves paths against the config folder."""
    if model_cfg.scorer == "keywords":
        return KeywordScorer()
    return BundleScorer.load(path_of(model_cfg.bundle), variant=model_cfg.variant,
                             threads=model_cfg.threads, batch_size=model_cfg.batch_size,
                             temperature=model_cfg.temperature)


def topic_scorer_from_config(model_cfg, path_of) -> TopicScorer | None:
    if not model_cfg.topic_bundle:
        return None
    from tuneforge.runtime import Predictor

    return TopicScorer(Predictor.load(path_of(model_cfg.topic_bundle), threads=model_cfg.threads),
                       min_score=model_cfg.topic_min_score, batch_size=model_cfg.batch_size)
