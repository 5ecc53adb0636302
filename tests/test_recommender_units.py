"""Recommender plugin: metrics on hand-made examples, data errors, split, baselines, blend, service errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuneforge.errors import DataError, UsageError
from tuneforge.plugins.recommender.baselines import BPR, BPRConfig, ItemKNN, Popularity
from tuneforge.plugins.recommender.blend import Blend, fit_blend
from tuneforge.plugins.recommender.data import Catalogue, load_catalogue, load_folder, load_interactions
from tuneforge.plugins.recommender.metrics import rank_of, ranking_metrics, sampled_negatives
from tuneforge.plugins.recommender.split import leave_last_out


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path):
    write(tmp_path / "items.csv", "item,title,genres\na,Alpha,Action|Drama\nb,Beta,Comedy\nc,Gamma,Action\n"
                                  "d,Delta,Drama\ne,Epsilon,Comedy\n")
    write(tmp_path / "interactions.csv",
          "user,item,rating,timestamp\n"
          "u1,a,5,10\nu1,b,4,20\nu1,c,2,25\nu1,d,5,30\n"   # c is below the threshold
          "u2,a,4,5\nu2,c,5,6\nu2,e,4,7\nu2,b,5,8\n"
          "u3,e,5,1\n")                                     # one positive: never evaluated
    return tmp_path


# -- metrics -----------------------------------------------------------------------------------
def test_metrics_on_hand_made_ranks():
    m = ranking_metrics([0, 3, 12], k=10)
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(2) + 1 / math.log2(5)) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 13) / 3)
    assert m["users"] == 3
    assert ranking_metrics([], k=10)["hr@10"] == 0.0


def test_rank_of_handles_ties_and_exclusions():
    assert rank_of(np.array([0.9, 0.5, 0.5, 0.1]), 1) == 1          # one higher, one tie -> 1 + 1 // 2
    assert rank_of(np.array([0.5, 0.5, 0.5, 0.1]), 0) == 1          # two ties -> expected rank 1
    assert rank_of(np.array([5.0, 4.0, 3.0]), 2, exclude=np.array([0])) == 1
    assert rank_of(np.array([5.0, 4.0, 3.0]), 2, exclude=np.array([2])) == 2  # the target is never excluded


def test_sampled_negatives_avoid_excluded_items():
    rng = np.random.default_rng(0)
    neg = sampled_negatives(10, np.array([0, 1, 2]), 5, rng)
    assert len(set(neg.tolist())) == 5 and not set(neg.tolist()) & {0, 1, 2}
    assert len(sampled_negatives(4, np.array([0, 1]), 99, rng)) == 2  # fewer left than asked


# -- data + split --------------------------------------------------------------------------------
def test_load_folder_threshold_and_leave_last_out(folder):
    catalogue, inter = load_folder(folder)
    assert len(catalogue) == 5 and catalogue.genres[0] == ["Action", "Drama"]
    assert len(inter) == 9
    split = leave_last_out(inter.positives(4.0))
    u1, u2, u3 = (inter.user_index(u) for u in ("u1", "u2", "u3"))
    idx = catalogue.index
    assert split.test[u1] == idx("d") and split.val[u1] == idx("b") and split.train[u1].tolist() == [idx("a")]
    assert split.test[u2] == idx("b") and split.val[u2] == idx("e")
    assert split.test[u3] == -1 and split.train[u3].tolist() == [idx("e")]
    assert sorted(split.eval_users.tolist()) == sorted([u1, u2])
    assert split.history(u1, "test").tolist() == [idx("a"), idx("b")]


def test_data_errors_name_file_and_line(tmp_path, folder):
    catalogue = load_catalogue(folder / "items.csv")
    bad = write(tmp_path / "bad.csv", "user,item,rating,timestamp\nu1,a,5,1\nu1,zzz,5,2\n")
    with pytest.raises(DataError, match=r"bad.csv:3: item 'zzz' is not in the catalogue"):
        load_interactions(bad, catalogue)
    bad = write(tmp_path / "bad2.csv", "user,item,rating,timestamp\nu1,a,five,1\n")
    with pytest.raises(DataError, match=r"bad2.csv:2: rating and timestamp must be numbers"):
        load_interactions(bad, catalogue)
    nocol = write(tmp_path / "nocol.csv", "user,item\nu1,a\n")
    with pytest.raises(DataError, match="no time column"):
        load_interactions(nocol, catalogue)
    dup = write(tmp_path / "dup.csv", "item,title\na,A\na,B\n")
    with pytest.raises(DataError, match=r"dup.csv:3: item 'a' appears twice"):
        load_catalogue(dup)
    with pytest.raises(UsageError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_click_logs_are_all_positive(tmp_path):
    write(tmp_path / "items.jsonl", '{"id": "x", "title": "X", "genres": ["A", "B"]}\n{"id": "y", "title": "Y"}\n')
    write(tmp_path / "interactions.jsonl", '{"user": 1, "item": "x", "timestamp": 3}\n'
                                           '{"user": 1, "item": "y", "timestamp": 4}\n')
    catalogue, inter = load_folder(tmp_path)
    assert catalogue.genres[0] == ["A", "B"] and inter.rating.tolist() == [1.0, 1.0]
    assert len(inter.positives(None)) == 2


# -- baselines ---------------------------------------------------------------------------------
def test_popularity_and_item_knn_known_answers():
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    pop = Popularity().fit(users, items, 3, 4)
    assert pop.scores([0], [[0]])[0].tolist() == [2, 2, 1, 0]
    knn = ItemKNN().fit(users, items, 3, 4)
    s = knn.scores([2], [np.array([0])])[0]
    # items 0 and 1 always co-occur: cosine 2 / sqrt(2 * 2) = 1; item 2 never with 0
    assert s[1] == pytest.approx(1.0) and s[2] == 0 and s[0] == 0  # no self-similarity
    assert knn.explain([0, 2], 1).tolist() == pytest.approx([1.0, 0.0])


def test_bpr_learns_a_two_block_structure():
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(40):  # users < 20 like items 0-9, the others items 10-19
        block = 0 if u < 20 else 10
        for i in rng.choice(10, 6, replace=False):
            users.append(u)
            items.append(block + i)
    bpr = BPR(BPRConfig(factors=8, epochs=60, seed=0)).fit(np.array(users), np.array(items), 40, 20)
    s = bpr.scores([0, 39], None)
    assert s[0, :10].mean() > s[0, 10:].mean() and s[1, 10:].mean() > s[1, :10].mean()
    with pytest.raises(ValueError):
        BPRConfig(factors=0)


# -- blend ---------------------------------------------------------------------------------------
def test_blend_learns_the_useful_feature():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 50, 2)).astype(np.float32)
    targets = x[:, :, 0].argmax(1)          # feature 0 decides, feature 1 is noise
    blend = fit_blend(x, targets, [np.array([], dtype=np.int64)] * 30, features=["good", "noise"])
    assert blend.weights[0] > 1.0 and abs(blend.weights[1]) < 0.5 * blend.weights[0]
    assert Blend(**blend.to_dict()).score(x[0]).argmax() == targets[0]
    with pytest.raises(Exception, match="same length"):
        Blend(["a"], [1.0, 2.0], [0.0], [1.0])


def test_catalogue_text_and_records_round_trip():
    c = Catalogue(ids=["1"], titles=["Alien (1979)"], genres=[["Horror", "Sci-Fi"]], tags=[["space"]])
    assert c.text(0) == "Alien (1979). Genres: Horror, Sci-Fi. Tags: space"
    assert Catalogue.from_records(c.to_records()).to_records() == c.to_records()
    assert c.index("nope") is None
