"""A built recommender folder, loaded for serving: recommend, score, explain (no torch).

Known users are ranked by the LightGBM ranker over the union of EASE, two-tower and
item-kNN candidates (the same scoring as the evaluation; folders built before the
ranker use the learned blend over the whole catalogue); new users describe their taste in free text, which the
user tower embeds and FAISS searches (the blend then orders those candidates with the
features a history-less user has: similarity, popularity, recency).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge.errors import UsageError

from .baselines import ItemKNN
from .blend import Blend
from .data import Catalogue
from .features import FeatureSpace
from .twotower import Encoder, MixedEncoder, user_text

TASTE_CANDIDATES = 200
MAX_TASTE_CHARS = 2000


class UnknownUser(UsageError):
    """The user id has no history in this recommender."""


@dataclass
class Recommendation:
    item: str
    title: str
    score: float
    features: dict
    because: list[dict]

    def to_dict(self) -> dict:
        return {"item": self.item, "title": self.title, "score": round(self.score, 4),
                "features": self.features, "because": self.because}


class Recommender:
    def __init__(self, folder: Path, meta: dict, catalogue: Catalogue, encoder: Encoder, space: FeatureSpace,
                 blend: Blend, histories: dict, index):
        self.folder, self.meta, self.catalogue, self.encoder = folder, meta, catalogue, encoder
        self.space, self.blend, self.histories, self.index = space, blend, histories, index
        self.history_len = int(meta.get("history", 5))
        self.sources = self.ranker = None   # the LightGBM ranker over EASE + two-tower + item-kNN candidates
        self.ranker_features: list[str] = []
        self.user_rows: dict[str, int] = {}
        self.user_ease = self.user_ease_last = None   # [known users, items] float16, rows follow histories
        self.user_vectors = np.zeros((0, 0), dtype=np.float32)
        if (folder / "user_vectors.npy").is_file():
            self.user_vectors = np.load(folder / "user_vectors.npy")
            self.user_rows = {u: i for i, u in enumerate(histories)}
        self.history_rows = {u: i for i, u in enumerate(histories)}

    @classmethod
    def load(cls, folder, *, predictor=None, threads: int | None = None) -> Recommender:
        import faiss
        from scipy import sparse

        folder = Path(folder)
        meta_path = folder / "recommender.json"
        if not meta_path.is_file():
            raise UsageError(f"{folder} is not a recommender folder (no recommender.json)",
                             hint="build one with `tuneforge recommender build --data DIR --out DIR`")
        meta = json.loads(meta_path.read_text())
        bundle = Path(meta["bundle"])
        bundle = bundle if bundle.is_absolute() else folder / bundle
        if predictor is not None:
            encoder = Encoder.__new__(Encoder)
            encoder.predictor = predictor
        else:
            encoder = Encoder(bundle, threads=threads)
        text = meta.get("text") or {}
        if text.get("mix") and text.get("base_bundle"):   # the text tower blends the base encoder in
            base = Path(text["base_bundle"])
            encoder = MixedEncoder(encoder, Encoder(base if base.is_absolute() else folder / base, threads=threads),
                                   float(text["mix"]))
        with open(folder / "items.jsonl", encoding="utf-8") as f:
            catalogue = Catalogue.from_records([json.loads(line) for line in f if line.strip()])
        vectors = np.load(folder / "item_vectors.npy")
        z = np.load(folder / "space.npz")
        knn = ItemKNN()
        knn.sim = sparse.load_npz(folder / "knn.npz").tocsr()
        space = FeatureSpace.__new__(FeatureSpace)
        g = catalogue.genre_matrix
        space.item_vectors, space.raw_genres = vectors.astype(np.float32), g
        space.genres = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
        space.pop, space.cum, space.month0, space.knn = z["pop"], z["cum"], int(z["month0"]), knn
        histories = json.loads((folder / "histories.json").read_text())
        rec = cls(folder, meta, catalogue, encoder, space, Blend(**meta["blend"]), histories,
                  faiss.read_index(str(folder / "index.faiss")))
        if "ranker" in meta and (folder / "ranker.txt").is_file():
            from .ranker import Sources, _lightgbm, title_years

            rec.ranker_features = list(meta["ranker"]["features"])
            rec.sources = Sources(np.load(folder / "ease.npy"), space, int(meta["ranker"]["per_source"]),
                                  title_years(catalogue.titles), rec.ranker_features)
            rec.ranker = _lightgbm().Booster(model_file=str(folder / "ranker.txt"))
            if (folder / "user_ease.npy").is_file():   # known users' EASE scores, summed at build time
                rec.user_ease = np.load(folder / "user_ease.npy", mmap_mode="r")
                rec.user_ease_last = np.load(folder / "user_ease_last.npy", mmap_mode="r")
        return rec

    # -- users -----------------------------------------------------------------
    def _history(self, user: str) -> tuple[np.ndarray, float]:
        h = self.histories.get(str(user))
        if h is None:
            raise UnknownUser(f"unknown user {user!r}: no interactions in this recommender",
                              hint="pass --taste \"what they like\" for a new user")
        items = np.array([self.catalogue.index(i) for i in h[0]], dtype=np.int64)
        return items, float(h[1][-1]) if h[1] else float(self.meta.get("latest_time", 0))

    def _user_vector(self, history: np.ndarray, user: str | None = None) -> np.ndarray | None:
        """Known users' vectors are computed at build time (``user_vectors.npy``), else embedded now."""
        if len(history) == 0:
            return None
        row = self.user_rows.get(str(user)) if user is not None else None
        if row is not None:
            return self.user_vectors[row]
        return self.encoder([user_text(self.catalogue, history, self.history_len)])[0]

    def _user_ease(self, user: str) -> dict:
        """A known user's EASE scores stored at build time (``{}``: sum B's rows now)."""
        row = self.history_rows.get(str(user))
        if self.user_ease is None or row is None:
            return {}
        return {"ease": np.asarray(self.user_ease[row], dtype=np.float32),
                "ease_last": np.asarray(self.user_ease_last[row], dtype=np.float32)}

    def _taste_vector(self, taste: str) -> np.ndarray:
        from tuneforge.serve import is_blank

        taste = (taste or "").strip()
        if is_blank(taste):
            raise UsageError("taste is empty", hint='describe what the user likes, e.g. "space adventures"')
        if len(taste) > MAX_TASTE_CHARS:
            raise UsageError(f"taste is {len(taste)} characters; the limit is {MAX_TASTE_CHARS}")
        return self.encoder([taste])[0]

    # -- ranking ---------------------------------------------------------------
    def recommend(self, user: str | None = None, *, taste: str | None = None, k: int = 10,
                  explain: bool = True) -> dict:
        """Top ``k`` unseen items for a known ``user`` or a free-text ``taste`` (new users)."""
        if (user is None) == (taste is None):
            raise UsageError("give exactly one of user or taste")
        if not isinstance(k, int) or k < 1 or k > 1000:
            raise UsageError(f"k must be an integer in 1..1000, got {k!r}")
        t0 = time.perf_counter()
        with _one_blas_thread():
            out = self._recommend(user, taste, k, explain)
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    def _recommend(self, user, taste, k: int, explain: bool) -> dict:
        ranked_by = "blend"
        if user is not None:
            history, now = self._history(user)
            uvec = self._user_vector(history, user)
            if self.ranker is not None and len(history):
                cand, xr = self.sources.candidates(uvec, history, now, **self._user_ease(user))
                p = self.ranker.predict(xr, num_threads=1)
                order = _top(p, k)
                top, ranked_by = cand[order], "ranker"
                scores = np.full(len(self.catalogue), -np.inf)
                scores[top] = p[order]
                feats = {int(cand[o]): {f: round(float(v), 4) for f, v in zip(self.ranker_features, xr[o])}
                         for o in order}
            else:
                x = self.space.matrix(uvec, history, now)
                scores = self.blend.score(x)
                scores[history] = -np.inf
                top = _top(scores, k)
            mode = "history" if len(history) else "popular"  # an empty history: popularity + recency
        else:
            history = np.zeros(0, dtype=np.int64)
            uvec = self._taste_vector(taste)
            n = min(TASTE_CANDIDATES, len(self.catalogue))
            _, cand = self.index.search(uvec[None, :].astype(np.float32), n)
            cand = cand[0][cand[0] >= 0]
            x = self.space.matrix(uvec, history, float(self.meta.get("latest_time", 0)), items=cand)
            keep = [i for i, f in enumerate(self.blend.features) if f in ("tt", "pop", "recent")]
            sub = Blend([self.blend.features[i] for i in keep], [self.blend.weights[i] for i in keep],
                        [self.blend.mean[i] for i in keep], [self.blend.std[i] for i in keep])
            local = sub.score(x[:, keep])
            order = _top(local, k)
            top, scores = cand[order], np.full(len(self.catalogue), -np.inf, dtype=np.float32)
            scores[cand] = local
            x_full = np.zeros((len(self.catalogue), x.shape[1]), dtype=np.float32)
            x_full[cand] = x
            x = x_full
            mode = "taste"
        because = self.explain_many(history, top) if explain else [[] for _ in top]
        recs = [Recommendation(self.catalogue.ids[i], self.catalogue.titles[i], float(scores[i]),
                               feats[int(i)] if ranked_by == "ranker" else self.blend.contributions(x[i]), b)
                for i, b in zip(top, because)]
        return {"user": user, "mode": mode, "ranked_by": ranked_by, "k": k, "history_size": int(len(history)),
                "recommendations": [r.to_dict() for r in recs], "took_ms": 0.0}

    def score(self, user: str, items: list[str]) -> dict:
        """Ranker (or blend) scores of the given candidate items for a known user (unknown items say so)."""
        with _one_blas_thread():
            return self._score(user, items)

    def _score(self, user: str, items: list[str]) -> dict:
        if not items:
            raise UsageError("items is empty", hint="pass the candidate item ids to score")
        history, now = self._history(user)
        idx = [self.catalogue.index(i) for i in items]
        known = np.array([i for i in idx if i is not None], dtype=np.int64)
        uvec = self._user_vector(history, user)
        if not len(known):
            s = []
        elif self.ranker is not None and len(history):
            s = self.ranker.predict(self.sources.features_of(uvec, history, now, known, **self._user_ease(user)),
                                    num_threads=1)
        else:
            s = self.blend.score(self.space.matrix(uvec, history, now, items=known))
        seen = set(history.tolist())
        out, j = [], 0
        for item, i in zip(items, idx):
            if i is None:
                out.append({"item": item, "score": None, "error": "unknown item"})
                continue
            out.append({"item": item, "title": self.catalogue.titles[i], "score": round(float(s[j]), 4),
                        "seen": i in seen})
            j += 1
        return {"user": user, "scores": out}

    def explain_many(self, history: np.ndarray, items, top: int = 3) -> list[list[dict]]:
        """For each item, the history items that drove it: text similarity + co-occurrence, strongest first."""
        items = np.asarray(items, dtype=np.int64)
        if len(history) == 0 or len(items) == 0:
            return [[] for _ in items]
        vecs = self.space.item_vectors
        sim = vecs[items] @ vecs[history].T                                # [items, history]
        knn = self.space.knn
        if getattr(knn, "_sim_t", None) is None:
            knn._sim_t = knn.sim.T.tocsr()
        co = knn._sim_t[items].toarray()[:, history]                        # sim[h, item]
        out = []
        for r in range(len(items)):
            order = np.argsort(-(sim[r] + co[r]))[:top]
            out.append([{"item": self.catalogue.ids[history[o]], "title": self.catalogue.titles[history[o]],
                         "text_similarity": round(float(sim[r, o]), 3), "co_occurrence": round(float(co[r, o]), 3)}
                        for o in order])
        return out


_BLAS = None


def _one_blas_thread():
    """One BLAS thread for a request's small matrix-vector products: on a busy CPU, OpenBLAS's
    thread hand-off costs more than the product itself (measured 8 ms -> 1.3 ms for 9k x 384)."""
    global _BLAS
    if _BLAS is None:
        try:   # installed with scikit-learn / implicit; without it requests just use OpenBLAS's threads
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    if _BLAS is False:
        import contextlib

        return contextlib.nullcontext()
    return _BLAS.limit(limits=1, user_api="blas")


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    finite = np.flatnonzero(np.isfinite(scores))
    k = min(k, len(finite))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    part = finite[np.argpartition(-scores[finite], k - 1)[:k]]
    return part[np.argsort(-scores[part], kind="stable")]
