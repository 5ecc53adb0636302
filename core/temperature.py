"""Temperature scaling: class probabilities that mean what they say.

``softmax(log p / T)`` equals ``softmax(logits / T)``: a temperature can be applied to logits or
to probabilities.  :func:`fit_temperature` picks T on a labelled validation set by negative
log-likelihood (grid search, 0.25 - 8).  The exporter fits it on the run's validation split for
tasks that ask for calibrated scores (``TaskSpec.calibrate_scores``, ``tuneforge export
--calibrate``) and writes it into the bundle's ``postprocess.json``, which the runtime applies;
``tuneforge finance calibrate`` fits it on another labelled file.  numpy only (runtime-safe).
"""

from __future__ import annotations

import numpy as np

GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities as if the logits had been divided by ``temperature`` (rows sum to 1)."""
    if temperature == 1.0 or len(probs) == 0:
        return probs
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top label (equal-width confidence bins)."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(total)


def calibration_report(probs: np.ndarray, y: np.ndarray) -> dict:
    """The fitted temperature and what it does on ``(probs, y)``: NLL and ECE before -> after."""
    t = fit_temperature(probs, y)
    cal = apply_temperature(probs, t)
    return {"temperature": t, "rows": int(len(y)),
            "nll": [round(nll(probs, y), 4), round(nll(cal, y), 4)],
            "ece": [round(ece(probs, y), 4), round(ece(cal, y), 4)]}


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature in :data:`GRID` with the lowest NLL on ``(probs, y)``."""
    losses = [nll(apply_temperature(probs, float(t)), y) for t in GRID]
    return float(round(GRID[int(np.argmin(losses))], 3))
