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

from .baselines import BPR, BPRConfig, ItemKNN, Popularity
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

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "seed": self.seed, "users": self.users,
                "items": self.items, "settings": self.settings, "wall_s": round(self.wall_s, 1)}

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


def baseline_rows(split: LeaveLastOut, proto: Protocol, n_items: int, *, seed: int, k: int = 10,
                  bpr: BPRConfig | None = None) -> list[Row]:
    users, items = split.matrix_pairs("test")
    n_users = len(split.train)
    rows = []
    for model in (Popularity(), ItemKNN(), BPR(bpr or BPRConfig(seed=seed))):
        t0 = time.perf_counter()
        model.fit(users, items, n_users, n_items)
        scores = model.scores(proto.users, proto.histories)
        rows.append(_row(model.name, proto, scores, time.perf_counter() - t0, k))
    return rows


def space_for(split: LeaveLastOut, catalogue: Catalogue, item_vectors: np.ndarray, phase: str,
              times_of) -> FeatureSpace:
    users, items = split.matrix_pairs(phase)
    return fit_space(item_vectors, catalogue.genre_matrix, users, items, times_of(phase), len(split.train))


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
