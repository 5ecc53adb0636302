"""Every app is served by core the same way: the three built-in apps and a freshly scaffolded
plugin's app, each through ``tuneforge.serve.build_server(NAME, app_path=..., token=...)``.

One parametrised test checks, per app: readiness without the token, /metrics behind the token
(core's HTTP counters and the app's own), the main route with and without the token, body
limits (also chunked), malformed JSON, a non-JSON content type, and an OpenAPI document where
every POST has a request body and every 4xx answer is core's ``ErrorBody``.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _bundle_helpers import make_run

SCAFFOLDED = "acme-served"          # not acme-tickets: other tests scaffold and import that one
TOKEN = "s3rv3d-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY_LIMIT = 2000


@dataclass
class Served:
    """What the test needs to know about one app."""

    name: str
    app_path: Path
    route: str                    # the app's main route (POST)
    body: dict                    # a request it answers with 200
    counter: str                  # a metric family only this app exposes, once the route was called
    big_field: str                # a string field of ``body`` to blow up past the body limit


# -- the scaffolded plugin: module-scoped package + bundle, registered per test --------------------------
@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory, tiny_encoder_dir):
    """``tuneforge.scaffold.scaffold_plugin`` into tmp, its module imported from there, and a tiny
    exported bundle for its task (a random tiny model with the plugin's labels: no training)."""
    from tuneforge.export import export_run
    from tuneforge.scaffold import plugin_variables, scaffold_plugin

    root = tmp_path_factory.mktemp("scaffolded")
    names = plugin_variables(SCAFFOLDED)
    pkg = scaffold_plugin(SCAFFOLDED, root)
    with open(pkg / names["module"] / "data" / "train.csv", newline="") as f:
        labels = sorted({row["team"] for row in csv.DictReader(f)})
    run = make_run(root / "runs", tiny_encoder_dir, "classification", labels=labels, task=names["task"],
                   n_rows=24)
    bundle = export_run(run, out_dir=root / "exports", variants=["fp32"], measure=False)
    sys.path.insert(0, str(pkg))
    try:
        module = __import__(names["module"])
        yield module, names["task"], Path(bundle)
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop(names["module"], None)
        sys.modules.pop(f"{names['module']}.app", None)


def _support_bot(request, tmp_path) -> Served:
    tiny_bot = request.getfixturevalue("tiny_bot")
    project = tmp_path / "bot-project"       # chats write transcripts: a private copy of the shared bot
    shutil.copytree(tiny_bot.parent, project, ignore=shutil.ignore_patterns("runs", "bot.sqlite*"))
    return Served("support-bot", project / "bot", "/v1/chat", {"message": "where is my new card"},
                  "tuneforge_support_bot_turns_total", "message")


def _finance_monitor(request, tmp_path) -> Served:
    from test_finance_scenario import write_config  # the keyword scorer: no model to load

    return Served("finance-monitor", write_config(tmp_path, files=[]), "/v1/events",
                  {"id": "1", "timestamp": "2024-05-01T00:00:00Z", "text": "$ACME beats estimates"},
                  "tuneforge_finance_items_total", "text")


def _recommender(request, tmp_path) -> Served:
    folder, _ = request.getfixturevalue("tiny_recommender")
    return Served("recommender", folder, "/v1/recommend", {"taste": "a funny comedy", "k": 3},
                  "tuneforge_recommender_recommendations_total", "taste")


def _scaffolded(request, tmp_path) -> Served:
    module, task, bundle = request.getfixturevalue("scaffolded")
    request.getfixturevalue("plugin")(module, module.__name__)
    # the scaffold's app keeps no counter of its own: its route shows up in core's labelled counter
    return Served(task, bundle, "/v1/route", {"text": "I was charged twice"},
                  'tuneforge_http_requests_total{path="/v1/route",status="200"}', "text")


APPS = {"support-bot": _support_bot, "finance-monitor": _finance_monitor, "recommender": _recommender,
        "scaffolded-plugin": _scaffolded}


@pytest.mark.parametrize("which", list(APPS))
def test_app_is_served_by_core_with_auth_limits_errors_health_metrics_and_openapi(which, request, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.serve import ServerLimits, build_server

    app = APPS[which](request, tmp_path)
    server = build_server(app.name, app_path=str(app.app_path), token=TOKEN,
                          limits=ServerLimits(max_body_bytes=BODY_LIMIT))
    with TestClient(server) as client:
        # readiness: the warm-up prediction ran; no token needed
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["app"] == app.name

        # the main route: 401 in core's error shape without the token, 200 with it
        refused = client.post(app.route, json=app.body)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "unauthorized" and refused.json()["error"]["message"]
        answered = client.post(app.route, json=app.body, headers=AUTH)
        assert answered.status_code == 200, answered.text
        assert isinstance(answered.json(), dict) and answered.json()

        # /metrics: behind the token, Prometheus text with core's counters and the app's own
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers=AUTH)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert f'tuneforge_http_requests_total{{path="{app.route}",status="200"}} 1.0' in metrics.text
        assert app.counter in metrics.text, f"{app.counter} missing from /metrics"

        # bodies past the limit: 413 with or without Content-Length (chunked); auth still comes first
        big = json.dumps({**app.body, app.big_field: "a" * (BODY_LIMIT + 100)}).encode()
        for label, content in (("sized", big), ("chunked", iter([big[:1000], big[1000:]]))):
            r = client.post(app.route, content=content, headers={**AUTH, "Content-Type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]["type"] == "too_large", (label, r.text)
        r = client.post(app.route, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 401, "an unauthenticated body must not be read"

        # malformed JSON: 400; not JSON at all: 415 -- both in the error shape
        r = client.post(app.route, content=b'{"oops": ', headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json", r.text
        r = client.post(app.route, content=b"text=hello", headers={**AUTH, "Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type", r.text

        # the server kept working
        assert client.post(app.route, json=app.body, headers=AUTH).status_code == 200

        # OpenAPI: every POST documents its body; every 4xx answer is ErrorBody
        schema = client.get("/openapi.json", headers=AUTH).json()
    assert "ErrorBody" in schema["components"]["schemas"]
    posts = {path: ops["post"] for path, ops in schema["paths"].items() if "post" in ops}
    assert app.route in posts
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if method == "post":
                assert op.get("requestBody", {}).get("content", {}).get("application/json"), \
                    f"POST {path} documents no JSON request body"
            fours = {code: r for code, r in op["responses"].items() if code.startswith("4")}
            assert "401" in fours or path == "/healthz", f"{method.upper()} {path} does not document 401"
            for code, response in fours.items():
                assert response["content"]["application/json"]["schema"] == error_ref, \
                    f"{method.upper()} {path} {code} is not ErrorBody"
