"""Cold start, where collaborative filtering cannot work: new items and new users.

One time cut-off ``T`` (the ``1 - fraction`` quantile of all interaction times, default the
last 10 %).  Every model sees only the positives before ``T`` (the two-tower model is
trained on training events before ``T`` too, see ``twotower.training_pairs``).

* **Cold-start items**: items whose *first* interaction is at or after ``T`` (no model has
  seen them).  For every user with a positive on a new item, the first such item is the
  target, ranked among all new items (the user's other new positives left out); the
  history is what the user liked on known items before it (users with none are skipped).
* **Cold-start users**: users whose first interaction is at or after ``T`` with >= 3
  positives; the model sees their first ``m`` positives (``m`` = 1, 2) and ranks the next
  one against the whole catalogue (the history removed).

Metrics and ties as in ``metrics`` (a model that scores every candidate 0 gets the
expected rank of a random order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Interactions
from .metrics import ranking_metrics


def time_cutoff(interactions: Interactions, fraction: float = 0.1) -> float:
    if not 0 < fraction < 1:
        raise ValueError(f"cold-start fraction must be in (0, 1), got {fraction}")
    return float(np.quantile(interactions.time, 1.0 - fraction))


def _sequences(pos: Interactions, keep: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """user -> (items, times) of the kept positives, time order, first positive of an item only."""
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((idx, pos.time[idx], pos.user[idx]))]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    users = pos.user[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    for chunk in np.split(order, bounds) if len(order) else []:
        items, times = pos.item[chunk], pos.time[chunk]
        _, first = np.unique(items, return_index=True)
        first = np.sort(first)
        out[int(pos.user[chunk[0]])] = (items[first].astype(np.int64), times[first])
    return out


@dataclass
class ColdCase:
    """One evaluated user: what the model sees, the target, what is left out of the ranking."""

    user: int
    history: np.ndarray
    now: float
    target: int
    exclude: np.ndarray
    at: float = 0.0       # when the target was liked (what a live system knows is what came before it)


@dataclass
class ColdStartSplit:
    cutoff: float
    train_users: np.ndarray       # positives before the cut-off (what every model is fitted on)
    train_items: np.ndarray
    train_times: np.ndarray
    new_items: np.ndarray         # item indices first seen at or after the cut-off
    item_cases: list[ColdCase]
    user_cases: dict[int, list[ColdCase]]   # m -> cases
    after_counts: np.ndarray      # positives per item at or after the cut-off (the oracle popularity)
    after_users: np.ndarray = None   # the positives at or after the cut-off (for "popularity so far")
    after_items: np.ndarray = None
    after_times: np.ndarray = None

    def popularity_so_far(self, case: ColdCase, n_items: int) -> np.ndarray:
        """Other users' positives per item from the cut-off to just before ``case.at``: what a live
        system knows about the new items when this user likes one (no leak of the future)."""
        if self.after_items is None:
            return np.zeros(n_items, dtype=np.float32)
        keep = (self.after_times < case.at) & (self.after_users != case.user)
        return np.bincount(self.after_items[keep], minlength=n_items).astype(np.float32)


def validation_cold_split(interactions: Interactions, positives: Interactions, fraction: float = 0.1,
                          history_sizes=(1, 2)) -> ColdStartSplit:
    """The cold-start *validation* split: the same protocol one window earlier, on the interactions
    before the test cut-off only (cut-off = the last ``2 * fraction`` of all times; new items are the
    ones first seen between it and the test cut-off).  Text settings are chosen here, never on the
    test window; the tower is trained on events before this earlier cut-off."""
    test_cut = time_cutoff(interactions, fraction)
    cut = time_cutoff(interactions, min(2 * fraction, 0.9))
    keep = interactions.time < test_cut
    pkeep = positives.time < test_cut
    sub = Interactions(interactions.user[keep], interactions.item[keep], interactions.rating[keep],
                       interactions.time[keep], interactions.user_ids)
    psub = Interactions(positives.user[pkeep], positives.item[pkeep], positives.rating[pkeep], positives.time[pkeep],
                        positives.user_ids)
    return cold_start_split(sub, psub, fraction, history_sizes, cutoff=cut,
                            n_items=int(max(interactions.item.max(), positives.item.max())) + 1)


def cold_start_split(interactions: Interactions, positives: Interactions, fraction: float = 0.1,
                     history_sizes=(1, 2), cutoff: float | None = None, n_items: int | None = None) -> ColdStartSplit:
    """``cutoff``: a given time instead of the ``1 - fraction`` quantile."""
    cut = time_cutoff(interactions, fraction) if cutoff is None else float(cutoff)
    n_items = n_items or int(max(interactions.item.max(), positives.item.max())) + 1
    first_item = np.full(n_items, np.iinfo(np.int64).max)
    np.minimum.at(first_item, interactions.item, interactions.time)
    is_new = first_item >= cut
    new_items = np.flatnonzero(is_new & (first_item < np.iinfo(np.int64).max))
    first_user = np.full(len(interactions.user_ids), np.iinfo(np.int64).max)
    np.minimum.at(first_user, interactions.user, interactions.time)

    before = positives.time < cut
    seq_after = _sequences(positives, ~before)
    item_cases = []
    for u, (items, times) in sorted(_sequences(positives, np.ones(len(positives), dtype=bool)).items()):
        on_new = np.flatnonzero(is_new[items])
        if not len(on_new):
            continue
        first = on_new[0]
        warm = np.flatnonzero(~is_new[items[:first]])   # what the user liked before, all known items
        if not len(warm):
            continue
        item_cases.append(ColdCase(u, items[warm], float(times[warm[-1]]), int(items[first]),
                                   items[on_new[1:]].astype(np.int64), float(times[first])))
    user_cases: dict[int, list[ColdCase]] = {m: [] for m in history_sizes}
    for u, (items, times) in sorted(seq_after.items()):
        if first_user[u] < cut or len(items) < max(history_sizes) + 1:
            continue
        for m in history_sizes:
            user_cases[m].append(ColdCase(u, items[:m], float(times[m - 1]), int(items[m]),
                                          np.zeros(0, dtype=np.int64), float(times[m])))
    after = ~before
    return ColdStartSplit(cut, positives.user[before].astype(np.int64), positives.item[before].astype(np.int64),
                          positives.time[before].astype(np.int64), new_items, item_cases, user_cases,
                          np.bincount(positives.item[after], minlength=n_items).astype(np.float32),
                          positives.user[after].astype(np.int64), positives.item[after].astype(np.int64),
                          positives.time[after].astype(np.int64))


def _rank(s: np.ndarray, t: float) -> int:
    higher = int(np.count_nonzero(s > t))
    ties = int(np.count_nonzero(s == t)) - 1
    return higher + max(ties, 0) // 2


def item_ranks(cases: list[ColdCase], scores: np.ndarray, new_items: np.ndarray) -> np.ndarray:
    """``scores``: ``[len(cases), n_items]``; each target ranked among ``new_items`` minus its exclusions."""
    ranks = np.empty(len(cases))
    for r, c in enumerate(cases):
        cand = new_items[~np.isin(new_items, c.exclude)]
        ranks[r] = _rank(scores[r, cand].astype(np.float64), float(scores[r, c.target]))
    return ranks


def user_ranks(cases: list[ColdCase], scores: np.ndarray) -> np.ndarray:
    """Each target ranked against the whole catalogue minus the history."""
    ranks = np.empty(len(cases))
    for r, c in enumerate(cases):
        s = scores[r].astype(np.float64, copy=True)
        s[c.history] = -np.inf
        ranks[r] = _rank(s, float(s[c.target]))
    return ranks


def metrics(ranks: np.ndarray, k: int = 10) -> dict:
    return ranking_metrics(ranks, k)
