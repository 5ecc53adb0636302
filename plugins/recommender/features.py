"""Ranking features for every (user, item): the signals the learned blend combines.

==========  ==================================================================
``tt``      two-tower cosine similarity (user text vector . item vector)
``pop``     log(1 + positives of the item) in the visible interactions
``recent``  log(1 + positives of the item in the 12 months before the user's last event)
``genre``   cosine between the user's genre profile (history) and the item's genres
``knn``     log(1 + item-kNN co-occurrence score: the sum of cosine similarities to the history)
==========  ==================================================================
"""

from __future__ import annotations

import numpy as np

from .baselines import ItemKNN

FEATURES = ("tt", "pop", "recent", "genre", "knn")
MONTH = 30 * 24 * 3600
WINDOW_MONTHS = 12


class FeatureSpace:
    """Everything needed to compute :data:`FEATURES` for one set of visible interactions."""

    def __init__(self, item_vectors: np.ndarray, genre_matrix: np.ndarray, items: np.ndarray, times: np.ndarray,
                 knn: ItemKNN):
        n = len(item_vectors)
        self.item_vectors = item_vectors.astype(np.float32)
        g = genre_matrix.astype(np.float32)
        self.genres = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
        self.raw_genres = g
        self.pop = np.log1p(np.bincount(items, minlength=n)).astype(np.float32)
        self.month0 = int(times.min() // MONTH) if len(times) else 0
        months = (times // MONTH - self.month0).astype(np.int64)
        width = int(months.max()) + 1 if len(months) else 1
        counts = np.zeros((width, n), dtype=np.int32)
        np.add.at(counts, (months, items), 1)
        self.cum = np.vstack([np.zeros((1, n), dtype=np.int32), np.cumsum(counts, axis=0, dtype=np.int32)])
        self.knn = knn

    def recent(self, now: float) -> np.ndarray:
        m = int(np.clip(now // MONTH - self.month0 + 1, 0, len(self.cum) - 1))
        cache = self.__dict__.setdefault("_recent", {})   # one vector per month: served users share them
        if m not in cache:
            if len(cache) > 256:
                cache.clear()
            lo = max(m - WINDOW_MONTHS, 0)
            cache[m] = np.log1p(self.cum[m] - self.cum[lo]).astype(np.float32)
        return cache[m]

    def recent_window(self, now: float, months: int) -> np.ndarray:
        """log(1 + positives of each item in the ``months`` months up to ``now``'s month)."""
        m = int(np.clip(now // MONTH - self.month0 + 1, 0, len(self.cum) - 1))
        cache = self.__dict__.setdefault("_window", {})
        key = (m, months)
        if key not in cache:
            if len(cache) > 256:
                cache.clear()
            cache[key] = np.log1p(self.cum[m] - self.cum[max(m - months, 0)]).astype(np.float32)
        return cache[key]

    def age(self, now: float) -> np.ndarray:
        """Months from each item's first visible positive to ``now`` (NaN: never seen; negative: later)."""
        first = self.__dict__.get("_first")
        if first is None:  # derived from the cumulative counts: no extra array in the serving folder
            seen = self.cum[-1] > 0
            first = np.where(seen, np.argmax(self.cum > 0, axis=0) - 1, np.nan).astype(np.float32)
            self._first = first
        return (np.float32(now // MONTH - self.month0) - first).astype(np.float32)

    def genre_profile(self, history) -> np.ndarray:
        if len(history) == 0:
            return np.zeros(self.genres.shape[1], dtype=np.float32)
        p = self.raw_genres[np.asarray(history, dtype=np.int64)].sum(0)
        return p / max(float(np.linalg.norm(p)), 1e-9)

    def matrix(self, user_vector: np.ndarray | None, history, now: float, knn_scores: np.ndarray | None = None,
               items: np.ndarray | None = None) -> np.ndarray:
        """``[n_items, len(FEATURES)]`` (or only ``items``' rows)."""
        sel = slice(None) if items is None else np.asarray(items, dtype=np.int64)
        vecs = self.item_vectors[sel]
        tt = vecs @ user_vector if user_vector is not None else np.zeros(len(vecs), dtype=np.float32)
        if knn_scores is None:  # the sum of the history's rows of the similarity matrix
            knn_scores = np.asarray(self.knn.sim[np.asarray(history, dtype=np.int64)].sum(0)).ravel() \
                if len(history) else np.zeros(len(self.item_vectors), dtype=np.float32)
        return np.stack([tt, self.pop[sel], self.recent(now)[sel], self.genres[sel] @ self.genre_profile(history),
                         np.log1p(np.maximum(knn_scores[sel], 0))], axis=1).astype(np.float32)


def fit_space(item_vectors, genre_matrix, users, items, times, n_users: int, knn: ItemKNN | None = None,
              neighbours: int | None = 200) -> FeatureSpace:
    """``knn``: an item-kNN already fitted on these interactions (else one with ``neighbours``)."""
    knn = knn or ItemKNN(neighbours).fit(users, items, n_users, len(item_vectors))
    return FeatureSpace(item_vectors, genre_matrix, np.asarray(items), np.asarray(times), knn)
