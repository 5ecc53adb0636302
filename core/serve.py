"""HTTP service for a loaded :class:`tuneforge.runtime.Predictor` (FastAPI).

``POST /v1/predict``  ``{"texts": [...]}`` or ``{"text": "..."}`` (+ ``text_pairs`` /
                      ``text_pair``) -> ``{"predictions", "model", "variant", "provider"}``
``GET /v1/model``     what is loaded
``GET /healthz``      liveness (never needs the token)
``GET /metrics``      Prometheus text: requests by path/status, latency, batch sizes

Concurrent requests are micro-batched (:class:`tuneforge.runtime.Batcher`).  Every
error is ``{"error": {"message", "type"}}``: 400 malformed JSON, 401 bad or missing
bearer token, 413 too large (body, texts per request, characters per text), 422 a
well-formed request that is wrong (empty list, empty text, wrong types, unknown fields).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import TuneforgeError
from .runtime.batching import Batcher

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_FIELDS = {"text", "texts", "text_pair", "text_pairs"}


class APIError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers


def _error(status: int, type_: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_}}, status_code=status,
                        headers=headers)


class Metrics:
    """Counters and histograms, rendered in the Prometheus text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, list] = {}          # path -> [bucket counts..., sum, count]
        self.batches = [0] * (len(BATCH_BUCKETS) + 2)  # buckets..., sum, count
        self.items = 0

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (path, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.latency.setdefault(path, [0] * (len(LATENCY_BUCKETS) + 2))
            _observe(h, LATENCY_BUCKETS, seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            _observe(self.batches, BATCH_BUCKETS, size)
            self.items += size

    def render(self, info: dict) -> str:
        with self._lock:
            out = ["# HELP tuneforge_http_requests_total HTTP requests by path and status code.",
                   "# TYPE tuneforge_http_requests_total counter"]
            out += [f'tuneforge_http_requests_total{{path="{p}",status="{s}"}} {n}'
                    for (p, s), n in sorted(self.requests.items())]
            out += ["# HELP tuneforge_http_request_duration_seconds Request latency.",
                    "# TYPE tuneforge_http_request_duration_seconds histogram"]
            for path, h in sorted(self.latency.items()):
                out += _histogram("tuneforge_http_request_duration_seconds", f'path="{path}",',
                                  LATENCY_BUCKETS, h)
            out += ["# HELP tuneforge_batch_size Texts per model call (micro-batches).",
                    "# TYPE tuneforge_batch_size histogram"]
            out += _histogram("tuneforge_batch_size", "", BATCH_BUCKETS, self.batches)
            out += ["# HELP tuneforge_predictions_total Texts predicted.",
                    "# TYPE tuneforge_predictions_total counter",
                    f"tuneforge_predictions_total {self.items}",
                    "# HELP tuneforge_model_info The loaded model.",
                    "# TYPE tuneforge_model_info gauge",
                    "tuneforge_model_info{" + ",".join(
                        f'{k}="{_esc(v)}"' for k, v in info.items()) + "} 1"]
        return "\n".join(out) + "\n"


def _observe(h: list, buckets, value: float) -> None:
    for i, bound in enumerate(buckets):
        if value <= bound:
            h[i] += 1
    h[-2] += value
    h[-1] += 1


def _histogram(name: str, labels: str, buckets, h: list) -> list[str]:
    lines = [f'{name}_bucket{{{labels}le="{b}"}} {h[i]}' for i, b in enumerate(buckets)]
    lines.append(f'{name}_bucket{{{labels}le="+Inf"}} {h[-1]}')
    lab = "{" + labels.rstrip(",") + "}" if labels else ""
    return lines + [f"{name}_sum{lab} {h[-2]}", f"{name}_count{lab} {h[-1]}"]


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def parse_request(payload, *, max_batch: int, max_text_chars: int,
                  needs_pairs: bool = False) -> tuple[list[str], list[str] | None]:
    """Validate a predict body; returns (texts, text_pairs) or raises :class:`APIError`."""
    def bad(msg):
        return APIError(422, "invalid_request", msg)

    if not isinstance(payload, dict):
        raise bad('the body must be a JSON object like {"texts": ["..."]}')
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}; use texts (or text) and text_pairs")
    if ("text" in payload) == ("texts" in payload):
        raise bad('give exactly one of "texts": ["..."] or "text": "..."')
    single = "text" in payload
    if single:
        if "text_pairs" in payload:
            raise bad('use "text_pair" (a string) with "text"')
        texts = [payload["text"]]
        pairs = None if payload.get("text_pair") is None else [payload["text_pair"]]
        names = ("text", "text_pair")
    else:
        if "text_pair" in payload:
            raise bad('use "text_pairs" (a list) with "texts"')
        texts, pairs, names = payload["texts"], payload.get("text_pairs"), ("texts", "text_pairs")
        if not isinstance(texts, list):
            raise bad(f'"texts" must be a list of strings, got {type(texts).__name__}')
        if not texts:
            raise bad('"texts" is empty: send at least one text')
    if len(texts) > max_batch:
        raise APIError(413, "too_large", f"{len(texts)} texts in one request; the limit is "
                                         f"{max_batch}: split the request")
    for what, values in ((names[0], texts), (names[1], pairs)):
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != len(texts):
            raise bad(f'"{names[1]}" must be a list with one string per text')
        for i, t in enumerate(values):
            where = what if single else f"{what}[{i}]"
            if not isinstance(t, str):
                raise bad(f"{where} must be a string, got {type(t).__name__}")
            if not t.strip():
                raise bad(f"{where} is empty")
            if len(t) > max_text_chars:
                raise APIError(413, "too_large", f"{where} has {len(t)} characters; the limit "
                                                 f"is {max_text_chars}")
    if needs_pairs and pairs is None:
        raise bad(f"this model scores text pairs: send {names[1]} with {names[0]}")
    return texts, pairs


def create_app(predictor, *, token: str | None = None, max_batch: int = 64,
               max_text_chars: int = 10000, max_body_bytes: int = 1_000_000, routes=(),
               batch_wait_ms: float = 2.0) -> FastAPI:
    """The FastAPI app serving ``predictor``; ``routes``: extra APIRouters (plugins)."""
    metrics = Metrics()
    batcher = Batcher(lambda texts, pairs: predictor.predict(texts, pairs),
                      max_batch=max_batch, max_wait_ms=batch_wait_ms, on_batch=metrics.observe_batch)
    model_id = predictor.manifest.model_id
    ident = {"model": model_id, "variant": predictor.variant, "provider": predictor.provider}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title=f"tuneforge {model_id}", lifespan=lifespan)
    app.state.predictor, app.state.batcher, app.state.metrics = predictor, batcher, metrics

    def auth(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                token.encode()):
            raise APIError(401, "unauthorized",
                           "missing or wrong bearer token" if header else
                           "this server needs 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body_bytes:
            response = _error(413, "too_large", f"request body of {length} bytes; the limit is "
                                                f"{max_body_bytes}")
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - logged, answered as 500
                log.exception("unhandled error on %s", request.url.path)
                response = _error(500, "internal_error", "internal server error")
        route = request.scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        metrics.observe_request(path, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return _error(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error",
                      str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(TuneforgeError)
    async def _usage(request, exc: TuneforgeError):
        return _error(422, "invalid_request", exc.one_line())

    @app.post("/v1/predict", dependencies=[Depends(auth)])
    async def predict(request: Request):
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise APIError(413, "too_large", f"request body over {max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise APIError(400, "invalid_json", f"the body is not valid JSON: {e}") from None
        texts, pairs = parse_request(payload, max_batch=max_batch, max_text_chars=max_text_chars,
                                     needs_pairs=bool(getattr(predictor, "needs_pairs", False)))
        preds = await asyncio.wrap_future(batcher.submit(texts, pairs))
        return {"predictions": [p.to_dict() for p in preds], **ident}

    @app.get("/v1/model", dependencies=[Depends(auth)])
    def model_info():
        info = predictor.info()
        return {**info, "labels": list(predictor.manifest.labels)}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", **ident}

    @app.get("/metrics", dependencies=[Depends(auth)])
    def prometheus():
        return PlainTextResponse(metrics.render(ident),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    for router in routes:
        app.include_router(router, dependencies=[Depends(auth)])
    return app


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options) -> None:
    """Serve ``app`` with uvicorn (blocks)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, **uvicorn_options)
