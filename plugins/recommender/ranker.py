"""The final ranker: candidates from EASE, the two-tower index and item-kNN, re-ranked by LightGBM.

Per user, the top ``per_source`` unseen items of each source (union) are scored with
:data:`RANKER_FEATURES` and ordered by a LightGBM ``lambdarank`` model.  The model is
fitted on the *validation* phase (every source fitted on the train interactions, the
label is the user's validation item) and applied with the sources refitted on train +
validation, exactly like the linear blend.  The number of boosting rounds is chosen by
a group k-fold over validation users (NDCG@10); every other setting is fixed a priori
in :class:`RankerConfig`.  Items outside the candidates follow in EASE order.

Features (``*_rank`` is the 0-based rank among the user's unseen items, as ``log1p``):

==============  ==================================================================
``ease``        EASE score; ``ease_rank``
``tt``          two-tower cosine; ``tt_rank``
``knn``         log(1 + item-kNN score); ``knn_rank``
``pop``         log(1 + positives of the item)
``recent``      log(1 + positives in the 12 months before the user's last event)
``genre``       cosine of the user's genre profile and the item's genres
``in_*``        candidate source flags (EASE, two-tower, item-kNN top ``per_source``)
``history``     log(1 + the user's number of positives)
``ease_last``   EASE score from the user's last 5 items only (what they like *now*)
``tt_last``     item-vector cosine with the user's most recent item
``year``        the item's year (from a ``(1995)`` title suffix; missing = NaN)
``year_gap``    ``year`` minus the mean year of the user's last 5 items
``pop_gap``     ``pop`` minus the mean ``pop`` of the user's history
==============  ==================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tuneforge.errors import ConfigError

from .baselines import EASE
from .features import FeatureSpace

RANKER_FEATURES = ("ease", "ease_rank", "tt", "tt_rank", "knn", "knn_rank", "pop", "recent", "genre",
                   "in_ease", "in_tt", "in_knn", "history", "ease_last", "tt_last", "year", "year_gap", "pop_gap")
LAST = 5   # the "last" features look at the user's most recent items only


@dataclass
class RankerConfig:
    per_source: int = 200       # candidates from each source
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    max_rounds: int = 300
    folds: int = 5              # group k-fold over validation users chooses the rounds
    train_negatives: int = 100  # candidates kept per training user besides the positive (random; 0 = all)
    threads: int = 1            # LightGBM threads: 1 is fastest on a small shared CPU
    extra_phases: int = 1       # pseudo-validation phases 1..n steps earlier (more labelled users)
    seed: int = 42

    def __post_init__(self):
        if self.per_source < 1 or self.max_rounds < 1 or self.folds < 2 or self.num_leaves < 2 or \
                self.extra_phases < 0:
            raise ConfigError(f"invalid ranker settings: {self}")

    def params(self) -> dict:
        return {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
                "feature_fraction": self.feature_fraction, "feature_fraction_seed": self.seed,
                "bagging_seed": self.seed, "seed": self.seed, "deterministic": True, "num_threads": self.threads,
                "verbose": -1, "lambdarank_truncation_level": 20}


class _Ranking:
    """One source's scores for a user: the rank of any item among the unseen ones (how many unseen
    items score strictly higher; ties share a rank, from one sort) and the top-``k`` flags."""

    def __init__(self, scores: np.ndarray, seen: np.ndarray, k: int):
        self.s = scores.astype(np.float32, copy=True)
        self.s[seen] = -np.inf
        self.asc = np.sort(self.s)
        n = len(self.s)
        self.top = np.zeros(n, dtype=bool)       # exactly the k best unseen (ties at the edge: introselect's pick)
        if k > 0:
            self.top[np.argpartition(-self.s, k - 1)[:k]] = True
        self.top[seen] = False

    def ranks(self, items) -> np.ndarray:
        return len(self.s) - np.searchsorted(self.asc, self.s[items], side="right")


def title_years(titles) -> np.ndarray:
    """The ``(1995)`` year at the end of each title, NaN where there is none."""
    import re

    pat = re.compile(r"\((\d{4})\)\s*$")
    return np.array([float(m.group(1)) if (m := pat.search(t)) else np.nan for t in titles], dtype=np.float32)


class Sources:
    """The candidate sources and features fitted on one set of visible interactions."""

    def __init__(self, ease_b: np.ndarray, space: FeatureSpace, per_source: int, years: np.ndarray | None = None):
        self.B, self.space, self.per_source = np.asarray(ease_b, dtype=np.float32), space, per_source
        self.years = years if years is not None else np.full(ease_b.shape[0], np.nan, dtype=np.float32)

    def ease_scores(self, history) -> np.ndarray:
        h = np.asarray(history, dtype=np.int64)
        if len(h) == 0:
            return np.zeros(self.B.shape[0], dtype=np.float32)
        return self.B[h].sum(0)

    def _parts(self, user_vector, history, now, knn_scores=None):
        h = np.asarray(history, dtype=np.int64)
        base = self.space.matrix(user_vector, h, now, knn_scores=knn_scores)   # tt, pop, recent, genre, knn
        ease = self.ease_scores(h)
        k = min(self.per_source, len(ease) - len(h))
        ranks = [_Ranking(s, h, k) for s in (ease, base[:, 0], base[:, 4])]
        flags = [r.top for r in ranks]
        if user_vector is None:
            flags[1][:] = False                                                # no text vector: no tt source
        return h, base, ease, ranks, flags

    def _x(self, items, parts) -> np.ndarray:
        h, base, ease, ranks, flags = parts
        n = len(items)
        last = h[-LAST:]
        if len(h):
            ease_last = self.B[last].sum(0)[items]
            tt_last = self.space.item_vectors[items] @ self.space.item_vectors[h[-1]]
            hy = self.years[last]
            year_gap = self.years[items] - (np.nanmean(hy) if np.isfinite(hy).any() else np.nan)
            pop_gap = base[items, 1] - float(self.space.pop[h].mean())
        else:
            ease_last, tt_last = np.zeros(n, np.float32), np.zeros(n, np.float32)
            year_gap, pop_gap = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
        return np.column_stack([ease[items], np.log1p(ranks[0].ranks(items)), base[items, 0],
                                np.log1p(ranks[1].ranks(items)), base[items, 4], np.log1p(ranks[2].ranks(items)),
                                base[items, 1], base[items, 2],
                                base[items, 3], flags[0][items], flags[1][items], flags[2][items],
                                np.full(n, np.log1p(len(h))), ease_last, tt_last, self.years[items], year_gap,
                                pop_gap]).astype(np.float32)

    def candidates(self, user_vector, history, now, knn_scores=None) -> tuple[np.ndarray, np.ndarray]:
        """(candidate items, ``[len(candidates), len(RANKER_FEATURES)]``) for one user."""
        parts = self._parts(user_vector, history, now, knn_scores)
        h, flags = parts[0], parts[4]
        cand = np.flatnonzero(flags[0] | flags[1] | flags[2])
        cand = cand[~np.isin(cand, h)]
        return cand, self._x(cand, parts)

    def features(self, user_vector, history, now, items) -> np.ndarray:
        """The features of given ``items`` (candidates or not) for one user."""
        return self._x(np.asarray(items, dtype=np.int64), self._parts(user_vector, history, now))


def as_float16(b: np.ndarray) -> np.ndarray:
    """The ranker's EASE matrix is stored in float16 (half the disk; the ranker is fitted on these
    rounded values) and summed in float32 (:class:`Sources` converts it once)."""
    return b.astype(np.float16)


def fit_sources(ease: EASE, space: FeatureSpace, per_source: int, years: np.ndarray | None = None) -> Sources:
    return Sources(as_float16(ease.B), space, per_source, years)


def group_table(sources: Sources, user_vectors, histories, nows, targets=None, knn=None):
    """Candidates + features for many users: (list of candidate arrays, stacked X, labels or None)."""
    cands, xs, ys = [], [], []
    for r, h in enumerate(histories):
        uv = None if user_vectors is None else user_vectors[r]
        c, x = sources.candidates(uv, h, nows[r], knn_scores=None if knn is None else knn[r])
        cands.append(c)
        xs.append(x)
        if targets is not None:
            ys.append((c == targets[r]).astype(np.float32))
    x = np.concatenate(xs) if xs else np.zeros((0, len(RANKER_FEATURES)), np.float32)
    return cands, x, (np.concatenate(ys) if targets is not None else None)


def fit_ranker(cands, x, y, config: RankerConfig, users=None, eval_mask=None):
    """LightGBM lambdarank on the groups whose label is among the candidates (each keeps the positive
    and ``train_negatives`` random other candidates); the rounds are chosen by a group k-fold over
    ``users`` (one id per group: a user's groups from several phases share a fold): the checkpoint
    (every ``max_rounds / 30`` trees) with the best held-out NDCG@10 over the groups in ``eval_mask``
    (default all), each ranking all its candidates.  Returns (booster, {"rounds", "cv_ndcg@10", ...})."""
    lgb = _lightgbm()
    sizes = np.array([len(c) for c in cands])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = [g for g in range(len(cands)) if y[starts[g]:starts[g + 1]].sum() > 0]
    if len(groups) < config.folds:
        raise ConfigError(f"only {len(groups)} validation users have their item among the candidates: "
                          "too few to fit the ranker", hint="raise per_source or add interactions")
    rng = np.random.default_rng(config.seed)
    rows = {}
    for g in groups:
        idx = np.arange(starts[g], starts[g + 1])
        if config.train_negatives and len(idx) > config.train_negatives + 1:
            pos = idx[y[idx] > 0]
            neg = rng.choice(idx[y[idx] == 0], config.train_negatives, replace=False)
            idx = np.sort(np.concatenate([pos, neg]))
        rows[g] = idx
    users = np.arange(len(cands)) if users is None else np.asarray(users)
    uniq, inv = np.unique(users, return_inverse=True)
    fold_of = (rng.permutation(len(uniq)) % config.folds)[inv]   # every group, positive found or not

    def subset(gs):
        idx = np.concatenate([rows[g] for g in gs])
        return lgb.Dataset(x[idx], y[idx], group=[len(rows[g]) for g in gs], feature_name=list(RANKER_FEATURES),
                           free_raw_data=False)

    params = config.params()
    step = max(1, config.max_rounds // 30)
    checkpoints = list(range(step, config.max_rounds + 1, step))
    mask = np.ones(len(cands), dtype=bool) if eval_mask is None else np.asarray(eval_mask, dtype=bool)
    # held-out users' full candidate lists: a miss if their item is not a candidate (rank inf)
    ranks = np.full((len(checkpoints), len(cands)), np.inf)
    for f in range(config.folds):
        booster = lgb.train(params, subset([g for g in groups if fold_of[g] != f]), num_boost_round=config.max_rounds)
        held = [g for g in groups if fold_of[g] == f and mask[g]]
        if not held:
            continue
        idx = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in held])
        pred = np.zeros(len(idx))
        for c, (lo, hi) in enumerate(zip([0] + checkpoints[:-1], checkpoints)):   # trees lo..hi added
            pred += booster.predict(x[idx], start_iteration=lo, num_iteration=hi - lo, num_threads=config.threads,
                                    raw_score=True)
            pos = 0
            for g in held:
                p = pred[pos:pos + sizes[g]]
                lab = y[starts[g]:starts[g + 1]]
                pos += sizes[g]
                t = float(p[lab > 0][0])
                ranks[c, g] = np.count_nonzero(p > t) + (np.count_nonzero(p == t) - 1) // 2
    r = ranks[:, mask]
    hit = r < 10
    ndcg = np.where(hit, 1 / np.log2(np.where(hit, r, 0) + 2), 0).mean(1)
    best = int(np.argmax(ndcg))
    rounds = checkpoints[best]
    booster = lgb.train(params, subset(groups), num_boost_round=rounds)
    return booster, {"rounds": rounds, "cv_hr@10": round(float(hit[best].mean()), 4),
                     "cv_ndcg@10": round(float(ndcg[best]), 4),
                     "cv_curve": {str(checkpoints[i]): round(float(ndcg[i]), 4) for i in range(0, len(checkpoints), 3)},
                     "groups": len(groups), "users": len(cands), "candidates_mean": round(float(sizes.mean()), 1),
                     "config": asdict(config)}


def full_scores(booster, cands, x, fallback: np.ndarray, n_items: int) -> np.ndarray:
    """``[users, n_items]``: ranker scores on the candidates; the rest below them in ``fallback`` order."""
    pred = booster.predict(x, num_threads=1) if len(x) else np.zeros(0)
    out = np.empty((len(cands), n_items), dtype=np.float64)
    pos = 0
    for r, c in enumerate(cands):
        p = pred[pos:pos + len(c)]
        pos += len(c)
        low = float(p.min()) if len(p) else 0.0
        order = np.argsort(-fallback[r], kind="stable")
        rest = np.empty(n_items)
        rest[order] = np.arange(n_items)
        out[r] = low - 1.0 - rest / n_items
        out[r, c] = p
    return out


def _lightgbm():
    try:
        import lightgbm
    except ImportError:
        raise ConfigError("the LightGBM ranker needs the lightgbm package",
                          hint="pip install 'tuneforge[recommender]' (or pip install lightgbm)") from None
    return lightgbm
