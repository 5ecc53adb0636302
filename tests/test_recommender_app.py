"""Recommender end to end on a tiny encoder: train -> export -> index -> blend -> recommend,
the CLI, HTTP /v1/recommend and /v1/score, and the app template (its own test passes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneforge.plugins.recommender import TEMPLATES

TEMPLATE = TEMPLATES / "recommender"
from tuneforge.plugins.recommender.build import BuildConfig
from tuneforge.plugins.recommender.service import Recommender

SAMPLE = TEMPLATE / "data"


@pytest.fixture(scope="module")
def built(tiny_recommender):
    """``(folder, report)``: built once per session (tests/conftest.py)."""
    return tiny_recommender


def test_build_writes_folder_and_table(built):
    folder, report = built
    for name in ("recommender.json", "items.jsonl", "item_vectors.npy", "index.faiss", "space.npz", "knn.npz",
                 "histories.json", "eval.json", "eval.md"):
        assert (folder / name).is_file(), name
    names = [r.model for r in report.rows]
    assert names == ["popularity", "item-kNN", "BPR-MF", "two-tower (text)", "two-tower + blend"]
    for r in report.rows:
        assert 0 <= r.full["hr@10"] <= 1 and r.full["users"] == report.users > 0
        assert r.sampled["hr@10"] >= r.full["hr@10"] - 1e-9  # 99 negatives is easier than the catalogue
    meta = json.loads((folder / "recommender.json").read_text())
    assert meta["blend"]["features"] == ["tt", "pop", "recent", "genre", "knn"]
    assert "| two-tower + blend |" in (folder / "eval.md").read_text()


def test_recommend_known_user_filters_seen_and_explains(built):
    folder, _ = built
    rec = Recommender.load(folder, threads=1)
    seen = set(rec.histories["u01"][0])
    out = rec.recommend("u01", k=5)
    items = [r["item"] for r in out["recommendations"]]
    assert len(items) == 5 and not set(items) & seen
    assert out["mode"] == "history" and out["history_size"] == len(seen)
    first = out["recommendations"][0]
    assert first["because"] and first["because"][0]["item"] in seen
    assert set(first["features"]) == {"tt", "pop", "recent", "genre", "knn"}
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
    assert res.exit_code == 0 and "two-tower + blend" in res.output


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
        assert r.status_code == 422 and "unknown user" in r.json()["error"]["message"]
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
