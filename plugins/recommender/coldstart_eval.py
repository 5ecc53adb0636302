"""The cold-start table: text tower vs popularity vs EASE (and the rest) on new items and new users.

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
from .ranker import fit_sources, full_scores, group_table, title_years
from .twotower import user_text


def _text_vectors(encoder, catalogue, cases, n: int) -> np.ndarray:
    return encoder([user_text(catalogue, c.history, n) or "no history" for c in cases])


def cold_start_rows(cold: ColdStartSplit, catalogue, item_vectors: np.ndarray, encoder, tuned, blend, ranker,
                    config, *, frozen: bool = False, progress=None) -> list[dict]:
    say = progress or (lambda s: None)
    k, n_items, n = config.k, len(catalogue), config.two_tower.history
    n_users = int(max(cold.train_users.max(initial=0), max((c.user for c in cold.item_cases), default=0),
                      max((c.user for cs in cold.user_cases.values() for c in cs), default=0))) + 1
    u, it, t = cold.train_users, cold.train_items, cold.train_times
    ease = EASE(tuned.ease_lambda).fit(u, it, n_users, n_items)
    knn = ItemKNN(tuned.knn_neighbours).fit(u, it, n_users, n_items)
    space = fit_space(item_vectors, catalogue.genre_matrix, u, it, t, n_users, knn=knn)
    pop = np.bincount(it, minlength=n_items).astype(np.float32)
    encoders = [("two-tower (text)", encoder, item_vectors)]
    if frozen:
        from .twotower import FrozenEncoder

        say("  embedding the catalogue with the frozen base encoder")
        base = FrozenEncoder(config.base_model or config.two_tower.base_model)
        encoders.append(("frozen base encoder (text)", base, base([catalogue.text(i) for i in range(n_items)])))
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
                add(proto, "two-tower + blend", item_ranks(cases, blend.score(x), cold.new_items))
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
            add(proto, "two-tower + blend", user_ranks(cases, blend.score(x)))
            src = fit_sources(ease, space, config.ranker.per_source, title_years(catalogue.titles))
            cands, xr, _ = group_table(src, uv, hist, [c.now for c in cases])
            add(proto, "ranker (LightGBM lambdarank)",
                user_ranks(cases, full_scores(ranker, cands, xr, ease.scores(None, hist), n_items)))
    return rows
