"""Baselines in numpy (+ scipy.sparse): popularity, item-kNN co-occurrence, EASE, BPR matrix
factorisation, and ALS from the ``implicit`` package when it is installed.

Each has ``fit(users, items, n_users, n_items)`` on coded positive interactions and
``scores(user_indices, histories)`` -> a dense ``[len(users), n_items]`` score matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Popularity:
    name = "popularity"

    def fit(self, users, items, n_users: int, n_items: int) -> Popularity:
        self.counts = np.bincount(np.asarray(items), minlength=n_items).astype(np.float32)
        return self

    def scores(self, user_indices, histories) -> np.ndarray:
        return np.tile(self.counts, (len(user_indices), 1))


class ItemKNN:
    """Item-item cosine over binary co-occurrence: ``sim(i, j) = c_ij / sqrt(n_i n_j)``;
    a user's score for ``j`` is the sum of ``sim(h, j)`` over their history ``h``."""

    name = "item-kNN"

    def __init__(self, neighbours: int | None = 200):
        self.neighbours = neighbours

    def fit(self, users, items, n_users: int, n_items: int) -> ItemKNN:
        from scipy import sparse

        x = sparse.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
        x.data[:] = 1.0  # duplicates count once
        x.sum_duplicates()
        x.data[:] = 1.0
        co = (x.T @ x).tocsr().astype(np.float32)
        n = np.asarray(co.diagonal()).astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        inv = 1.0 / np.sqrt(np.maximum(n, 1.0))
        co = sparse.diags(inv) @ co @ sparse.diags(inv)
        self.sim = _top_per_row(co.tocsr(), self.neighbours) if self.neighbours else co.tocsr()
        return self

    def scores(self, user_indices, histories) -> np.ndarray:
        from scipy import sparse

        n = self.sim.shape[0]
        rows = np.concatenate([np.full(len(h), r) for r, h in enumerate(histories)]) if len(histories) else []
        cols = np.concatenate([np.asarray(h) for h in histories]) if len(histories) else []
        h = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(histories), n))
        return np.asarray((h @ self.sim).todense(), dtype=np.float32)

    def explain(self, history, item: int) -> np.ndarray:
        """Each history item's contribution to ``item``'s score (``sim[h, item]`` for each ``h``)."""
        if getattr(self, "_sim_t", None) is None or self._sim_t.shape != self.sim.shape:
            self._sim_t = self.sim.T.tocsr()  # column lookups become row lookups: O(row), not O(matrix)
        col = self._sim_t[item].toarray().ravel()
        return col[np.asarray(history, dtype=np.int64)]


def binary_matrix(users, items, n_users: int, n_items: int):
    """Users x items CSR with 1 for every (user, item) seen (duplicates count once)."""
    from scipy import sparse

    x = sparse.csr_matrix((np.ones(len(users), dtype=np.float32), (np.asarray(users), np.asarray(items))),
                          shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def history_matrix(histories, n_items: int):
    from scipy import sparse

    rows = np.concatenate([np.full(len(h), r) for r, h in enumerate(histories)]) if len(histories) else []
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if len(histories) else []
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(histories), n_items))


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019): ``B = I - P diag(1 / diag(P))`` with
    ``P = (X^T X + lambda I)^-1`` and a zero diagonal; a user's scores are ``x_u B``.

    Dense ``n_items^2`` (float32): ~0.3 GB and ~20 s for 9k items on 2 cores; refused above
    ``MAX_ITEMS`` (use item-kNN there)."""

    name = "EASE"
    MAX_ITEMS = 30_000

    def __init__(self, lam: float = 500.0):
        if lam <= 0:
            raise ValueError(f"EASE lambda must be > 0, got {lam}")
        self.lam = float(lam)

    def fit(self, users, items, n_users: int, n_items: int) -> EASE:
        from scipy.linalg import lapack

        from tuneforge.errors import ConfigError

        if n_items > self.MAX_ITEMS:
            raise ConfigError(f"EASE needs a dense {n_items}x{n_items} matrix; the limit is {self.MAX_ITEMS} items")
        x = binary_matrix(users, items, n_users, n_items)
        g = (x.T @ x).toarray().astype(np.float32)
        g[np.diag_indices(n_items)] += self.lam
        c, info = lapack.spotrf(g, lower=False, overwrite_a=True)          # Cholesky: G is SPD
        if info != 0:
            raise ValueError(f"EASE: the Gram matrix is not positive definite (lapack info {info})")
        p, info = lapack.spotri(c, lower=False, overwrite_c=True)          # upper triangle of G^-1
        p = np.triu(p) + np.triu(p, 1).T
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n_items)] = 0.0
        self.B = b.astype(np.float32)
        return self

    def scores(self, user_indices, histories) -> np.ndarray:
        return np.asarray(history_matrix(histories, self.B.shape[0]) @ self.B, dtype=np.float32)


class ALS:
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) from the ``implicit`` package (optional)."""

    name = "ALS (implicit)"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0, iterations: int = 15,
                 seed: int = 0):
        self.params = dict(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
                           random_state=seed)

    @staticmethod
    def available() -> bool:
        try:
            import implicit.cpu.als  # noqa: F401
        except Exception:  # not installed, or a broken native build
            return False
        return True

    def fit(self, users, items, n_users: int, n_items: int) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS threads inside them oversubscribe
            model = AlternatingLeastSquares(**self.params, num_threads=0, calculate_training_loss=False)
            model.fit(binary_matrix(users, items, n_users, n_items), show_progress=False)
        self.U, self.V = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return self

    def scores(self, user_indices, histories) -> np.ndarray:
        return self.U[np.asarray(user_indices)] @ self.V.T


def _top_per_row(m, k: int):
    """Keep each row's ``k`` largest entries (sparse CSR)."""
    from scipy import sparse

    indptr, indices, data = [0], [], []
    for r in range(m.shape[0]):
        a, b = m.indptr[r], m.indptr[r + 1]
        d, c = m.data[a:b], m.indices[a:b]
        if len(d) > k:
            top = np.argpartition(-d, k)[:k]
            d, c = d[top], c[top]
        indices.append(c)
        data.append(d)
        indptr.append(indptr[-1] + len(d))
    return sparse.csr_matrix((np.concatenate(data) if data else [], np.concatenate(indices) if indices else [],
                              indptr), shape=m.shape)


@dataclass
class BPRConfig:
    factors: int = 64
    epochs: int = 40
    learning_rate: float = 0.05
    reg: float = 0.002
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self):
        if self.factors < 1 or self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0 or self.reg < 0:
            raise ValueError(f"invalid BPR settings: {self}")


class BPR:
    """Bayesian personalised ranking (Rendle et al. 2009) with mini-batch SGD.

    Each step samples (user, positive, negative) triples and raises ``x_up - x_un``
    through ``log sigmoid``; items carry a bias.
    """

    name = "BPR-MF"

    def __init__(self, config: BPRConfig | None = None):
        self.config = config or BPRConfig()

    def fit(self, users, items, n_users: int, n_items: int) -> BPR:
        c = self.config
        rng = np.random.default_rng(c.seed)
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        self.P = (rng.standard_normal((n_users, c.factors)) * 0.1).astype(np.float32)
        self.Q = (rng.standard_normal((n_items, c.factors)) * 0.1).astype(np.float32)
        self.b = np.zeros(n_items, dtype=np.float32)
        seen = set(zip(users.tolist(), items.tolist()))
        n = len(users)
        for _ in range(c.epochs):
            perm = rng.permutation(n)
            for start in range(0, n, c.batch_size):
                idx = perm[start:start + c.batch_size]
                u, i = users[idx], items[idx]
                j = rng.integers(0, n_items, size=len(idx))
                clash = np.fromiter(((a, b) in seen for a, b in zip(u.tolist(), j.tolist())), bool, len(idx))
                j[clash] = rng.integers(0, n_items, size=int(clash.sum()))
                pu, qi, qj = self.P[u], self.Q[i], self.Q[j]
                x = (pu * (qi - qj)).sum(1) + self.b[i] - self.b[j]
                g = (1.0 / (1.0 + np.exp(np.clip(x, -30, 30)))).astype(np.float32)[:, None]  # d log sig / dx
                lr, reg = c.learning_rate, c.reg
                np.add.at(self.P, u, lr * (g * (qi - qj) - reg * pu))
                np.add.at(self.Q, i, lr * (g * pu - reg * qi))
                np.add.at(self.Q, j, lr * (-g * pu - reg * qj))
                np.add.at(self.b, i, lr * (g[:, 0] - reg * self.b[i]))
                np.add.at(self.b, j, lr * (-g[:, 0] - reg * self.b[j]))
        return self

    def scores(self, user_indices, histories) -> np.ndarray:
        return self.P[np.asarray(user_indices)] @ self.Q.T + self.b
