"""Raw model outputs -> :class:`Prediction` objects (numpy only).

``postprocess.json`` in the bundle drives this: the task kind, the labels, the
multilabel threshold, whether a pair score goes through a sigmoid.  Token tasks
are labelled per whitespace-separated word, by the word's first sub-token.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass

import numpy as np

_WORD = re.compile(r"\S+")


@dataclass
class Prediction:
    """One input's result; fields that do not apply to the task kind are ``None``.

    classification: ``label``, ``score`` (its probability), ``scores`` (all labels).
    multilabel: ``labels`` (over the threshold), ``label``/``score`` (the top one), ``scores``.
    pair: ``score`` (and ``label`` when the pair task has two labels).
    embedding: ``embedding`` (L2-normalised list of floats).
    token: ``tags`` - one ``{"word", "start", "end", "label", "score"}`` per word.
    """

    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    labels: list[str] | None = None
    embedding: list[float] | None = None
    tags: list[dict] | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))  # a new array: safe to divide in place
    e /= e.sum(axis=axis, keepdims=True)
    return e


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (float32; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def word_first_tokens(text: str, encoding) -> list[tuple[int, int, int | None]]:
    """``(start, end, token index)`` per whitespace word of ``text`` (first sequence).

    The token index is ``None`` for a word cut off by truncation.
    """
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    starts = [s for s, _ in spans]
    first: dict[int, int] = {}
    seq_ids = encoding.sequence_ids
    for t, ((s, e), special) in enumerate(zip(encoding.offsets, encoding.special_tokens_mask)):
        if special or seq_ids[t] != 0 or e <= s:
            continue
        w = bisect.bisect_right(starts, s) - 1
        if w >= 0 and s < spans[w][1] and w not in first:
            first[w] = t
    return [(s, e, first.get(w)) for w, (s, e) in enumerate(spans)]


def word_labels(logits: np.ndarray, text: str, encoding) -> list[int | None]:
    """Argmax label index per word (``None`` where the word was truncated away)."""
    return [None if t is None else int(np.argmax(logits[t]))
            for _, _, t in word_first_tokens(text, encoding)]


class Postprocessor:
    """Turns one batch of raw outputs into predictions, per ``postprocess.json``."""

    def __init__(self, config: dict):
        self.kind = config["kind"]
        self.labels = list(config.get("labels") or [])
        self.threshold = float(config.get("threshold", 0.5))
        self.activation = config.get("activation", "none")
        # classification: logits / temperature before the softmax (fitted at export, 1 = none)
        self.temperature = float(config.get("temperature", 1.0))

    def class_probabilities(self, raw) -> np.ndarray:
        """Softmax of ``raw`` logits (divided by the bundle's temperature, when it has one)."""
        logits = np.asarray(raw, dtype=np.float64)
        return softmax(logits / self.temperature if self.temperature != 1.0 else logits)

    def pair_scores(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(raw) if self.activation == "sigmoid" else raw

    def __call__(self, raw, texts: list[str], encodings: list) -> list[Prediction]:
        kind = self.kind
        if kind == "classification":
            probs = self.class_probabilities(raw)
            return [self._scored(p) for p in probs]
        if kind == "multilabel":
            probs = sigmoid(np.asarray(raw, dtype=np.float64))
            out = []
            for p in probs:
                pred = self._scored(p)
                pred.labels = [lab for lab, v in zip(self.labels, p) if v >= self.threshold]
                out.append(pred)
            return out
        if kind == "pair":
            scores = self.pair_scores(np.asarray(raw, dtype=np.float64).reshape(-1))
            binary = len(self.labels) == 2
            return [Prediction(score=float(s),
                               label=self.labels[int(s >= self.threshold)] if binary else None)
                    for s in scores]
        if kind == "embedding":
            return [Prediction(embedding=[float(v) for v in row]) for row in np.asarray(raw)]
        if kind == "token":
            return [Prediction(tags=self._tags(np.asarray(r, dtype=np.float64), t, e))
                    for r, t, e in zip(raw, texts, encodings)]
        raise ValueError(f"unknown task kind {kind!r}")

    def _scored(self, p: np.ndarray) -> Prediction:
        values = p.tolist()  # one C call: far cheaper than float() per label at batch 1
        k = int(p.argmax())
        return Prediction(label=self.labels[k], score=values[k], scores=dict(zip(self.labels, values)))

    def _tags(self, logits: np.ndarray, text: str, encoding) -> list[dict]:
        probs = softmax(logits) if len(logits) else logits
        tags = []
        for s, e, t in word_first_tokens(text, encoding):
            if t is None:
                continue  # truncated away
            k = int(np.argmax(probs[t]))
            tags.append({"word": text[s:e], "start": s, "end": e,
                         "label": self.labels[k], "score": float(probs[t, k])})
        return tags
