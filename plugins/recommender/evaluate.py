"""Leave-last-out evaluation of every model in one run, printed as one table.

Protocols: ``full`` ranks the held-out item against the whole catalogue (minus the
user's seen items); ``sampled`` against 99 sampled unseen items (the same negatives
for every model).  Baselines are fitted on the same visible interactions as the
text model (train + validation item for the test phase).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .baselines import ALS, BPR, EASE, BPRConfig, ItemKNN, Popularity
from .blend import Blend, fit_blend
from .data import Catalogue
from .features import FeatureSpace, fit_space
from .metrics import ranking_metrics, sampled_negatives
from .split import LeaveLastOut


@dataclass
class Row:
    model: str
    full: dict
    sampled: dict
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalReport:
    rows: list[Row]
    seed: int
    users: int
    items: int
    settings: dict = field(default_factory=dict)
    wall_s: float = 0.0
    cold: list[dict] = field(default_factory=list)   # {"protocol", "model", "hr@k", "ndcg@k", "mrr", "users"}

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "cold": self.cold, "seed": self.seed, "users": self.users,
                "items": self.items, "settings": self.settings, "wall_s": round(self.wall_s, 1)}

    def cold_table(self, k: int = 10) -> str:
        lines = [f"| protocol | model | HR@{k} | NDCG@{k} | MRR | users |", "|" + "---|" * 6]
        for c in self.cold:
            lines.append(f"| {c['protocol']} | {c['model']} | {c[f'hr@{k}']:.4f} | {c[f'ndcg@{k}']:.4f} | "
                         f"{c['mrr']:.4f} | {c['users']} |")
        return "\n".join(lines)

    def markdown(self, k: int = 10) -> str:
        """Every table (warm leave-last-out, cold start) with the seed and the wall time."""
        s = self.settings
        head = (f"Warm (leave-last-out): {self.users} held-out users, {self.items} items, seed {self.seed}, "
                f"build wall time {self.wall_s:.0f} s")
        if "ease_lambda" in s:
            head += (f"; chosen on validation: EASE lambda {s['ease_lambda']:g}, "
                     f"item-kNN {s['knn_neighbours']} neighbours")
            r = s.get("ranker", {})
            if "feature_set" in r:
                head += (f", ranker features {r['feature_set']} ({len(r['features'])}), {r['extra_phases']} extra "
                         f"pseudo-phases, {r['tree']['num_leaves']} leaves / {r['tree']['min_data_in_leaf']} a leaf, "
                         f"{r['rounds']} rounds (group {r['config']['folds']}-fold CV NDCG@10 {r['cv_ndcg@10']:.4f})")
            elif "rounds" in r:
                head += f", ranker {r['rounds']} rounds"
            if "text_mix" in s:
                head += (f"; text tower = {1 - s['text_mix']:g} x fine-tuned + {s['text_mix']:g} x base encoder "
                         f"(chosen on the cold-start validation window)")
        parts = [head, "", self.table(k)]
        if self.cold:
            cs = s.get("cold_start", {})
            parts += ["", f"Cold start (models see the interactions before the last {cs.get('fraction', 0.1):.0%} "
                          f"of time only; {cs.get('new_items', '?')} new items; seed {self.seed}):", "",
                      self.cold_table(k)]
        return "\n".join(parts)

    def table(self, k: int = 10) -> str:
        head = (f"| model | full HR@{k} | full NDCG@{k} | full MRR | sampled-100 HR@{k} | sampled NDCG@{k} "
                f"| sampled MRR | fit+score s |")
        lines = [head, "|" + "---|" * 8]
        for r in self.rows:
            f, s = r.full, r.sampled
            lines.append(f"| {r.model} | {f[f'hr@{k}']:.4f} | {f[f'ndcg@{k}']:.4f} | {f['mrr']:.4f} | "
                         f"{s[f'hr@{k}']:.4f} | {s[f'ndcg@{k}']:.4f} | {s['mrr']:.4f} | {r.seconds:.1f} |")
        return "\n".join(lines)


class Protocol:
    """Held-out targets, seen items and the sampled negatives for one phase."""

    def __init__(self, split: LeaveLastOut, n_items: int, phase: str, seed: int, n_sampled: int = 99):
        self.users = split.eval_users
        self.phase = phase
        self.targets = (split.test if phase == "test" else split.val)[self.users]
        self.histories = [split.history(int(u), phase) for u in self.users]
        self.now = np.array([split.history_times(int(u), phase)[-1] if len(split.history(int(u), phase))
                             else 0 for u in self.users], dtype=np.int64)
        rng = np.random.default_rng(seed)
        self.negatives = [sampled_negatives(n_items, np.append(h, t), n_sampled, rng)
                          for h, t in zip(self.histories, self.targets)]

    def ranks(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``scores``: ``[len(users), n_items]`` -> (full ranks, sampled ranks)."""
        full, samp = np.empty(len(self.users)), np.empty(len(self.users))
        for r in range(len(self.users)):
            s = scores[r].astype(np.float64)
            t = self.targets[r]
            st = s[t]
            h = self.histories[r]
            masked = s.copy()
            masked[h] = -np.inf
            masked[t] = st
            full[r] = _rank(masked, st)
            samp[r] = _rank(s[self.negatives[r]], st, include_self=False)
        return full, samp


def _rank(s: np.ndarray, t: float, include_self: bool = True) -> int:
    higher = int(np.count_nonzero(s > t))
    ties = int(np.count_nonzero(s == t)) - (1 if include_self else 0)
    return higher + max(ties, 0) // 2


def _row(name: str, proto: Protocol, scores: np.ndarray, seconds: float, k: int) -> Row:
    full, samp = proto.ranks(scores)
    return Row(name, ranking_metrics(full, k), ranking_metrics(samp, k), round(seconds, 1))


EASE_GRID = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)
KNN_GRID = (10, 20, 50, 100, 200, 400, 800)
ALS_GRID = ({"factors": 64, "alpha": 1.0}, {"factors": 64, "alpha": 10.0}, {"factors": 128, "alpha": 1.0},
            {"factors": 128, "alpha": 10.0})


def walk_grid(grid, score) -> tuple[int, dict]:
    """Index of the best grid value by ``score`` (higher is better), walking from the middle towards
    improvement and stopping at the first drop (the curves are unimodal in practice): a few fits
    instead of the whole grid.  Returns (best index, {index: score})."""
    seen: dict[int, float] = {}

    def at(i):
        if i not in seen:
            seen[i] = score(grid[i])
        return seen[i]

    best = len(grid) // 2
    at(best)
    for step in (-1, 1):
        while 0 <= best + step < len(grid) and at(best + step) > at(best):
            best += step
    return best, seen


@dataclass
class Tuned:
    """Hyper-parameters chosen on the validation phase, and the models fitted per phase."""

    ease_lambda: float
    knn_neighbours: int
    ease: dict = field(default_factory=dict)   # phase -> fitted EASE
    knn: dict = field(default_factory=dict)    # phase -> fitted ItemKNN
    log: dict = field(default_factory=dict)    # validation NDCG@10 of every value tried


def _val_ndcg(model, split, val: Protocol, n_items: int, k: int) -> float:
    users, items = split.matrix_pairs("val")
    model.fit(users, items, len(split.train), n_items)
    return _row("", val, model.scores(val.users, val.histories), 0.0, k).full[f"ndcg@{k}"]


def tune_on_validation(split: LeaveLastOut, val: Protocol, n_items: int, *, k: int = 10, progress=None) -> Tuned:
    """EASE's lambda and item-kNN's neighbour count by validation NDCG@k (full catalogue)."""
    say = progress or (lambda s: None)
    fitted: dict = {}

    def ease_score(lam):
        m = EASE(lam)
        v = _val_ndcg(m, split, val, n_items, k)
        fitted[("ease", lam)] = m
        say(f"  EASE lambda {lam:g}: validation NDCG@{k} {v:.4f}")
        return v

    def knn_score(nb):
        m = ItemKNN(nb)
        v = _val_ndcg(m, split, val, n_items, k)
        fitted[("knn", nb)] = m
        say(f"  item-kNN {nb} neighbours: validation NDCG@{k} {v:.4f}")
        return v

    e, e_log = walk_grid(EASE_GRID, ease_score)
    n, n_log = walk_grid(KNN_GRID, knn_score)
    tuned = Tuned(EASE_GRID[e], KNN_GRID[n],
                  log={"ease_lambda": {str(EASE_GRID[i]): round(v, 4) for i, v in sorted(e_log.items())},
                       "knn_neighbours": {str(KNN_GRID[i]): round(v, 4) for i, v in sorted(n_log.items())}})
    tuned.ease["val"], tuned.knn["val"] = fitted[("ease", tuned.ease_lambda)], fitted[("knn", tuned.knn_neighbours)]
    return tuned


def baseline_rows(split: LeaveLastOut, proto: Protocol, n_items: int, *, seed: int, k: int = 10,
                  bpr: BPRConfig | None = None, tuned: Tuned | None = None, val: Protocol | None = None,
                  als: bool = True, progress=None, only_tuned: bool = False) -> list[Row]:
    """Popularity, item-kNN, EASE (tuned values when given), BPR and ALS (if ``implicit`` is installed,
    its factors / alpha chosen on ``val``) fitted on train + validation, scored on the test phase.
    Fitted EASE / item-kNN go into ``tuned`` (phase ``test``) for the ranker."""
    say = progress or (lambda s: None)
    users, items = split.matrix_pairs("test")
    n_users = len(split.train)
    models = [Popularity(), ItemKNN(tuned.knn_neighbours if tuned else 200)]
    if tuned is not None:
        models.append(EASE(tuned.ease_lambda))
    models.append(BPR(bpr or BPRConfig(seed=seed)))
    if only_tuned:  # the ranker's test-phase sources only (no baseline rows wanted)
        models, als = models[1:3], False
    if als and ALS.available():
        params = ALS_GRID[0]
        if val is not None:
            # an unordered 2-D grid, and ALS fits in seconds: try all of it
            log = {i: _val_ndcg(ALS(**p, seed=seed), split, val, n_items, k) for i, p in enumerate(ALS_GRID)}
            params = ALS_GRID[max(log, key=log.get)]
            if tuned is not None:
                tuned.log["als"] = {json_key(ALS_GRID[i]): round(v, 4) for i, v in sorted(log.items())}
        models.append(ALS(**params, seed=seed))
    elif als:
        say("  ALS skipped: the implicit package is not installed (pip install implicit)")
    rows = []
    for model in models:
        t0 = time.perf_counter()
        model.fit(users, items, n_users, n_items)
        scores = model.scores(proto.users, proto.histories)
        name = model.name
        if isinstance(model, EASE):
            name = f"EASE (lambda {model.lam:g})"
            tuned.ease["test"] = model
        elif isinstance(model, ItemKNN) and tuned is not None:
            name = f"item-kNN ({model.neighbours} neighbours)"
            tuned.knn["test"] = model
        rows.append(_row(name, proto, scores, time.perf_counter() - t0, k))
        say(f"  {name}: HR@{k} {rows[-1].full[f'hr@{k}']:.4f}")
        del scores
    return rows


def json_key(d: dict) -> str:
    return ",".join(f"{a}={b}" for a, b in d.items())


def space_for(split: LeaveLastOut, catalogue: Catalogue, item_vectors: np.ndarray, phase: str,
              times_of, knn: ItemKNN | None = None) -> FeatureSpace:
    users, items = split.matrix_pairs(phase)
    return fit_space(item_vectors, catalogue.genre_matrix, users, items, times_of(phase), len(split.train), knn=knn)


def visible_times(split: LeaveLastOut, phase: str) -> np.ndarray:
    return np.concatenate([split.history_times(u, phase) for u in range(len(split.train))])


def feature_tensor(space: FeatureSpace, proto: Protocol, user_vectors: np.ndarray) -> np.ndarray:
    """``[users, items, features]`` for every evaluated user (float32)."""
    knn = space.knn.scores(proto.users, proto.histories)
    return np.stack([space.matrix(user_vectors[r], proto.histories[r], proto.now[r], knn_scores=knn[r])
                     for r in range(len(proto.users))])


def learn_blend(x: np.ndarray, proto: Protocol, *, seed: int = 0) -> Blend:
    """Fit the blend on the validation phase's feature tensor ``x`` (``[users, items, features]``)."""
    return fit_blend(x, np.asarray(proto.targets, dtype=np.int64), proto.histories)
