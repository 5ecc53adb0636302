"""schemathesis against the OpenAPI of the bundle server and an app: generated requests (valid and
invalid) give no server error and every response matches the documented schema and status codes.
A short run in the default suite; ``make fuzz`` runs many more examples (FUZZ_EXAMPLES)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from _bundle_helpers import make_run
from hypothesis import HealthCheck, settings

from tuneforge.export import export_run
from tuneforge.serve import ServerLimits, build_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def bundle_schema(tiny_encoder_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    run = make_run(root / "runs", tiny_encoder_dir, "classification", n_rows=16)
    bundle = export_run(run, out_dir=root / "exports", variants=["fp32"], measure=False)
    app = build_server(str(bundle), token=TOKEN, limits=ServerLimits(max_body_bytes=20_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def monitor_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-monitor")
    (root / "monitor.toml").write_text('[model]\nscorer = "keywords"\n[state]\ndb = "monitor.db"\n')
    app = build_server("finance-monitor", app_path=str(root / "monitor.toml"), token=TOKEN)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def fuzz(schema) -> list[str]:
    """Every operation of ``schema`` with generated cases; returns the operations it ran."""
    from hypothesis import given

    ran = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=AUTH)

        check()
        ran.append(f"{operation.method.upper()} {operation.path}")
    return ran


def test_fuzz_bundle_server(bundle_schema):
    assert {"POST /v1/predict", "GET /v1/model", "GET /healthz", "GET /metrics"} <= set(fuzz(bundle_schema))


def test_fuzz_finance_monitor(monitor_schema):
    assert {"POST /v1/events", "GET /v1/alerts", "GET /v1/status"} <= set(fuzz(monitor_schema))


@pytest.fixture(scope="module")
def bot_schema(tiny_bot, tmp_path_factory):
    import shutil

    project = tmp_path_factory.mktemp("fuzz-bot") / "project"
    shutil.copytree(tiny_bot.parent, project, ignore=shutil.ignore_patterns("runs", "bot.sqlite*"))
    app = build_server("support-bot", app_path=str(project / "bot"), token=TOKEN)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def recommender_schema(tiny_recommender):
    app = build_server("recommender", app_path=str(tiny_recommender[0]), token=TOKEN)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_fuzz_support_bot(bot_schema):
    assert {"POST /v1/chat", "POST /v1/feedback"} <= set(fuzz(bot_schema))


def test_fuzz_recommender(recommender_schema):
    assert {"POST /v1/recommend", "POST /v1/score"} <= set(fuzz(recommender_schema))
