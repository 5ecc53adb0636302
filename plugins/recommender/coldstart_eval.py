"""The cold-start table: text tower vs popularity vs EASE (and the rest) on new items and new users,
and the choice of the text tower's mix weight on the cold-start *validation* window.

Every model here is fitted on the positives before the cut-off only (``coldstart``): EASE
and item-kNN with the lambda / neighbours chosen on validation, popularity, the feature
space of the blend and the ranker.  The blend and the ranker keep the weights / trees
learned on the warm validation phase (whose labels include some of these users' later
items: a handful of weights, stated in the report, not refitted here).
"""

from __future__ import annotations

import numpy as np

from .baselines import EASE, ItemKNN
from .coldstart import ColdStartSplit, item_ranks, metrics, user_ranks
from .features import fit_space
from .ranker import RANKER_FEATURES, fit_sources, full_scores, group_table, title_years
from .twotower import user_text

MIX_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)   # weight of the base encoder in the text tower


def _text_vectors(encoder, catalogue, cases, n: int) -> np.ndarray:
    return encoder([user_text(catalogue, c.history, n) or "no history" for c in cases])


def choose_text_mix(cold_val: ColdStartSplit, catalogue, tuned, base, n: int, k: int = 10, progress=None,
                    grid=MIX_GRID) -> tuple[float, dict]:
    """The base encoder's weight ``a`` in ``(1 - a) cos_tuned + a cos_base``, by NDCG@k of the new items
    of the cold-start validation window (each user's first new item ranked among the window's new
    items).  ``tuned`` / ``base``: (encoder, item vectors); ``base`` None -> 0.  Returns (a, log)."""
    say = progress or (lambda s: None)
    cases = cold_val.item_cases
    if base is None or not cases:
        return 0.0, {"reason": "no base encoder" if base is None else "no cold-start validation cases"}
    s_t = _text_vectors(tuned[0], catalogue, cases, n) @ tuned[1].T
    s_b = _text_vectors(base[0], catalogue, cases, n) @ base[1].T
    log = {}
    for a in grid:
        m = metrics(item_ranks(cases, (1 - a) * s_t + a * s_b, cold_val.new_items), k)
        log[str(a)] = {f"ndcg@{k}": round(m[f"ndcg@{k}"], 4), f"hr@{k}": round(m[f"hr@{k}"], 4)}
        say(f"  text mix {a:g} (base encoder weight): cold-start validation NDCG@{k} {m[f'ndcg@{k}']:.4f}, "
            f"HR@{k} {m[f'hr@{k}']:.4f} ({m['users']} users, {len(cold_val.new_items)} new items)")
    best = max(grid, key=lambda a: (log[str(a)][f"ndcg@{k}"], log[str(a)][f"hr@{k}"]))
    return float(best), {"grid": log, "users": len(cases), "new_items": int(len(cold_val.new_items)),
                         "cutoff": cold_val.cutoff, "user_independence": {
                             "fine-tuned": user_independence(s_t[:, cold_val.new_items]),
                             "base": user_independence(s_b[:, cold_val.new_items])}}


def user_independence(scores: np.ndarray) -> float:
    """Mean correlation of each user's scores over the candidates with the average user's: near 1, every
    user gets the same order (the model ranks items, not items for a user: the collapse to an item prior)."""
    if len(scores) < 2 or scores.shape[1] < 2:
        return float("nan")
    mean = scores.mean(0) - scores.mean()
    rows = scores - scores.mean(1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(mean)
    ok = norms > 1e-12
    if not ok.any():      # the average user prefers nothing (or every user scores all items alike)
        return float("nan")
    return round(float(((rows[ok] @ mean) / norms[ok]).mean()), 4)


def cold_start_rows(cold: ColdStartSplit, catalogue, item_vectors: np.ndarray, encoder, tuned, blend, ranker,
                    config, *, text_models=(), progress=None, ranker_features=None) -> list[dict]:
    """``encoder`` / ``item_vectors``: the text tower as served (its rows are "text tower");
    ``text_models``: more (name, encoder, item vectors) rows for the text alone (its parts)."""
    say = progress or (lambda s: None)
    k, n_items, n = config.k, len(catalogue), config.two_tower.history
    n_users = int(max(cold.train_users.max(initial=0), max((c.user for c in cold.item_cases), default=0),
                      max((c.user for cs in cold.user_cases.values() for c in cs), default=0))) + 1
    u, it, t = cold.train_users, cold.train_items, cold.train_times
    ease = EASE(tuned.ease_lambda).fit(u, it, n_users, n_items)
    knn = ItemKNN(tuned.knn_neighbours).fit(u, it, n_users, n_items)
    space = fit_space(item_vectors, catalogue.genre_matrix, u, it, t, n_users, knn=knn)
    pop = np.bincount(it, minlength=n_items).astype(np.float32)
    encoders = [("text tower", encoder, item_vectors)] + list(text_models)
    rows: list[dict] = []

    def add(protocol, model, ranks):
        m = metrics(ranks, k)
        rows.append({"protocol": protocol, "model": model, **{key: round(v, 4) if isinstance(v, float) else v
                                                             for key, v in m.items()}})
        say(f"  {protocol} | {model}: HR@{k} {m[f'hr@{k}']:.4f} ({m['users']} users)")

    # -- new items: rank the user's first new item among all new items ---------------------------
    cases = cold.item_cases
    if cases:
        proto = "cold items"
        hist = [c.history for c in cases]
        add(proto, "popularity (before the cut-off: 0 = random)", item_ranks(cases, np.tile(pop, (len(cases), 1)),
                                                                             cold.new_items))
        so_far = np.stack([cold.popularity_so_far(c, n_items) for c in cases])
        add(proto, "popularity so far (others' positives from the cut-off to the user's event)",
            item_ranks(cases, so_far, cold.new_items))
        # the oracle: how often each new item is liked after the cut-off (it leaks the test period)
        add(proto, "popularity oracle (positives after the cut-off: leaks)",
            item_ranks(cases, np.tile(cold.after_counts, (len(cases), 1)), cold.new_items))
        add(proto, f"EASE (lambda {tuned.ease_lambda:g})", item_ranks(cases, ease.scores(None, hist), cold.new_items))
        genre = np.stack([space.genres @ space.genre_profile(h) for h in hist])
        add(proto, "genre affinity", item_ranks(cases, genre, cold.new_items))
        for name, enc, vecs in encoders:
            uv = _text_vectors(enc, catalogue, cases, n)
            add(proto, name, item_ranks(cases, uv @ vecs.T, cold.new_items))
            if enc is encoder:
                x = np.stack([space.matrix(uv[r], c.history, c.now) for r, c in enumerate(cases)])
                add(proto, "text tower + blend", item_ranks(cases, blend.score(x), cold.new_items))
                del x
    # -- new users: their first m positives, the next one against the catalogue ------------------
    for m, cases in cold.user_cases.items():
        if not cases:
            continue
        proto = f"cold users ({m} item{'s' if m > 1 else ''})"
        hist = [c.history for c in cases]
        add(proto, "popularity", user_ranks(cases, np.tile(pop, (len(cases), 1))))
        add(proto, f"EASE (lambda {tuned.ease_lambda:g})", user_ranks(cases, ease.scores(None, hist)))
        add(proto, f"item-kNN ({tuned.knn_neighbours} neighbours)", user_ranks(cases, knn.scores(None, hist)))
        for name, enc, vecs in encoders:
            uv = _text_vectors(enc, catalogue, cases, n)
            add(proto, name, user_ranks(cases, uv @ vecs.T))
            if enc is not encoder:
                continue
            x = np.stack([space.matrix(uv[r], c.history, c.now) for r, c in enumerate(cases)])
            add(proto, "text tower + blend", user_ranks(cases, blend.score(x)))
            src = fit_sources(ease, space, config.ranker.per_source, title_years(catalogue.titles),
                              features=ranker_features or RANKER_FEATURES)
            cands, xr, _ = group_table(src, uv, hist, [c.now for c in cases])
            add(proto, "ranker (LightGBM lambdarank)",
                user_ranks(cases, full_scores(ranker, cands, xr, ease.scores(None, hist), n_items)))
    return rows
