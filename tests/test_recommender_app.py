"""Recommender end to end on a tiny encoder: train -> export -> index -> blend -> recommend,
the CLI, HTTP /v1/recommend and /v1/score, and the app template (its own test passes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tuneforge.plugins.recommender import TEMPLATES
from tuneforge.plugins.recommender.baselines import ALS
from tuneforge.plugins.recommender.build import BuildConfig, build_recommender
from tuneforge.plugins.recommender.features import FEATURES
from tuneforge.plugins.recommender.ranker import RANKER_FEATURES
from tuneforge.plugins.recommender.service import Recommender
from tuneforge.plugins.recommender.twotower import TwoTowerConfig

TEMPLATE = TEMPLATES / "recommender"



GENRES = {"Action": ("Fist", "Chase", "Blast"), "Comedy": ("Laugh", "Prank", "Giggle"),
          "Drama": ("Tears", "Letters", "Winter"), "Horror": ("Crypt", "Shadow", "Scream"),
          "Romance": ("Kiss", "Heart", "Rose"), "Sci-Fi": ("Orbit", "Robot", "Star")}


def write_synthetic(folder, seed=0):
    """60 films in 6 genres (titles carry genre words); i051-i060 appear only late. 40 users (u01-u40)
    like one genre each from t=0, and new films after t=8000; 10 users (u41-u50) join after t=8000."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = list(GENRES)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "items.csv", "w") as f:
        f.write("item,title,genres\n")
        for i in range(60):
            g = names[i % 6]
            f.write(f"i{i + 1:03d},{GENRES[g][i % 3]} of the {GENRES[g][(i + 1) % 3]} {i} ({1980 + i}),{g}\n")

    def pick(fav, new):
        pool = range(50, 60) if new else range(50)
        genre = fav if rng.random() < 0.8 else int(rng.integers(6))
        item = int(rng.choice([i for i in pool if i % 6 == genre]))
        return item, (5 if genre == fav else int(rng.choice([2, 4])))

    rows = []
    for u in range(50):
        fav, late = u % 6, u >= 40
        plan = [(8000, 9000, True)] * 6 if late else [(0, 7000, False)] * 14 + [(8000, 9000, True)] * 2
        for lo, hi, new in plan:
            item, rating = pick(fav, new and (not late or rng.random() < 0.5))
            rows.append((int(rng.integers(lo, hi)), f"u{u + 1:02d}", f"i{item + 1:03d}", rating))
    with open(folder / "interactions.csv", "w") as f:
        f.write("user,item,rating,timestamp\n")
        for t, u, i, r in sorted(rows):
            f.write(f"{u},{i},{r},{t}\n")
    return folder


@pytest.fixture(scope="module")
def built(tiny_encoder_dir, tmp_path_factory):
    data = write_synthetic(tmp_path_factory.mktemp("synthetic"))
    out = tmp_path_factory.mktemp("rec") / "recommender"
    cfg = BuildConfig(data=str(data), out=str(out), base_model=tiny_encoder_dir, cold_fraction=0.25,
                      two_tower=TwoTowerConfig(pairs_per_user=5, batch_size=16, max_length=32), threads=1)
    folder, report = build_recommender(cfg, progress=lambda s: None)
    return folder, report


def test_build_writes_folder_and_table(built):
    folder, report = built
    for name in ("recommender.json", "items.jsonl", "item_vectors.npy", "index.faiss", "space.npz", "knn.npz",
                 "ease.npy", "ranker.txt", "histories.json", "eval.json", "eval.md"):
        assert (folder / name).is_file(), name
    s = report.settings
    names = [r.model for r in report.rows]
    expected = ["popularity", f"item-kNN ({s['knn_neighbours']} neighbours)", f"EASE (lambda {s['ease_lambda']:g})",
                "BPR-MF"] + (["ALS (implicit)"] if ALS.available() else []) + [
                "text tower (two-tower)", "text tower + blend", "ranker (LightGBM lambdarank)"]
    assert names == expected
    for r in report.rows:
        assert 0 <= r.full["hr@10"] <= 1 and r.full["users"] == report.users > 0
        assert r.sampled["hr@10"] >= r.full["hr@10"] - 1e-9  # 99 negatives is easier than the catalogue
    # hyper-parameters were chosen on validation: the chosen value is the best one tried
    ease_log = s["validation"]["ease_lambda"]
    assert ease_log[str(float(s["ease_lambda"]))] == max(ease_log.values())
    assert s["ranker"]["rounds"] >= 1 and 0 < s["ranker"]["test_candidate_recall"] <= 1
    # the ranker's feature set, extra phases and tree shape: the best of the validation CV search
    search = s["ranker"]["search"]
    best = max(search, key=lambda r: r["cv_ndcg@10"])
    assert len(search) >= 4 and s["ranker"]["cv_ndcg@10"] == best["cv_ndcg@10"]
    assert (s["ranker"]["feature_set"], s["ranker"]["extra_phases"]) == (best["features"], best["extra_phases"])
    # the text tower's mix of fine-tuned and base encoder: the best on the cold-start validation window
    # (here no item is new in the validation window, so the build keeps the fine-tuned tower: mix 0)
    assert s["text_mix"] == 0.0 and "no cold-start validation cases" in s["text_mix_validation"]["reason"]
    assert s["cold_start"]["validation_cutoff"] < s["cold_start"]["cutoff"]
    # the synthetic users like one genre each: every collaborative model beats popularity here
    full = {r.model.split(" (")[0]: r.full["hr@10"] for r in report.rows}
    assert full["EASE"] > full["popularity"] and full["ranker"] > full["popularity"]
    protocols = {c["protocol"] for c in report.cold}
    assert protocols == {"cold items", "cold users (1 item)", "cold users (2 items)"}
    for c in report.cold:
        assert 0 <= c["hr@10"] <= 1 and c["users"] > 0
    meta = json.loads((folder / "recommender.json").read_text())
    assert meta["blend"]["features"] == ["tt", "pop", "recent", "genre", "knn"]
    assert meta["ranker"]["features"] == s["ranker"]["features"] and set(meta["ranker"]["features"]) <= set(
        RANKER_FEATURES)
    assert meta["text"]["mix"] == s["text_mix"] and (meta["text"]["base_bundle"] is None) == (s["text_mix"] == 0)
    ease_rows = np.load(folder / "user_ease.npy")
    assert ease_rows.shape == (meta["users"], meta["items"]) and ease_rows.dtype == np.float16
    cold_models = {c["model"] for c in report.cold if c["protocol"] == "cold items"}
    assert {"text tower", "text tower + blend", "genre affinity"} <= cold_models
    assert any(m.startswith("popularity so far") for m in cold_models)
    md = (folder / "eval.md").read_text()
    assert "| ranker (LightGBM lambdarank) |" in md and "| cold items | genre affinity |" in md
    assert f"seed {report.seed}" in md and "build wall time" in md


def test_recommend_known_user_filters_seen_and_explains(built):
    folder, _ = built
    rec = Recommender.load(folder, threads=1)
    seen = set(rec.histories["u01"][0])
    out = rec.recommend("u01", k=5)
    items = [r["item"] for r in out["recommendations"]]
    assert len(items) == 5 and not set(items) & seen
    assert out["mode"] == "history" and out["ranked_by"] == "ranker" and out["history_size"] == len(seen)
    first = out["recommendations"][0]
    assert first["because"] and first["because"][0]["item"] in seen
    assert list(first["features"]) == rec.ranker_features
    # the EASE scores stored at build time are the ones summed now
    stored = rec._user_ease("u01")
    history, _ = rec._history("u01")
    assert np.allclose(stored["ease"], rec.sources.ease_scores(history), atol=2e-2)
    rec.user_ease = None
    again = rec.recommend("u01", k=5)
    assert [r["item"] for r in again["recommendations"]] == items
    rec.user_ease = np.load(folder / "user_ease.npy", mmap_mode="r")
    # /v1/score gives the same ranker scores as the ranking
    scored = rec.score("u01", items[:2])["scores"]
    assert [s["score"] for s in scored] == pytest.approx([r["score"] for r in out["recommendations"][:2]], abs=1e-3)
    # a folder without the ranker (built before it) still ranks with the blend
    rec.ranker = None
    old = rec.recommend("u01", k=5)
    assert old["ranked_by"] == "blend" and set(old["recommendations"][0]["features"]) == set(FEATURES)
    assert [r["score"] for r in out["recommendations"]] == sorted(
        (r["score"] for r in out["recommendations"]), reverse=True)


def test_unknown_users_items_and_empty_taste_get_clear_answers(built):
    from tuneforge.errors import UsageError

    rec = Recommender.load(built[0], threads=1)
    with pytest.raises(UsageError, match="unknown user 'nobody'"):
        rec.recommend("nobody")
    with pytest.raises(UsageError, match="taste is empty"):
        rec.recommend(taste="   ")
    with pytest.raises(UsageError, match="exactly one"):
        rec.recommend()
    scored = rec.score("u01", ["i001", "no-such-item"])["scores"]
    assert scored[0]["score"] is not None and scored[1] == {"item": "no-such-item", "score": None,
                                                            "error": "unknown item"}
    taste = rec.recommend(taste="a funny comedy", k=3)
    assert taste["mode"] == "taste" and len(taste["recommendations"]) == 3
    assert taste["recommendations"][0]["because"] == []  # no history to explain with


def test_cli_recommend(built):
    from tuneforge.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["recommend", "--user", "u02", "-k", "3", "--model-dir", str(built[0])])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("top 3 for user u02") and "because you liked" in res.output
    res = runner.invoke(cli, ["recommend", "--user", "ghost", "--model-dir", str(built[0])])
    assert res.exit_code == 2 and "unknown user 'ghost'" in res.output
    res = runner.invoke(cli, ["recommend", "--model-dir", str(built[0])])
    assert res.exit_code == 2 and "exactly one of --user" in res.output
    res = runner.invoke(cli, ["recommender", "eval", "--model-dir", str(built[0])])
    assert res.exit_code == 0 and "text tower + blend" in res.output
    assert "ranker (LightGBM lambdarank)" in res.output and "| cold users (2 items) |" in res.output


def test_http_recommend_and_score(built):
    from fastapi.testclient import TestClient

    from tuneforge.serve import build_server

    with TestClient(build_server("recommender", app_path=str(built[0]))) as client:
        r = client.post("/v1/recommend", json={"user": "u03", "k": 4})
        assert r.status_code == 200 and len(r.json()["recommendations"]) == 4
        r = client.post("/v1/recommend", json={"taste": "scary night in the woods", "k": 2})
        assert r.status_code == 200 and r.json()["mode"] == "taste"
        r = client.post("/v1/score", json={"user": "u03", "items": ["i001", "i002"]})
        assert r.status_code == 200 and len(r.json()["scores"]) == 2
        r = client.post("/v1/recommend", json={"user": "ghost"})
        assert r.status_code == 404 and "unknown user" in r.json()["error"]["message"]
        r = client.post("/v1/recommend", json={"user": "u03", "k": 0})
        assert r.status_code == 422
        r = client.post("/v1/score", json={"user": "u03", "items": []})
        assert r.status_code == 422
        assert 'tuneforge_recommender_recommendations_total{mode="taste"} 1.0' in client.get("/metrics").text


def test_template_generates_a_project_whose_test_passes(tmp_path):
    from tuneforge.cli import cli

    res = CliRunner().invoke(cli, ["new", "app", "my-recs", "--template", "recommender", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    project = tmp_path / "my-recs"
    assert {p.name for p in project.iterdir()} >= {"README.md", "recommender.toml", "data", "test_my_recs.py"}
    assert "# my-recs" in (project / "README.md").read_text()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
                         cwd=project, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


def test_build_config_from_toml(tmp_path):
    from tuneforge.errors import ConfigError

    toml = tmp_path / "r.toml"
    toml.write_text('[recommender]\ndata = "d"\nout = "o"\n[recommender.two_tower]\nhistory = 3\n')
    cfg = BuildConfig.from_toml(toml, seed=7)
    assert cfg.data == str(tmp_path / "d") and cfg.two_tower.history == 3 and cfg.seed == 7
    toml.write_text('[recommender]\ndata = "d"\nout = "o"\nthreshhold = 3\n')
    with pytest.raises(ConfigError, match="unknown \\[recommender\\] setting 'threshhold'"):
        BuildConfig.from_toml(toml)
    assert Path(TEMPLATE / "recommender.toml").is_file()


def test_text_tower_mixing_the_base_encoder_serves_one_vector_space(built, tiny_encoder_dir, tmp_path):
    """The text mix the cold-start validation would choose when the base encoder helps: the same build
    with ``text_mix`` given, the tower reused (no training), and the folder served with both encoders."""
    folder, report = built
    cfg = BuildConfig(data=report.settings["data"], out=str(tmp_path / "mixed"), base_model=tiny_encoder_dir,
                      bundle=report.settings["bundle"], text_mix=0.5, baselines=False, cold_fraction=0.25,
                      two_tower=TwoTowerConfig(pairs_per_user=5, batch_size=16, max_length=32), threads=1,
                      ranker={"max_rounds": 20, "folds": 3})
    mixed, rep = build_recommender(cfg, progress=lambda s: None)
    meta = json.loads((mixed / "recommender.json").read_text())
    assert meta["text"]["mix"] == 0.5 and (mixed / meta["text"]["base_bundle"]).is_dir()
    assert np.load(mixed / "item_vectors.npy").shape[1] == 2 * np.load(folder / "item_vectors.npy").shape[1]
    assert {"fine-tuned tower alone", "base encoder alone (not fine-tuned)"} <= {c["model"] for c in rep.cold}
    rec = Recommender.load(mixed, threads=1)
    assert rec.encoder.mix == 0.5 and rec.encoder.dim == rec.space.item_vectors.shape[1]
    out = rec.recommend("u05", k=3)
    assert out["ranked_by"] == "ranker" and len(out["recommendations"]) == 3
    taste = rec.recommend(taste="a scary crypt", k=2)["recommendations"]
    assert len(taste) == 2
