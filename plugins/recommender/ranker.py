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
``recent3``     log(1 + positives in the 3 months up to the user's last event)
``age``         months from the item's first visible positive to the user's last event
==============  ==================================================================

Which feature set (:data:`FEATURE_SETS`), how many earlier pseudo-validation phases join the
training data and the tree shape are chosen by the same group k-fold (:func:`choose_ranker`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tuneforge.errors import ConfigError

from .baselines import EASE
from .features import FeatureSpace

ALL_FEATURES = ("ease", "ease_rank", "tt", "tt_rank", "knn", "knn_rank", "pop", "recent", "genre",
                "in_ease", "in_tt", "in_knn", "history", "ease_last", "tt_last", "year", "year_gap", "pop_gap",
                "recent3", "age")
BASE_FEATURES = ALL_FEATURES[:18]          # the feature set of folders built before ``recent3`` / ``age``
RANKER_FEATURES = ALL_FEATURES
FEATURE_SETS = {"base": BASE_FEATURES, "all": ALL_FEATURES}
LAST = 5   # the "last" features look at the user's most recent items only


@dataclass
class RankerConfig:
    per_source: int = 200       # candidates from each source
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    max_rounds: int = 150       # the CV curve peaks within tens of trees on MovieLens at this rate
    folds: int = 5              # group k-fold over validation users chooses the rounds
    train_negatives: int = 100  # candidates kept per training user besides the positive (random; 0 = all)
    threads: int = 1            # LightGBM threads: 1 is fastest on a small shared CPU
    extra_phases: int = 2       # pseudo-validation phases built (1..n steps earlier); CV picks how many join
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
    """The candidate sources and features fitted on one set of visible interactions.

    ``features``: the names (from :data:`ALL_FEATURES`) the ranker was fitted on, in its column order."""

    def __init__(self, ease_b: np.ndarray, space: FeatureSpace, per_source: int, years: np.ndarray | None = None,
                 features=RANKER_FEATURES):
        self.B, self.space, self.per_source = np.asarray(ease_b, dtype=np.float32), space, per_source
        self.years = years if years is not None else np.full(ease_b.shape[0], np.nan, dtype=np.float32)
        self.features = tuple(features)
        unknown = [f for f in self.features if f not in ALL_FEATURES]
        if unknown:
            raise ConfigError(f"unknown ranker feature {unknown[0]!r}", hint="use " + ", ".join(ALL_FEATURES))
        self.columns = np.array([ALL_FEATURES.index(f) for f in self.features])

    def with_features(self, features) -> Sources:
        """The same fitted sources, computing another feature set."""
        other = object.__new__(Sources)
        other.__dict__.update(self.__dict__)
        other.features = tuple(features)
        other.columns = np.array([ALL_FEATURES.index(f) for f in other.features])
        return other

    def ease_scores(self, history) -> np.ndarray:
        h = np.asarray(history, dtype=np.int64)
        if len(h) == 0:
            return np.zeros(self.B.shape[0], dtype=np.float32)
        return self.B[h].sum(0)

    def _parts(self, user_vector, history, now, knn_scores=None, ease=None, ease_last=None):
        """``ease`` / ``ease_last``: the user's EASE scores (whole history / last ``LAST`` items) when
        computed beforehand (the serving folder stores them for known users)."""
        h = np.asarray(history, dtype=np.int64)
        base = self.space.matrix(user_vector, h, now, knn_scores=knn_scores)   # tt, pop, recent, genre, knn
        ease = self.ease_scores(h) if ease is None else np.asarray(ease, dtype=np.float32)
        if ease_last is None:
            ease_last = self.ease_scores(h[-LAST:]) if len(h) > LAST else ease
        k = min(self.per_source, len(ease) - len(h))
        ranks = [_Ranking(s, h, k) for s in (ease, base[:, 0], base[:, 4])]
        flags = [r.top for r in ranks]
        if user_vector is None:
            flags[1][:] = False                                                # no text vector: no tt source
        return h, base, ease, ranks, flags, np.asarray(ease_last, dtype=np.float32), now

    def _x(self, items, parts) -> np.ndarray:
        h, base, ease, ranks, flags, ease_all_last, now = parts
        n = len(items)
        last = h[-LAST:]
        if len(h):
            ease_last = ease_all_last[items]
            tt_last = self.space.item_vectors[items] @ self.space.item_vectors[h[-1]]
            hy = self.years[last]
            year_gap = self.years[items] - (np.nanmean(hy) if np.isfinite(hy).any() else np.nan)
            pop_gap = base[items, 1] - float(self.space.pop[h].mean())
        else:
            ease_last, tt_last = np.zeros(n, np.float32), np.zeros(n, np.float32)
            year_gap, pop_gap = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
        cols = {"ease": ease[items], "ease_rank": np.log1p(ranks[0].ranks(items)), "tt": base[items, 0],
                "tt_rank": np.log1p(ranks[1].ranks(items)), "knn": base[items, 4],
                "knn_rank": np.log1p(ranks[2].ranks(items)), "pop": base[items, 1], "recent": base[items, 2],
                "genre": base[items, 3], "in_ease": flags[0][items], "in_tt": flags[1][items],
                "in_knn": flags[2][items], "history": np.full(n, np.log1p(len(h))), "ease_last": ease_last,
                "tt_last": tt_last, "year": self.years[items], "year_gap": year_gap, "pop_gap": pop_gap}
        if "recent3" in self.features:
            cols["recent3"] = self.space.recent_window(now, 3)[items]
        if "age" in self.features:
            cols["age"] = self.space.age(now)[items]
        return np.column_stack([cols[f] for f in self.features]).astype(np.float32)

    def candidates(self, user_vector, history, now, knn_scores=None, ease=None,
                   ease_last=None) -> tuple[np.ndarray, np.ndarray]:
        """(candidate items, ``[len(candidates), len(self.features)]``) for one user."""
        parts = self._parts(user_vector, history, now, knn_scores, ease, ease_last)
        h, flags = parts[0], parts[4]
        cand = np.flatnonzero(flags[0] | flags[1] | flags[2])
        cand = cand[~np.isin(cand, h)]
        return cand, self._x(cand, parts)

    def features_of(self, user_vector, history, now, items, ease=None, ease_last=None) -> np.ndarray:
        """The features of given ``items`` (candidates or not) for one user."""
        return self._x(np.asarray(items, dtype=np.int64), self._parts(user_vector, history, now, None, ease,
                                                                      ease_last))


def as_float16(b: np.ndarray) -> np.ndarray:
    """The ranker's EASE matrix is stored in float16 (half the disk; the ranker is fitted on these
    rounded values) and summed in float32 (:class:`Sources` converts it once)."""
    return b.astype(np.float16)


def fit_sources(ease: EASE, space: FeatureSpace, per_source: int, years: np.ndarray | None = None,
                features=ALL_FEATURES) -> Sources:
    return Sources(as_float16(ease.B), space, per_source, years, features)


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
    x = np.concatenate(xs) if xs else np.zeros((0, len(sources.features)), np.float32)
    return cands, x, (np.concatenate(ys) if targets is not None else None)


@dataclass
class Phase:
    """One labelled phase for the ranker: per user, the candidates, their features (every name in
    :data:`ALL_FEATURES`) and labels; ``users`` are the split's user ids (folds follow them)."""

    users: np.ndarray
    cands: list
    x: np.ndarray
    y: np.ndarray


def _names_of(x, feature_names):
    if feature_names is not None:
        return tuple(feature_names)
    for names in (RANKER_FEATURES, BASE_FEATURES):
        if x.shape[1] == len(names):
            return names
    raise ConfigError(f"{x.shape[1]} feature columns: pass their names")


def fit_ranker(cands, x, y, config: RankerConfig, users=None, eval_mask=None, feature_names=None,
               final: bool = True):
    """LightGBM lambdarank on the groups whose label is among the candidates (each keeps the positive
    and ``train_negatives`` random other candidates); the rounds are chosen by a group k-fold over
    ``users`` (one id per group: a user's groups from several phases share a fold, the same fold for
    the same user id whatever the other groups): the checkpoint (every ``max_rounds / 30`` trees) with
    the best held-out NDCG@10 over the groups in ``eval_mask`` (default all), each ranking all its
    candidates.  Returns (booster or None when not ``final``, {"rounds", "cv_ndcg@10", ...})."""
    lgb = _lightgbm()
    names = _names_of(x, feature_names)
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
    users = np.arange(len(cands)) if users is None else np.asarray(users, dtype=np.int64)
    # a user's fold from a hash of its id: the same fold whatever other groups or phases are in the data
    mixed = (users.astype(np.uint64) + np.uint64(config.seed)) * np.uint64(0x9E3779B97F4A7C15)
    fold_of = ((mixed >> np.uint64(40)) % np.uint64(config.folds)).astype(np.int64)

    def subset(gs):
        idx = np.concatenate([rows[g] for g in gs])
        return lgb.Dataset(x[idx], y[idx], group=[len(rows[g]) for g in gs], feature_name=list(names),
                           free_raw_data=False)

    params = config.params()
    step = max(1, config.max_rounds // 30)
    checkpoints = list(range(step, config.max_rounds + 1, step))
    mask = np.ones(len(cands), dtype=bool) if eval_mask is None else np.asarray(eval_mask, dtype=bool)
    # held-out users' full candidate lists: a miss if their item is not a candidate (rank inf)
    ranks = np.full((len(checkpoints), len(cands)), np.inf)
    for f in range(config.folds):
        held = [g for g in groups if fold_of[g] == f and mask[g]]
        if not held:
            continue
        booster = lgb.train(params, subset([g for g in groups if fold_of[g] != f]), num_boost_round=config.max_rounds)
        idx = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in held])
        pred = np.zeros(len(idx))
        for c, (lo, hi) in enumerate(zip([0] + checkpoints[:-1], checkpoints)):   # trees lo..hi added
            if c and lo >= booster.current_iteration():   # no tree could split any more: the same ranks
                ranks[c, held] = ranks[c - 1, held]
                continue
            pred += booster.predict(x[idx], start_iteration=lo, num_iteration=hi - lo, num_threads=config.threads,
                                    raw_score=True)
            pos = 0
            for g in held:
                p = pred[pos:pos + sizes[g]]
                lab = y[starts[g]:starts[g + 1]]
                pos += sizes[g]
                t = float(p[lab > 0][0])
                ranks[c, g] = np.count_nonzero(p > t) + (np.count_nonzero(p == t) - 1) // 2
    # groups whose item is not a candidate stay misses (rank inf): the CV scores the whole pipeline
    r = ranks[:, mask]
    hit = r < 10
    ndcg = np.where(hit, 1 / np.log2(np.where(hit, r, 0) + 2), 0).mean(1)
    best = int(np.argmax(ndcg))
    rounds = checkpoints[best]
    booster = lgb.train(params, subset(groups), num_boost_round=rounds) if final else None
    return booster, {"rounds": rounds, "cv_hr@10": round(float(hit[best].mean()), 4),
                     "cv_ndcg@10": round(float(ndcg[best]), 4),
                     "cv_curve": {str(checkpoints[i]): round(float(ndcg[i]), 4) for i in range(0, len(checkpoints), 3)},
                     "groups": len(groups), "users": len(cands), "candidates_mean": round(float(sizes.mean()), 1),
                     "features": list(names), "config": asdict(config)}


TREE_GRID = ({"num_leaves": 7, "min_data_in_leaf": 100}, {"num_leaves": 15, "min_data_in_leaf": 50},
             {"num_leaves": 31, "min_data_in_leaf": 20}, {"num_leaves": 15, "min_data_in_leaf": 200},
             {"num_leaves": 63, "min_data_in_leaf": 50})


def choose_ranker(phases: list[Phase], config: RankerConfig, *, progress=None):
    """Every choice on the validation phase (``phases[0]``) only: the feature set, how many earlier
    pseudo-phases join the training data (0 .. ``len(phases) - 1``) and the tree shape
    (:data:`TREE_GRID`), each by the group k-fold's NDCG@10 on the real validation users (a
    coordinate search: feature set x phases at the configured tree, then the tree shape), then the
    rounds; the winner is refitted on all its groups.  Returns (booster, info with the whole log)."""
    say = progress or (lambda s: None)
    log, scored = [], {}

    def fit(feature_set, extra, tree, final):
        """Fit on the validation phase + ``extra`` pseudo-phases; scored on the validation users."""
        cfg = RankerConfig(**{**asdict(config), **tree, "extra_phases": extra})
        used = phases[:1 + extra]
        cols = [ALL_FEATURES.index(f) for f in FEATURE_SETS[feature_set]]
        cands = [c for p in used for c in p.cands]
        mask = np.zeros(len(cands), dtype=bool)
        mask[:len(phases[0].cands)] = True
        return fit_ranker(cands, np.concatenate([p.x[:, cols] for p in used]), np.concatenate([p.y for p in used]),
                          cfg, users=np.concatenate([p.users for p in used]), eval_mask=mask,
                          feature_names=FEATURE_SETS[feature_set], final=final)

    def run(feature_set, extra, tree):
        key = (feature_set, extra, tuple(sorted(tree.items())))
        if key in scored:
            return scored[key]
        _, info = fit(feature_set, extra, tree, final=False)
        scored[key] = info["cv_ndcg@10"]
        log.append({"features": feature_set, "extra_phases": extra, **tree, "rounds": info["rounds"],
                    "cv_ndcg@10": info["cv_ndcg@10"], "cv_hr@10": info["cv_hr@10"]})
        say(f"  ranker CV: features {feature_set}, {extra} extra phases, {tree}: NDCG@10 {info['cv_ndcg@10']:.4f} "
            f"at {info['rounds']} rounds")
        return scored[key]

    tree0 = {"num_leaves": config.num_leaves, "min_data_in_leaf": config.min_data_in_leaf}
    first = max(((fs, e) for fs in FEATURE_SETS for e in range(len(phases))), key=lambda k: run(*k, tree0))
    tree = max([tree0] + [t for t in TREE_GRID if t != tree0], key=lambda t: run(*first, t))
    feature_set, extra = first
    booster, info = fit(feature_set, extra, tree, final=True)
    info.update(feature_set=feature_set, extra_phases=extra, tree=tree, search=log)
    return booster, info

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
