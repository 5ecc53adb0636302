"""Ranking metrics: HR@K, NDCG@K and MRR from the 0-based rank of each held-out item.

The rank of the target is the number of candidates scored strictly higher plus half
of those tied with it (rounded down): the expected rank under a random tie-break.
"""

from __future__ import annotations

import numpy as np


def rank_of(scores: np.ndarray, target: int, exclude: np.ndarray | None = None) -> int:
    """0-based rank of ``scores[target]`` among all entries not in ``exclude``."""
    s = np.asarray(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        s = s.copy()
        keep = np.asarray(exclude)
        keep = keep[keep != target]
        s[keep] = -np.inf
    t = s[target]
    higher = int(np.count_nonzero(s > t))
    ties = int(np.count_nonzero(s == t)) - 1
    return higher + ties // 2


def ranking_metrics(ranks, k: int = 10) -> dict[str, float]:
    """``{"hr@k", "ndcg@k", "mrr", "users"}`` from 0-based ranks (one per user)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        return {f"hr@{k}": 0.0, f"ndcg@{k}": 0.0, "mrr": 0.0, "users": 0}
    hit = r < k
    return {f"hr@{k}": float(hit.mean()),
            f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean()),
            "mrr": float((1.0 / (r + 1.0)).mean()),
            "users": int(r.size)}


def sampled_negatives(n_items: int, exclude: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct items not in ``exclude`` (the sampled protocol's negatives)."""
    banned = np.zeros(n_items, dtype=bool)
    banned[np.asarray(exclude, dtype=np.int64)] = True
    pool = np.flatnonzero(~banned)
    return rng.choice(pool, size=min(n, len(pool)), replace=False)
