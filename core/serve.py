"""One HTTP server for every app and for a bare bundle (FastAPI on uvicorn).

:func:`create_server` serves a :class:`tuneforge.application.LoadedApp` -- a bundle
(:func:`bundle_app`: ``POST /v1/predict``, ``GET /v1/model``) or a plugin's app (its routers)
-- with what every app shares:

``GET /healthz``   readiness: 200 once the app's warm-up prediction succeeded at start, else 503
                   with the reason (never needs the token)
``GET /metrics``   Prometheus text: requests by path and status, latency, in-flight requests,
                   batch sizes, plus the app's own counters
auth               ``Authorization: Bearer <token>`` checked from the headers, before any body
                   byte is read (401)
limits             bodies over ``max_body_bytes`` refused while they are read, chunked or not
                   (413); a body that does not arrive in ``body_timeout_s`` (408); more than
                   ``max_in_flight`` requests at once (503 + Retry-After); POST bodies must be
                   JSON (415) and valid UTF-8 JSON (400)
errors             always ``{"error": {"message", "type"}}``; no traceback or server path leaks
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .application import LoadedApp
from .errors import TuneforgeError, UsageError
from .runtime.batching import Batcher

# A text with at least one character that is not white space -- spelled out so that every regex
# engine that reads the OpenAPI pattern (Python's, ECMAScript's, Rust's in pydantic) agrees with
# is_blank(): their \s differ on U+001C..U+001F, U+0085 and U+FEFF.
NON_BLANK = r"[^\s\u001c-\u001f\u0085\ufeff]"
_NON_BLANK = re.compile(NON_BLANK)


def is_blank(text: str) -> bool:
    """True when ``text`` has nothing but white space (the rule behind :data:`NON_BLANK`)."""
    return _NON_BLANK.search(text) is None

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_FIELDS = {"text", "texts", "text_pair", "text_pairs"}
PUBLIC_PATHS = frozenset({"/healthz"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type"}}`` with ``status``."""

    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error the server answers."""

    error: ErrorDetail


def _error(status: int, type_: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_}}, status_code=status,
                        headers=headers)


@dataclass
class ServerLimits:
    """What one request may cost.  Validated: every limit is positive."""

    max_body_bytes: int = 1_000_000
    max_in_flight: int = 64
    body_timeout_s: float = 15.0
    max_batch: int = 64
    max_text_chars: int = 10_000
    batch_wait_ms: float = 2.0

    def __post_init__(self):
        for name in ("max_body_bytes", "max_in_flight", "max_batch", "max_text_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"server limit {name} must be a whole number >= 1, got {value!r}")
        for name in ("body_timeout_s", "batch_wait_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 3600:
                raise UsageError(f"server limit {name} must be between 0 and 3600, got {value!r}")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ServerMetrics:
    """The server's Prometheus metrics, in the app's own registry (prometheus_client)."""

    def __init__(self, registry):
        from prometheus_client import Counter, Gauge, Histogram

        self.registry = registry
        self.requests = Counter("tuneforge_http_requests", "HTTP requests by path and status code.",
                                ["path", "status"], registry=registry)
        self.latency = Histogram("tuneforge_http_request_duration_seconds", "Request latency.", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.in_flight = Gauge("tuneforge_http_in_flight_requests", "Requests being served now.",
                               registry=registry)
        self.rejected = Counter("tuneforge_http_rejected", "Requests refused before routing, by reason.",
                                ["reason"], registry=registry)
        self.batches = Histogram("tuneforge_batch_size", "Texts per model call (micro-batches).",
                                 buckets=BATCH_BUCKETS, registry=registry)
        self.predictions = Counter("tuneforge_predictions", "Texts predicted.", registry=registry)
        self.ready = Gauge("tuneforge_ready", "1 once the warm-up prediction succeeded.", registry=registry)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batches.observe(size)
        self.predictions.inc(size)

    def render(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode("utf-8")


def new_registry():
    from prometheus_client import CollectorRegistry

    return CollectorRegistry(auto_describe=True)


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
            if is_blank(t):
                raise bad(f"{where} is empty")
            if len(t) > max_text_chars:
                raise APIError(413, "too_large", f"{where} has {len(t)} characters; the limit "
                                                 f"is {max_text_chars}")
    if needs_pairs and pairs is None:
        raise bad(f"this model scores text pairs: send {names[1]} with {names[0]}")
    return texts, pairs


def server_metrics(registry) -> ServerMetrics:
    """The :class:`ServerMetrics` of ``registry`` (made once per registry)."""
    existing = getattr(registry, "_tuneforge_server_metrics", None)
    if existing is None:
        existing = ServerMetrics(registry)
        registry._tuneforge_server_metrics = existing
    return existing


class Guard:
    """ASGI middleware: auth, in-flight limit, body size/time/type checks -- before routing.

    The body is read here, bounded by ``max_body_bytes`` whether or not it is chunked, and
    replayed to the app; nothing reads an unauthenticated body.
    """

    def __init__(self, app, *, token: str | None, limits: ServerLimits, metrics: ServerMetrics,
                 public: frozenset):
        self.app, self.token, self.limits, self.metrics, self.public = app, token, limits, metrics, public
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_observed(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse_early(scope)
            if refusal is not None:
                return await refusal(scope, receive, send_observed)
            self.in_flight += 1
            self.metrics.in_flight.inc()
            try:
                if scope["method"] in BODY_METHODS:
                    body = await self._read_body(scope, receive)
                    if isinstance(body, JSONResponse):
                        return await body(scope, receive, send_observed)
                    if body is None:          # the client went away
                        return None
                    receive = _replay(body, receive)
                await self.app(scope, receive, send_observed)
            finally:
                self.in_flight -= 1
                self.metrics.in_flight.dec()
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(path, status["code"], time.perf_counter() - start)

    def _refuse_early(self, scope) -> JSONResponse | None:
        path = scope["path"]
        if self.token is not None and path not in self.public:
            header = _header(scope, b"authorization")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given.strip() or not hmac.compare_digest(
                    given.strip().encode("utf-8", "replace"), self.token.encode("utf-8")):
                self.metrics.rejected.labels("unauthorized").inc()
                return _error(401, "unauthorized", "missing or wrong bearer token" if header else
                              "this server needs 'Authorization: Bearer <token>'",
                              headers={"WWW-Authenticate": "Bearer"})
        if self.in_flight >= self.limits.max_in_flight and path not in PUBLIC_PATHS:
            self.metrics.rejected.labels("busy").inc()
            return _error(503, "busy", f"{self.in_flight} requests in flight, the limit is "
                                       f"{self.limits.max_in_flight}: retry shortly", headers={"Retry-After": "1"})
        return None

    async def _read_body(self, scope, receive) -> bytes | JSONResponse | None:
        limit = self.limits.max_body_bytes
        length = _header(scope, b"content-length")
        if length:
            if not length.isdigit():
                return _error(400, "bad_request", "Content-Length is not a number")
            if int(length) > limit:
                self.metrics.rejected.labels("too_large").inc()
                return _error(413, "too_large", f"request body of {length} bytes; the limit is {limit}")
        chunks, total = [], 0
        deadline = time.monotonic() + self.limits.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                self.metrics.rejected.labels("slow_body").inc()
                return _error(408, "timeout", f"the request body did not arrive within "
                                              f"{self.limits.body_timeout_s:g} s")
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                self.metrics.rejected.labels("too_large").inc()
                return _error(413, "too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            problem = _json_problem(_header(scope, b"content-type"), body)
            if problem is not None:
                return problem
        return body


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _json_problem(content_type: str, body: bytes) -> JSONResponse | None:
    """None if ``body`` is JSON the routes can use, else the 4xx answer."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return _error(415, "unsupported_media_type",
                      f"send JSON with 'Content-Type: application/json' (got {media or 'no content type'!r})")
    try:
        payload = json.loads(body.decode("utf-8"))
        json.dumps(payload, ensure_ascii=False).encode("utf-8")   # lone surrogates cannot be encoded
    except UnicodeDecodeError as exc:
        return _error(400, "invalid_json", f"the body is not UTF-8 (byte {exc.start})")
    except UnicodeEncodeError:
        return _error(400, "invalid_json", "the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    except RecursionError:
        return _error(400, "invalid_json", "the body is nested too deeply")
    except ValueError as exc:     # JSONDecodeError, and integers over Python's digit limit
        message = str(exc).split(":")[0] if isinstance(exc, json.JSONDecodeError) else str(exc).split(";")[0]
        return _error(400, "invalid_json", f"the body is not valid JSON: {message}")
    return None


def create_server(loaded: LoadedApp, *, registry, token: str | None = None, limits: ServerLimits | None = None,
                  routers=(), docs_public: bool = True) -> FastAPI:
    """The FastAPI app serving ``loaded`` (+ ``routers`` from other plugins' route hooks)."""
    if token is not None and not token.strip():
        raise UsageError("the token is empty", hint="give a real token, or none for a loopback-only server")
    limits = limits or ServerLimits()
    metrics = server_metrics(registry)
    state = {"ready": False, "reason": "starting"}
    from prometheus_client import Info

    Info("tuneforge_app", "The app being served.", registry=registry).info(
        {"app": loaded.name, **{k: str(v) for k, v in loaded.info.items()}})

    @asynccontextmanager
    async def lifespan(app):
        from starlette.concurrency import run_in_threadpool

        if loaded.worker is not None:
            loaded.worker.start()
        try:
            if loaded.warmup is not None:
                await run_in_threadpool(loaded.warmup)
            state.update(ready=True, reason=None)
            metrics.ready.set(1)
        except Exception as exc:  # noqa: BLE001 - readiness says it; the log has the details
            log.error("%s: warm-up prediction failed: %s: %s", loaded.name, type(exc).__name__, exc)
            state["reason"] = f"warm-up prediction failed ({type(exc).__name__}); see the server log"
        try:
            yield
        finally:
            if loaded.worker is not None:
                loaded.worker.stop()
            if loaded.close is not None:
                loaded.close()

    title = f"tuneforge {loaded.name}" + (f" ({loaded.info['model']})" if "model" in loaded.info else "")
    app = FastAPI(title=title, lifespan=lifespan)
    app.state.loaded, app.state.metrics, app.state.limits = loaded, metrics, limits
    app.state.readiness = state          # read by the Ray Serve health check (tuneforge.ray_serve)
    public = PUBLIC_PATHS | frozenset(loaded.public_paths) | (DOC_PATHS if docs_public else frozenset())
    app.add_middleware(Guard, token=token, limits=limits, metrics=metrics, public=public)
    _error_handlers(app)

    @app.get("/healthz", responses={503: {"model": ErrorBody}})
    def healthz():
        """Readiness: ok once the warm-up prediction succeeded (no token needed)."""
        body = {"status": "ok" if state["ready"] else "unavailable", "app": loaded.name, **loaded.info}
        if state["ready"]:
            return body
        return JSONResponse({**body, "error": {"message": state["reason"], "type": "not_ready"}}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus():
        """Prometheus text format: HTTP, batching and the app's own counters."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    for router in [*loaded.routers, *routers]:
        app.include_router(router)
    _document_errors(app)
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return _error(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "body"
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(TuneforgeError)
    async def _usage(request, exc: TuneforgeError):
        return _error(422, "invalid_request", _no_paths(exc.one_line()))

    @app.exception_handler(Exception)
    async def _internal(request, exc):
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", "internal server error")


def _no_paths(text: str) -> str:
    """Server-side file paths out of a message meant for a remote client."""
    import re

    return re.sub(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*", "<path>", text)


def _document_errors(app: FastAPI) -> None:
    """OpenAPI with the real error body (``{"error": {...}}``) instead of FastAPI's default."""
    from fastapi.openapi.utils import get_openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version="1", routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in components["ErrorBody"].pop("$defs", {}).items():
            components[name] = sub
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, ops in schema.get("paths", {}).items():
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                codes = {"401": "missing or wrong bearer token", "503": "busy or not ready"}
                if path in PUBLIC_PATHS:
                    codes.pop("401")
                if method.upper() in BODY_METHODS:
                    codes.update({"400": "not valid JSON", "408": "body too slow", "413": "body too large",
                                  "415": "not JSON", "422": "a well-formed request that is wrong"})
                for code, text in codes.items():
                    responses[code] = {"description": text, "content": ref}
                for code, response in responses.items():
                    if code.startswith(("4", "5")):
                        response["content"] = ref
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


# -- a bundle as an app --------------------------------------------------------------------
WARMUP_TEXT = "hello"


def predict_schema(limits: ServerLimits, needs_pairs: bool) -> dict:
    """The JSON schema of a ``/v1/predict`` body, exactly what :func:`parse_request` accepts."""
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars, "pattern": NON_BLANK}
    many = {"type": "array", "items": text, "minItems": 1, "maxItems": limits.max_batch}
    batch = {"type": "object", "additionalProperties": False, "required": ["texts"],
             "properties": {"texts": many, "text_pairs": many}}
    single = {"type": "object", "additionalProperties": False, "required": ["text"],
              "properties": {"text": text, "text_pair": text}}
    if needs_pairs:
        batch["required"], single["required"] = ["texts", "text_pairs"], ["text", "text_pair"]
    else:
        batch["properties"].pop("text_pairs")
        single["properties"].pop("text_pair")
    return {"oneOf": [batch, single], "examples": [{"texts": ["my card has not arrived"]}]}


def predict_router(predictor, task, batcher: Batcher, limits: ServerLimits):
    """``POST /v1/predict`` (micro-batched, plugin post-processing applied) and ``GET /v1/model``."""
    from fastapi import APIRouter

    from .tasks import postprocess

    router = APIRouter(tags=["model"])
    ident = {"model": predictor.manifest.model_id, "variant": predictor.variant, "provider": predictor.provider}
    schema = predict_schema(limits, bool(getattr(predictor, "needs_pairs", False)))

    @router.post("/v1/predict", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": schema}}}})
    async def predict(request: Request):
        """Predict one text (``text``) or many (``texts``); concurrent requests share model calls."""
        try:
            payload = json.loads(await request.body())
        except ValueError:
            raise APIError(400, "invalid_json", "the body is not valid JSON") from None
        texts, pairs = parse_request(payload, max_batch=limits.max_batch, max_text_chars=limits.max_text_chars,
                                     needs_pairs=bool(getattr(predictor, "needs_pairs", False)))
        preds = await asyncio.wrap_future(batcher.submit(texts, pairs))
        return {"predictions": postprocess(task, texts, preds), **ident}

    @router.get("/v1/model")
    def model_info():
        """What is loaded: model id, variant, provider, labels."""
        return {**predictor.info(), "labels": list(predictor.manifest.labels)}

    return router


def bundle_app(path: str | Path, registry, *, variant: str | None = None, limits: ServerLimits | None = None,
               trust=None) -> LoadedApp:
    """A bundle folder as an app: ``/v1/predict`` and ``/v1/model`` over a micro-batching runtime."""
    from .runtime import Predictor
    from .tasks import all_tasks, postprocess

    limits = limits or ServerLimits()
    predictor = Predictor.load(path, variant=variant, **({"trust": trust} if trust is not None else {}))
    task = all_tasks().get(predictor.task)
    metrics = server_metrics(registry)
    batcher = Batcher(lambda texts, pairs: predictor.predict(texts, pairs), max_batch=limits.max_batch,
                      max_wait_ms=limits.batch_wait_ms, on_batch=metrics.observe_batch)
    pairs = [WARMUP_TEXT] if getattr(predictor, "needs_pairs", False) else None

    def warmup():
        postprocess(task, [WARMUP_TEXT], predictor.predict([WARMUP_TEXT], pairs))

    ident = {"model": predictor.manifest.model_id, "variant": predictor.variant, "provider": predictor.provider}
    return LoadedApp(name="bundle", routers=[predict_router(predictor, task, batcher, limits)], warmup=warmup,
                     worker=batcher, info=ident, predictor=predictor, task=task)


def build_server(target: str, *, app_path: str | None = None, token: str | None = None,
                 limits: ServerLimits | None = None, variant: str | None = None, docs_public: bool = True,
                 trust=None, app_options: dict | None = None) -> FastAPI:
    """What ``tuneforge serve TARGET`` serves: a bundle folder, or the app named ``target``
    (``app_options`` reach its ``AppContext.options``, e.g. ``{"store": URL}``).

    Every loaded plugin's ``tuneforge_register_routes`` hook may add routers to it.
    """
    from .application import all_apps, load_app
    from .errors import BundleError
    from .export.bundle import resolve_bundle_dir
    from .plugin_manager import call_each

    registry = new_registry()
    limits = limits or ServerLimits()
    is_app = app_path is not None or (target in all_apps() and "/" not in target)
    if not is_app and Path(target).is_dir():
        try:
            resolve_bundle_dir(target)
        except BundleError:
            is_app = target in all_apps()
            if not is_app:
                raise
    if not is_app and not Path(target).is_dir() and ("/" in target or target.startswith(".")):
        raise UsageError(f"{target}: no such bundle folder", hint="give exports/<name>/<version> or an app name")
    is_app = is_app or not Path(target).exists()
    if is_app:
        loaded = load_app(target, app_path, registry, limits=limits, trust=trust, **(app_options or {}))
    else:
        loaded = bundle_app(target, registry, variant=variant, limits=limits, trust=trust)
    extra: list = []
    call_each("tuneforge_register_routes", lambda plugin: {"register": extra.append, "app": loaded})
    return create_server(loaded, registry=registry, token=token, limits=limits, routers=extra,
                         docs_public=docs_public)


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options) -> None:
    """Serve ``app`` with uvicorn (blocks).  Idle keep-alive connections close after 5 s."""
    import uvicorn

    limits = getattr(app.state, "limits", ServerLimits())
    options = {"timeout_keep_alive": 5, "limit_concurrency": max(4 * limits.max_in_flight, 256),
               "log_level": "info", **uvicorn_options}
    uvicorn.run(app, host=host, port=port, **options)


class ServerThread:
    """A server on a background thread (an app that runs its own loop in the foreground)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=5,
                                **uvicorn_options)
        self.server = uvicorn.Server(config)
        self.port = port
        self.thread = threading.Thread(target=self.server.run, name="tuneforge-server", daemon=True)

    def start(self, wait_s: float = 10.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + wait_s
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
