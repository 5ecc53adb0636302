"""HTTP service: predict, health, metrics, auth, limits and one error format."""

from __future__ import annotations

import json
import threading

import pytest
from _bundle_helpers import make_run
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tuneforge import hookimpl
from tuneforge.export import export_run
from tuneforge.plugin_manager import get_plugin_manager
from tuneforge.runtime import Predictor
from tuneforge.serve import ServerLimits, build_server, parse_request

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LABELS = {"card", "payment", "account"}


@pytest.fixture(scope="module")
def predictor(tiny_encoder_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    run = make_run(root / "runs", tiny_encoder_dir, "classification", n_rows=16)
    bundle = export_run(run, out_dir=root / "exports", variants=["fp32"], measure=False)
    return Predictor.load(bundle)


@pytest.fixture(scope="module")
def bundle_dir(predictor):
    return str(predictor.root)


class EchoPlugin:
    """A plugin adding a route to every server through tuneforge_register_routes."""

    seen: list = []

    @hookimpl
    def tuneforge_register_routes(self, register, app):
        self.seen.append(app.name)
        router = APIRouter()

        @router.get("/v1/echo")
        def echo(q: str = "hi"):
            return {"echo": q, "app": app.name}

        register(router)


@pytest.fixture(scope="module")
def client(bundle_dir):
    pm = get_plugin_manager()
    plugin = EchoPlugin()
    pm.register(plugin, name="echo-test")
    try:
        app = build_server(bundle_dir, token=TOKEN,
                           limits=ServerLimits(max_batch=8, max_text_chars=200, max_body_bytes=4000))
    finally:
        pm.unregister(plugin)
    with TestClient(app) as c:  # runs the lifespan: warm-up, the batcher starts and stops with it
        yield c


def good_request_works(client):
    r = client.post("/v1/predict", json={"texts": ["where is my card"]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in LABELS


def test_predict(client, predictor):
    texts = ["where is my card", "hello", "why was I charged a fee for withdrawing cash"]
    r = client.post("/v1/predict", json={"texts": texts}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == predictor.manifest.model_id and body["model"].endswith("/v1")
    assert (body["variant"], body["provider"]) == ("fp32", "CPUExecutionProvider")
    assert [p["label"] for p in body["predictions"]] == [x.label for x in predictor.predict(texts)]
    assert all(set(p["scores"]) == LABELS for p in body["predictions"])
    single = client.post("/v1/predict", json={"text": "where is my card"}, headers=AUTH).json()
    assert len(single["predictions"]) == 1
    assert single["predictions"][0]["label"] == body["predictions"][0]["label"]


def test_healthz_needs_no_token(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["variant"] == "fp32"


def test_hook_register_routes(client):
    """A plugin's tuneforge_register_routes adds its router to the server, behind the token."""
    assert "bundle" in EchoPlugin.seen
    assert client.get("/v1/echo", params={"q": "x"}).status_code == 401
    assert client.get("/v1/echo", params={"q": "x"}, headers=AUTH).json() == {"echo": "x", "app": "bundle"}


def test_model_info_and_plugin_routes_need_the_token(client):
    assert client.get("/v1/model").status_code == 401
    info = client.get("/v1/model", headers=AUTH).json()
    assert set(info["labels"]) == LABELS and info["kind"] == "classification"


BAD_REQUESTS = [
    # (id, kwargs for client.post, status, error type, words in the message)
    ("empty-list", {"json": {"texts": []}}, 422, "invalid_request", '"texts" is empty'),
    ("empty-text", {"json": {"texts": ["ok", "  "]}}, 422, "invalid_request", "texts[1] is empty"),
    ("empty-single", {"json": {"text": ""}}, 422, "invalid_request", "text is empty"),
    ("not-a-list", {"json": {"texts": "abc"}}, 422, "invalid_request", "must be a list"),
    ("wrong-type", {"json": {"texts": ["ok", 5]}}, 422, "invalid_request",
     "texts[1] must be a string, got int"),
    ("no-texts", {"json": {"txts": ["typo"]}}, 422, "invalid_request", "unknown field(s) txts"),
    ("both", {"json": {"text": "a", "texts": ["b"]}}, 422, "invalid_request", "exactly one"),
    ("array-body", {"json": ["a"]}, 422, "invalid_request", "JSON object"),
    ("pairs-mismatch", {"json": {"texts": ["a", "b"], "text_pairs": ["x"]}}, 422,
     "invalid_request", "one string per text"),
    ("malformed-json", {"content": b'{"texts": ["a"', "headers": {"content-type":
                                                                   "application/json"}},
     400, "invalid_json", "not valid JSON"),
    ("not-utf8", {"content": b"\xff\xfe{}", "headers": {"content-type": "application/json"}}, 400,
     "invalid_json", "not UTF-8"),
    ("not-json-type", {"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}}, 415,
     "unsupported_media_type", "application/json"),
    ("lone-surrogate", {"content": b'{"texts": ["\\ud800"]}', "headers": {"content-type": "application/json"}},
     400, "invalid_json", "surrogate"),
    ("deep-nesting", {"content": b"[" * 1500 + b"]" * 1500, "headers": {"content-type": "application/json"}},
     400, "invalid_json", "nested too deeply"),
    ("body-too-big", {"json": {"texts": ["word " * 30] * 30}}, 413, "too_large", "limit is 4000"),
    ("chunked-too-big", {"content": iter([b'{"texts": ["', b"a" * 3000, b"a" * 3000, b'"]}']),
                         "headers": {"content-type": "application/json"}},
     413, "too_large", "over 4000 bytes"),
    ("too-many-texts", {"json": {"texts": ["a"] * 9}}, 413, "too_large", "limit is 8"),
    ("text-too-long", {"json": {"texts": ["a" * 201]}}, 413, "too_large", "201 characters"),
]


@pytest.mark.parametrize("kwargs,status,etype,words", [b[1:] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_one_clear_error_and_the_server_keeps_working(client, kwargs, status,
                                                                      etype, words):
    headers = {**AUTH, **kwargs.pop("headers", {})}
    r = client.post("/v1/predict", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == etype and words in err["message"], err
    good_request_works(client)


@pytest.mark.parametrize("headers,words", [
    ({}, "Authorization: Bearer <token>"),
    ({"Authorization": "Bearer wrong"}, "wrong bearer token"),
    ({"Authorization": f"Basic {TOKEN}"}, "wrong bearer token"),
])
def test_missing_or_wrong_token_is_401(client, headers, words):
    r = client.post("/v1/predict", json={"texts": ["hi"]}, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "unauthorized" and words in r.json()["error"]["message"]
    good_request_works(client)


def test_unknown_route_and_method_use_the_error_format(client):
    r = client.get("/v2/nothing", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = client.get("/v1/predict", headers=AUTH)
    assert r.status_code == 405 and "error" in r.json()


def test_concurrent_requests_are_micro_batched(bundle_dir, predictor):
    app = build_server(bundle_dir, limits=ServerLimits(max_batch=64, batch_wait_ms=200))
    texts = {i: [f"request {i}", "card"] for i in range(8)}
    results, barrier = {}, threading.Barrier(8)
    with TestClient(app) as c:
        def post(i):
            barrier.wait()
            results[i] = c.post("/v1/predict", json={"texts": texts[i]})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = c.get("/metrics").text
    assert all(r.status_code == 200 for r in results.values())
    for i, r in results.items():      # each request got its own texts' predictions back
        assert [p["label"] for p in r.json()["predictions"]] == [x.label for x in predictor.predict(texts[i])]
    batches = _sample(metrics, "tuneforge_batch_size_count")
    assert _sample(metrics, "tuneforge_predictions_total") == 16
    assert batches < 8, f"8 concurrent requests ran as {batches} model calls: not batched"
    assert _sample(metrics, 'tuneforge_batch_size_bucket{le="2.0"}') < batches, "no batch held two requests"


def test_metrics_are_prometheus_text_with_counters(client):
    good_request_works(client)
    client.post("/v1/predict", json={"texts": []}, headers=AUTH)
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE tuneforge_http_requests_total counter" in text
    count = _sample(text, 'tuneforge_http_requests_total{path="/v1/predict",status="200"}')
    assert count >= 2
    assert _sample(text, 'tuneforge_http_requests_total{path="/v1/predict",status="422"}') >= 1
    assert _sample(text, 'tuneforge_http_request_duration_seconds_count{path="/v1/predict"}') >= 3
    assert _sample(text, 'tuneforge_http_request_duration_seconds_bucket{le="+Inf",path="/v1/predict"}') >= 3
    assert _sample(text, "tuneforge_batch_size_count") >= 1
    assert _sample(text, "tuneforge_predictions_total") == _sample(text, "tuneforge_batch_size_sum")
    assert 'tuneforge_app_info{app="bundle",model="tiny-classification/v1"' in text
    assert _sample(text, "tuneforge_ready") == 1.0


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in metrics:\n{text}")


def test_no_token_configured_means_open(bundle_dir):
    with TestClient(build_server(bundle_dir)) as client:
        r = client.post("/v1/predict", json={"text": "hello"})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in LABELS


def test_integers_past_pythons_digit_limit_are_a_400_not_a_500():
    from tuneforge.serve import _json_problem

    answer = _json_problem("application/json", b'{"texts": ' + b"9" * 4400 + b"}")
    assert answer.status_code == 400 and b"not valid JSON" in answer.body
    assert _json_problem("application/json; charset=utf-8", b'{"texts": ["ok"]}') is None


def test_parse_request_pairs():
    texts, pairs = parse_request({"texts": ["a", "b"], "text_pairs": ["c", "d"]}, max_batch=4,
                                 max_text_chars=10)
    assert (texts, pairs) == (["a", "b"], ["c", "d"])
    assert parse_request({"text": "a", "text_pair": "b"}, max_batch=1,
                         max_text_chars=10) == (["a"], ["b"])
    with pytest.raises(Exception, match="text pairs"):
        parse_request({"texts": ["a"]}, max_batch=4, max_text_chars=10, needs_pairs=True)
    assert json.dumps(parse_request({"text": "ok"}, max_batch=1, max_text_chars=5)) == \
        '[["ok"], null]'


def test_docs_can_be_put_behind_the_token(bundle_dir):
    with TestClient(build_server(bundle_dir, token=TOKEN)) as client:
        assert client.get("/openapi.json").status_code == 200          # public by default
    with TestClient(build_server(bundle_dir, token=TOKEN, docs_public=False)) as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 401
        assert client.get("/openapi.json", headers=AUTH).json()["paths"]["/v1/predict"]["post"]["requestBody"]
        assert client.get("/healthz").status_code == 200                # readiness stays open


def test_empty_token_is_refused_by_the_library_too(bundle_dir):
    with pytest.raises(Exception, match="token is empty"):
        build_server(bundle_dir, token="  ")
