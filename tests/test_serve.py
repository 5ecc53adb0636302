"""HTTP service: predict, health, metrics, auth, limits and one error format."""

from __future__ import annotations

import json
import threading

import pytest
from _bundle_helpers import make_run
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tuneforge.export import export_run
from tuneforge.runtime import Predictor
from tuneforge.serve import create_app, parse_request

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
def client(predictor):
    plugin = APIRouter()

    @plugin.get("/v1/echo")
    def echo(q: str = "hi"):
        return {"echo": q}

    app = create_app(predictor, token=TOKEN, max_batch=8, max_text_chars=200,
                     max_body_bytes=4000, routes=[plugin])
    with TestClient(app) as c:  # runs the lifespan: the batcher starts and stops with it
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


def test_model_info_and_plugin_routes_need_the_token(client):
    assert client.get("/v1/model").status_code == 401
    info = client.get("/v1/model", headers=AUTH).json()
    assert set(info["labels"]) == LABELS and info["kind"] == "classification"
    assert client.get("/v1/echo", params={"q": "x"}).status_code == 401
    assert client.get("/v1/echo", params={"q": "x"}, headers=AUTH).json() == {"echo": "x"}


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
    ("not-utf8", {"content": b"\xff\xfe{}"}, 400, "invalid_json", "not valid JSON"),
    ("body-too-big", {"json": {"texts": ["word " * 30] * 30}}, 413, "too_large", "limit is 4000"),
    ("chunked-too-big", {"content": iter([b'{"texts": ["', b"a" * 3000, b"a" * 3000, b'"]}'])},
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


def test_concurrent_requests_are_micro_batched(client):
    results = []

    def post(i):
        r = client.post("/v1/predict", json={"texts": [f"request {i}", "card"]}, headers=AUTH)
        results.append(r.status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8


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
    assert _sample(text, 'tuneforge_http_request_duration_seconds_bucket{path="/v1/predict",'
                         'le="+Inf"}') >= 3
    assert _sample(text, "tuneforge_batch_size_count") >= 1
    assert _sample(text, "tuneforge_predictions_total") == _sample(text, "tuneforge_batch_size_sum")
    assert 'tuneforge_model_info{model="tiny-classification/v1",variant="fp32"' in text


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in metrics:\n{text}")


def test_no_token_configured_means_open(predictor):
    client = TestClient(create_app(predictor))
    r = client.post("/v1/predict", json={"text": "hello"})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in LABELS


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
