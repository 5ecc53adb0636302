"""The learned blend: a linear ranker fitted on validation data (multinomial logistic regression).

For each validation user the held-out item competes with the whole catalogue (seen items
excluded); the weights maximise its softmax probability over standardised features
(listwise: sampled hard negatives would bias the weights against the very features that
picked them).  Score = ``w . z(x)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError

from .features import FEATURES


@dataclass
class Blend:
    features: list[str]
    weights: list[float]
    mean: list[float]
    std: list[float]

    def __post_init__(self):
        if not (len(self.features) == len(self.weights) == len(self.mean) == len(self.std)):
            raise ConfigError("blend: features, weights, mean and std must have the same length")
        if any(s <= 0 for s in self.std):
            raise ConfigError("blend: std must be > 0")

    def score(self, x: np.ndarray) -> np.ndarray:
        w = np.asarray(self.weights, dtype=np.float32) / np.asarray(self.std, dtype=np.float32)
        return (x - np.asarray(self.mean, dtype=np.float32)) @ w

    def contributions(self, x: np.ndarray) -> dict[str, float]:
        z = (x - np.asarray(self.mean)) / np.asarray(self.std)
        return {f: round(float(w * v), 4) for f, w, v in zip(self.features, self.weights, z)}

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> Blend:
        return cls(**json.loads(Path(path).read_text()))


def fit_blend(x: np.ndarray, targets: np.ndarray, seen: list[np.ndarray], *, reg: float = 1e-3,
              steps: int = 150, lr: float = 1.0, features=FEATURES) -> Blend:
    """Listwise fit: ``x`` is ``[U, I, F]`` (every item for each validation user), ``targets[u]`` the
    held-out item, ``seen[u]`` items excluded from the ranking.  Minimises the full-catalogue
    softmax cross-entropy ``-log p(target)`` with ``p = softmax(w . z(x))`` (plain gradient descent
    with step halving: convex)."""
    flat = x.reshape(-1, x.shape[-1])
    mean, std = flat.mean(0).astype(np.float64), flat.std(0).astype(np.float64)
    std[std < 1e-9] = 1.0
    z = ((x - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)
    mask = np.zeros(x.shape[:2], dtype=bool)
    for u, s in enumerate(seen):
        mask[u, np.asarray(s, dtype=np.int64)] = True
    mask[np.arange(len(targets)), targets] = False
    zpos = z[np.arange(len(targets)), targets].astype(np.float64)

    def loss_grad(w):
        s = z @ w.astype(np.float32)
        s[mask] = -np.inf
        top = s.max(1, keepdims=True)
        e = np.exp(s - top)
        tot = e.sum(1, keepdims=True)
        p = (e / tot).astype(np.float32)
        loss = float((np.log(tot[:, 0]) + top[:, 0] - zpos @ w).mean()) + 0.5 * reg * float(w @ w)
        expect = np.einsum("ui,uif->uf", p, z).astype(np.float64)
        return loss, (expect - zpos).mean(0) + reg * w

    w = np.zeros(z.shape[-1])
    loss, g = loss_grad(w)
    for _ in range(steps):
        cand = w - lr * g
        c_loss, c_g = loss_grad(cand)
        if c_loss <= loss:
            w, loss, g = cand, c_loss, c_g
            lr *= 1.2
        else:
            lr *= 0.5
            if lr < 1e-6:
                break
    return Blend(list(features), [float(v) for v in w], [float(v) for v in mean], [float(v) for v in std])
