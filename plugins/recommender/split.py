"""Leave-last-out per user by timestamp: the last positive is test, the one before validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Interactions


@dataclass
class LeaveLastOut:
    """Per-user ordered positive histories and the held-out items.

    ``train[u]``: item indices in time order (oldest first); ``times[u]`` their timestamps;
    ``val[u]`` / ``test[u]``: the held-out item (or -1 for users with < ``min_positives``).
    """

    train: list[np.ndarray]
    times: list[np.ndarray]
    val: np.ndarray
    test: np.ndarray
    val_time: np.ndarray
    test_time: np.ndarray

    @property
    def eval_users(self) -> np.ndarray:
        return np.flatnonzero(self.test >= 0)

    def history(self, u: int, phase: str) -> np.ndarray:
        """Items the model may see for ``phase``: ``val`` -> train; ``test`` -> train + val."""
        if phase == "val" or self.val[u] < 0:
            return self.train[u]
        return np.append(self.train[u], self.val[u])

    def history_times(self, u: int, phase: str) -> np.ndarray:
        if phase == "val" or self.val[u] < 0:
            return self.times[u]
        return np.append(self.times[u], self.val_time[u])

    def earlier(self, j: int) -> LeaveLastOut:
        """A pseudo-validation split ``j`` steps earlier: each user's ``j``-th last training item is
        the held-out item (phase ``val``), the items before it are train (users with a history
        left only).  More labelled examples for the ranker, never touching val / test items."""
        if j < 1:
            raise ValueError("j must be >= 1")
        train, times = [], []
        held = np.full(len(self.train), -1, dtype=np.int64)
        held_t = np.zeros(len(self.train), dtype=np.int64)
        for u, (seq, ts) in enumerate(zip(self.train, self.times)):
            if len(seq) > j:
                held[u], held_t[u] = seq[-j], ts[-j]
            train.append(seq[:-j] if len(seq) >= j else seq[:0])
            times.append(ts[:-j] if len(ts) >= j else ts[:0])
        return LeaveLastOut(train, times, held, held.copy(), held_t, held_t.copy())

    def matrix_pairs(self, phase: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) of every interaction visible in ``phase``."""
        us, its = [], []
        for u in range(len(self.train)):
            h = self.history(u, phase)
            us.append(np.full(len(h), u, dtype=np.int32))
            its.append(h.astype(np.int32))
        return np.concatenate(us), np.concatenate(its)


def leave_last_out(positives: Interactions, min_positives: int = 3) -> LeaveLastOut:
    """Split ``positives`` (already thresholded); ties in time keep file order."""
    n_users = len(positives.user_ids)
    order = np.lexsort((np.arange(len(positives)), positives.time, positives.user))
    users, items, times = positives.user[order], positives.item[order], positives.time[order]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    train, tr_times = [], []
    val = np.full(n_users, -1, dtype=np.int64)
    test = np.full(n_users, -1, dtype=np.int64)
    val_t = np.zeros(n_users, dtype=np.int64)
    test_t = np.zeros(n_users, dtype=np.int64)
    for u in range(n_users):
        seq, ts = items[bounds[u]:bounds[u + 1]], times[bounds[u]:bounds[u + 1]]
        # the same item twice: keep its first positive only
        _, first = np.unique(seq, return_index=True)
        keep = np.sort(first)
        seq, ts = seq[keep], ts[keep]
        if len(seq) >= min_positives:
            val[u], test[u], val_t[u], test_t[u] = seq[-2], seq[-1], ts[-2], ts[-1]
            seq, ts = seq[:-2], ts[:-2]
        train.append(seq.astype(np.int64))
        tr_times.append(ts.astype(np.int64))
    return LeaveLastOut(train, tr_times, val, test, val_t, test_t)
