"""EASE, ALS, validation grids, the LightGBM ranker and the cold-start split on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.plugins.recommender.baselines import ALS, EASE, binary_matrix
from tuneforge.plugins.recommender.coldstart import ColdCase, cold_start_split, item_ranks, user_ranks
from tuneforge.plugins.recommender.data import Interactions
from tuneforge.plugins.recommender.evaluate import walk_grid
from tuneforge.plugins.recommender.ranker import RANKER_FEATURES, RankerConfig, fit_ranker, full_scores


def _blocks(seed=0, users=40, per_block=10, liked=6):
    rng = np.random.default_rng(seed)
    us, its = [], []
    for u in range(users):  # users < half like items 0..9, the others items 10..19
        block = 0 if u < users // 2 else per_block
        for i in rng.choice(per_block, liked, replace=False):
            us.append(u)
            its.append(block + i)
    return np.array(us), np.array(its)


def test_ease_matches_the_closed_form():
    users, items = _blocks()
    lam = 5.0
    m = EASE(lam).fit(users, items, 40, 20)
    x = binary_matrix(users, items, 40, 20).toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + lam * np.eye(20))
    b = np.eye(20) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    assert np.allclose(m.B, b, atol=1e-4)
    s = m.scores([0], [np.array([0, 1])])[0]
    assert s[:10].mean() > s[10:].mean()      # the user's own block scores higher
    with pytest.raises(ValueError):
        EASE(0)


@pytest.mark.skipif(not ALS.available(), reason="the implicit package is not installed")
def test_als_learns_the_block_structure():
    users, items = _blocks()
    s = ALS(factors=8, iterations=10, seed=0).fit(users, items, 40, 20).scores([0, 39], None)
    assert s[0, :10].mean() > s[0, 10:].mean() and s[1, 10:].mean() > s[1, :10].mean()


def test_walk_grid_finds_the_peak_without_trying_everything():
    calls = []

    def score(v):
        calls.append(v)
        return -(v - 300) ** 2

    grid = (25, 50, 100, 200, 400, 800, 1600, 3200, 6400)
    best, tried = walk_grid(grid, score)
    assert grid[best] == 400 and len(calls) < len(grid) and set(tried) == {grid.index(v) for v in calls}
    best, _ = walk_grid(grid, lambda v: -v)              # the edge of the grid
    assert grid[best] == 25


def test_ranker_learns_the_deciding_feature_and_fills_the_rest_in_fallback_order():
    rng = np.random.default_rng(0)
    cands, xs, ys = [], [], []
    for _ in range(120):
        c = rng.choice(50, 20, replace=False)
        x = rng.standard_normal((20, len(RANKER_FEATURES))).astype(np.float32)
        y = np.zeros(20, dtype=np.float32)
        y[np.argmax(x[:, 2])] = 1.0                      # "tt" decides
        cands.append(c)
        xs.append(x)
        ys.append(y)
    cfg = RankerConfig(max_rounds=40, min_data_in_leaf=5, folds=3)
    booster, info = fit_ranker(cands, np.concatenate(xs), np.concatenate(ys), cfg)
    assert info["groups"] == 120 and 1 <= info["rounds"] <= 40 and info["cv_ndcg@10"] > 0.8 and info["cv_hr@10"] > 0.9
    gain = booster.feature_importance("gain")
    assert int(np.argmax(gain)) == RANKER_FEATURES.index("tt")
    fallback = np.arange(50, dtype=np.float64)[None, :]   # higher item id = better fallback
    s = full_scores(booster, cands[:1], xs[0], fallback, 50)[0]
    others = np.setdiff1d(np.arange(50), cands[0])
    assert s[cands[0]].min() > s[others].max()           # candidates first
    assert list(others[np.argsort(-s[others])]) == sorted(others, reverse=True)
    assert cands[0][np.argmax(s[cands[0]])] == cands[0][np.argmax(xs[0][:, 2])]
    with pytest.raises(Exception, match="too few"):
        fit_ranker(cands[:2], np.concatenate(xs[:2]), np.concatenate(ys[:2]), cfg)


def test_cold_start_split_on_a_hand_made_timeline():
    # items 0-2 exist from the start; item 3 first appears at t=95 (in the last 40 % of times)
    rows = [(0, 0, 5, 10), (0, 1, 5, 20), (0, 3, 5, 96), (0, 2, 5, 97),
            (1, 0, 5, 30), (1, 2, 2, 40), (1, 1, 4, 50),
            (2, 1, 5, 60), (2, 0, 5, 70), (2, 2, 5, 80),
            (3, 3, 5, 95), (3, 0, 5, 98), (3, 1, 4, 99), (3, 2, 5, 100)]   # user 3 joins after the cut-off
    u, i, r, t = (np.array(c) for c in zip(*rows))
    inter = Interactions(u.astype(np.int32), i.astype(np.int32), r.astype(np.float32), t.astype(np.int64),
                         ["a", "b", "c", "d"])
    cold = cold_start_split(inter, inter.positives(4.0), fraction=0.4)
    assert 80 < cold.cutoff <= 95 and cold.new_items.tolist() == [3]
    assert sorted(set(cold.train_items.tolist())) == [0, 1, 2] and cold.train_times.max() < cold.cutoff
    (case,) = cold.item_cases           # user 3's first positive is the new item itself: no history, skipped
    assert case.user == 0 and case.target == 3 and case.history.tolist() == [0, 1]
    (u1,), (u2,) = cold.user_cases[1], cold.user_cases[2]
    assert u1.user == u2.user == 3 and u1.history.tolist() == [3] and u1.target == 0
    assert u2.history.tolist() == [3, 0] and u2.target == 1
    assert cold.after_counts.tolist() == [1, 1, 2, 2]
    # ranks: ties are the expected rank of a random order; the history is never a candidate
    cases = [ColdCase(0, np.array([0]), 0.0, 2, np.array([3]))]
    assert item_ranks(cases, np.zeros((1, 5)), np.array([1, 2, 3, 4])) == [1]   # 3 ties -> (3-1)//2
    scores = np.array([[9.0, 1.0, 2.0, 0.0, 0.0]])
    assert user_ranks(cases, scores) == [0]                                       # item 0 is history


def test_source_ranks_share_ties_and_flag_exactly_k_unseen_items():
    from tuneforge.plugins.recommender.ranker import _Ranking

    r = _Ranking(np.array([0.9, 0.5, 0.5, 0.1, 2.0]), np.array([4]), k=2)   # item 4 is seen
    assert r.ranks(np.arange(4)).tolist() == [0, 1, 1, 3]                      # ties share a rank
    assert r.top.sum() == 2 and r.top[0] and not r.top[4] and r.top[1] != r.top[2]


def test_earlier_pseudo_phase_never_uses_validation_or_test_items():
    from tuneforge.plugins.recommender.split import LeaveLastOut

    split = LeaveLastOut([np.array([1, 2, 3]), np.array([5])], [np.array([10, 20, 30]), np.array([7])],
                         np.array([4, -1]), np.array([6, -1]), np.array([40, 0]), np.array([50, 0]))
    e = split.earlier(1)
    assert e.train[0].tolist() == [1, 2] and e.val[0] == 3 and e.eval_users.tolist() == [0]
    assert e.history(0, "val").tolist() == [1, 2] and e.train[1].tolist() == []
    assert split.earlier(2).val[0] == 2 and split.earlier(3).val[0] == -1   # no history left: not a case


def _timeline():
    rows = [(0, 0, 5, 10), (0, 1, 5, 20), (0, 3, 5, 96), (0, 2, 5, 97),
            (1, 0, 5, 30), (1, 2, 2, 40), (1, 1, 4, 50),
            (2, 1, 5, 60), (2, 0, 5, 70), (2, 2, 5, 80),
            (3, 3, 5, 95), (3, 0, 5, 98), (3, 1, 4, 99), (3, 2, 5, 100)]
    u, i, r, t = (np.array(c) for c in zip(*rows))
    return Interactions(u.astype(np.int32), i.astype(np.int32), r.astype(np.float32), t.astype(np.int64),
                        ["a", "b", "c", "d"])


def test_popularity_so_far_counts_only_other_users_before_the_event():
    inter = _timeline()
    cold = cold_start_split(inter, inter.positives(4.0), fraction=0.4)
    (case,) = cold.item_cases                      # user 0 likes new item 3 at t=96
    assert case.at == 96
    so_far = cold.popularity_so_far(case, 4)
    assert so_far.tolist() == [0, 0, 0, 1]         # user 3 liked item 3 at t=95; user 0's own and later ones left out
    late = ColdCase(0, case.history, 0.0, 3, np.zeros(0, np.int64), at=95.0)
    assert cold.popularity_so_far(late, 4).sum() == 0   # strictly before the event


def test_validation_cold_window_ends_where_the_test_window_starts():
    from tuneforge.plugins.recommender.coldstart import validation_cold_split

    inter = _timeline()
    pos = inter.positives(4.0)
    test = cold_start_split(inter, pos, fraction=0.2)
    val = validation_cold_split(inter, pos, fraction=0.2)
    assert val.cutoff < test.cutoff
    assert val.train_times.max() < val.cutoff
    after = np.concatenate([[c.at for c in val.item_cases], [c.at for cs in val.user_cases.values() for c in cs]])
    assert np.all(after < test.cutoff)             # nothing from the test window is validated on
    assert set(val.new_items.tolist()).isdisjoint(test.new_items.tolist())


def test_mixed_vectors_give_the_blended_cosine():
    from tuneforge.plugins.recommender.twotower import MixedEncoder, mix_vectors

    rng = np.random.default_rng(0)

    def unit(n, d):
        v = rng.standard_normal((n, d)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    t_items, b_items, t_user, b_user = unit(5, 8), unit(5, 4), unit(1, 8), unit(1, 4)
    for a in (0.0, 0.3, 1.0):
        got = mix_vectors(t_user, b_user, a) @ mix_vectors(t_items, b_items, a).T
        want = (1 - a) * (t_user @ t_items.T) + a * (b_user @ b_items.T)
        assert np.allclose(got, want, atol=1e-6)
        assert np.allclose(np.linalg.norm(mix_vectors(t_items, b_items, a), axis=1), 1.0, atol=1e-6)

    class Fake:
        predictor = None

        def __init__(self, v):
            self.v = v

        def __call__(self, texts, batch_size=64):
            return self.v[:len(texts)]

        dim = property(lambda self: self.v.shape[1])

    enc = MixedEncoder(Fake(t_items), Fake(b_items), 0.3)
    assert enc.dim == 12 and np.allclose(enc(["x"] * 5), mix_vectors(t_items, b_items, 0.3))
    assert MixedEncoder(Fake(t_items), None, 0.0).dim == 8
    with pytest.raises(Exception, match="needs the base encoder"):
        MixedEncoder(Fake(t_items), None, 0.5)


def test_item_age_and_short_window_come_from_the_monthly_counts():
    from tuneforge.plugins.recommender.features import MONTH, fit_space

    items = np.array([0, 0, 1, 1, 1])
    times = np.array([0, 5, 3, 4, 5]) * MONTH + 10
    space = fit_space(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), np.zeros(5, int), items, times, 1)
    age = space.age(5 * MONTH + 10)
    assert age[0] == 5 and age[1] == 2 and np.isnan(age[2])          # item 2 never seen
    assert np.allclose(np.expm1(space.recent_window(5 * MONTH + 10, 3)), [1, 3, 0])   # months 3..5


def test_choose_ranker_keeps_the_best_validation_configuration():
    from tuneforge.plugins.recommender.ranker import ALL_FEATURES, Phase, choose_ranker

    rng = np.random.default_rng(1)

    def phase(n, decides):
        cands, xs, ys = [], [], []
        for _ in range(n):
            x = rng.standard_normal((15, len(ALL_FEATURES))).astype(np.float32)
            y = np.zeros(15, np.float32)
            y[np.argmax(x[:, ALL_FEATURES.index(decides)])] = 1
            cands.append(rng.choice(40, 15, replace=False))
            xs.append(x)
            ys.append(y)
        return Phase(np.arange(n), cands, np.concatenate(xs), np.concatenate(ys))

    # only the "all" feature set holds the deciding feature "age"
    booster, info = choose_ranker([phase(90, "age"), phase(90, "age")],
                                  RankerConfig(max_rounds=30, min_data_in_leaf=5, folds=3, train_negatives=0))
    assert info["feature_set"] == "all" and info["features"][-1] == "age"
    best = max(info["search"], key=lambda r: r["cv_ndcg@10"])
    assert info["cv_ndcg@10"] == best["cv_ndcg@10"] and info["tree"]["num_leaves"] == best["num_leaves"]
    assert booster.num_feature() == len(ALL_FEATURES)


def test_text_mix_is_chosen_on_the_validation_window():
    from tuneforge.plugins.recommender.coldstart import ColdStartSplit
    from tuneforge.plugins.recommender.coldstart_eval import choose_text_mix, user_independence
    from tuneforge.plugins.recommender.data import Catalogue

    cat = Catalogue(ids=[str(i) for i in range(6)], titles=[f"t{i}" for i in range(6)])
    # items 3-5 are new; user text "Liked: t0" should find item 3, "Liked: t1" item 4, "Liked: t2" item 5
    base_items = np.eye(6, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    tuned_items = np.tile(np.array([[1.0, 0, 0]], np.float32), (6, 1))   # one order for everyone: collapsed
    tuned_items[5] = [0.8, 0.6, 0]

    class Fake:
        def __init__(self, table, dim):
            self.table, self.dim = table, dim

        def __call__(self, texts, batch_size=64):
            return np.stack([self.table(int(t.split("t")[-1])) for t in texts]).astype(np.float32)

    base = Fake(lambda i: np.eye(6)[i], 6)
    tuned = Fake(lambda i: np.array([1.0, 0, 0]), 3)
    cases = [ColdCase(u, np.array([u]), 0.0, 3 + u, np.zeros(0, np.int64)) for u in range(3)]
    cold = ColdStartSplit(0.0, np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.array([3, 4, 5]), cases,
                          {1: []}, np.zeros(6, np.float32))
    mix, log = choose_text_mix(cold, cat, (tuned, tuned_items), (base, base_items), n=5, k=1)
    # the collapsed tower alone misses; any share of the base encoder finds every item; ties keep the
    # smallest base weight (the trained tower first)
    assert log["grid"]["0.0"]["hr@1"] < 1.0 and mix == 0.25 and log["grid"]["0.25"]["hr@1"] == 1.0
    assert log["user_independence"]["fine-tuned"] == 1.0           # the same order for every user
    assert np.isnan(log["user_independence"]["base"])               # the average user prefers nothing here
    assert choose_text_mix(cold, cat, (tuned, tuned_items), None, n=5)[0] == 0.0
    assert user_independence(np.array([[1.0, 2, 3], [2.0, 4, 6]])) == 1.0
