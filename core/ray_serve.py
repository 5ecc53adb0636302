"""``tuneforge serve --engine ray``: the same app as the plain server, as a Ray Serve deployment.

Every replica builds its app through :func:`tuneforge.serve.build_server` with exactly the
keyword arguments the plain server would get (token, limits, variant, trust, and whatever app
options a later option adds), so routes, auth, limits, the error shape, ``/healthz``,
``/metrics`` and OpenAPI are the plain server's.  Ray Serve runs the app's lifespan (worker
start, warm-up prediction) before a replica takes traffic; its health check asks the app's own
readiness.  Ray is an optional extra, imported only here (:func:`require_ray`).

``/metrics`` with several replicas: each replica keeps its own Prometheus registry, and the
Ray proxy routes a scrape to one replica like any request -- a scrape sees that replica's
counters only.  Scrape Ray's own metrics endpoint (every node exports them) for cluster-wide
request counts; see docs/scale-out.md.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

APP_NAME = "tuneforge"
DEPLOYMENT = "TuneforgeReplica"
INSTALL_HINT = "pip install 'tuneforge[ray]'"


def require_ray():
    """``ray`` (with Serve and Data), or one clear line naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray Serve and Ray Data ({exc.name or 'ray'} is not installed)",
                         hint=INSTALL_HINT) from None
    return ray


class AnswerLostRequests:
    """ASGI middleware for Ray Serve's HTTP proxy: a request whose replica died before it answered
    (``kill -9``, a lost node) gets ``503`` + ``Retry-After`` in tuneforge's error shape instead of
    uvicorn's bare ``500 Internal Server Error``.  The request was not answered; for a POST it may or
    may not have taken effect, so clients retry it as a new request.  Installed in the proxy by
    Ray's ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` hook (:func:`proxy_middlewares`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if not started:
                await _send_lost(send)


async def _send_lost(send) -> None:
    body = json.dumps({"error": {"type": "unavailable", "message":
                                 "the replica serving this request stopped before it answered: "
                                 "retry (the request may or may not have taken effect)"}}).encode()
    try:
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # noqa: BLE001 - the client is gone too
        pass


def proxy_middlewares() -> list:
    """What Ray's proxy callback hook calls (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    from starlette.middleware import Middleware

    return [Middleware(AnswerLostRequests)]


PROXY_CALLBACK = "tuneforge.ray_serve:proxy_middlewares"


def parse_autoscale(value: str | None) -> tuple[int, int] | None:
    """``MIN:MAX`` -> (min, max); None stays None."""
    if value is None:
        return None
    lo, sep, hi = value.partition(":")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise UsageError(f"--autoscale {value!r}: give MIN:MAX replicas, e.g. 1:4")
    lo_n, hi_n = int(lo), int(hi)
    if hi_n < 1 or lo_n > hi_n:
        raise UsageError(f"--autoscale {value!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return lo_n, hi_n


@dataclass
class RayServeConfig:
    """How the deployment is laid out.  ``cpus_per_replica`` is the Ray CPU share each replica
    reserves (a scheduling reservation, not a thread limit): the default 0.5 lets two replicas
    plus Serve's proxy and controller fit on a 2-core machine."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    address: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    cpus_per_replica: float = 0.5
    max_ongoing_requests: int = 64       # per replica; set from --max-in-flight
    target_ongoing_requests: float = 2.0  # autoscaling: requests in flight per replica it aims at
    health_check_period_s: float = 5.0
    health_check_timeout_s: float = 10.0
    graceful_shutdown_timeout_s: float = 10.0
    num_cpus: int | None = None          # a local instance: CPUs it may use (default: this machine's)
    temp_dir: str | None = None          # a local instance: Ray's session folder
    env: dict = field(default_factory=dict)   # extra environment for the replicas

    def __post_init__(self):
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise UsageError(f"--replicas must be a whole number >= 1, got {self.replicas!r}")
        if self.autoscale is not None:
            lo, hi = self.autoscale
            if lo < 0 or hi < 1 or lo > hi:
                raise UsageError(f"--autoscale {lo}:{hi}: need 0 <= MIN <= MAX and MAX >= 1")
        if not 0 < self.cpus_per_replica <= 64:
            raise UsageError(f"CPU share per replica must be in (0, 64], got {self.cpus_per_replica!r}")
        if self.max_ongoing_requests < 1:
            raise UsageError("max_ongoing_requests must be >= 1")
        if self.address is not None and not self.address.strip():
            raise UsageError("--address is empty", hint="ray://HOST:10001, or leave it out for a local Ray")

    def deployment_options(self) -> dict:
        options = {
            "name": DEPLOYMENT,
            "ray_actor_options": {"num_cpus": self.cpus_per_replica,
                                  "runtime_env": {"env_vars": self.replica_env()}},
            "max_ongoing_requests": self.max_ongoing_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.autoscale is not None:
            lo, hi = self.autoscale
            options["autoscaling_config"] = {"min_replicas": lo, "max_replicas": hi,
                                             "initial_replicas": max(lo, 1),
                                             "target_ongoing_requests": self.target_ongoing_requests}
        else:
            options["num_replicas"] = self.replicas
        return options

    def replica_env(self) -> dict:
        env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
                                          "TUNEFORGE_PLUGINS") if k in os.environ}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return {**env, **self.env}


def init_ray(address: str | None = None, *, num_cpus: int | None = None, temp_dir: str | None = None) -> bool:
    """Connect to ``address``, or start a local Ray (no dashboard, this machine's CPUs, quiet logs,
    its session folder under /tmp).  True when this call started a local instance."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"cannot join the Ray cluster at {address}: {first}",
                             hint="check --address, and that the cluster's auth token is here "
                                  "(RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
        return False
    # the proxy runs in this local Ray's processes: they inherit the callback setting
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", PROXY_CALLBACK)
    temp = temp_dir or tempfile.mkdtemp(prefix="tf-ray-", dir=_short_tmp())
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _temp_dir=str(temp), **quiet)
    return True


def make_deployment(target: str, server_kwargs: dict, config: RayServeConfig):
    """The Serve application: one deployment whose replicas each run ``build_server(target, **server_kwargs)``."""
    require_ray()
    from ray import serve

    @serve.ingress()
    class TuneforgeReplica:
        """One replica: the plain server's FastAPI app, built in the replica process."""

        def __init__(self, target: str, server_kwargs: dict):
            self._target, self._server_kwargs = target, dict(server_kwargs)

        def __serve_build_asgi_app__(self):
            from tuneforge.serve import build_server

            return build_server(self._target, **self._server_kwargs)

        async def check_health(self):
            """Serve's health check: the app's own readiness (the warm-up prediction succeeded)."""
            state = getattr(self.app.state, "readiness", None)
            if state is not None and not state.get("ready"):
                raise RuntimeError(f"not ready: {state.get('reason')}")

    deployment = serve.deployment(TuneforgeReplica, **config.deployment_options())
    return deployment.bind(target, server_kwargs)


class RayServer:
    """Start Ray (local, or connect to ``address``), run the deployment, shut down cleanly."""

    def __init__(self, target: str, server_kwargs: dict, config: RayServeConfig):
        self.target, self.server_kwargs, self.config = target, server_kwargs, config
        self.started_ray = False

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self) -> "RayServer":
        require_ray()
        from ray import serve

        cfg = self.config
        self.started_ray = init_ray(cfg.address, num_cpus=cfg.num_cpus, temp_dir=cfg.temp_dir)
        serve.start(http_options={"host": cfg.host, "port": cfg.port}, logging_config={"log_level": "WARNING"})
        serve.run(make_deployment(self.target, self.server_kwargs, cfg), name=APP_NAME, route_prefix="/",
                  blocking=False)
        return self

    def stop(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        try:
            if self.started_ray:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)  # a shared cluster: take only our app down
        finally:
            if self.started_ray:
                ray.shutdown()

    def serve_forever(self) -> None:
        """Block until Ctrl-C or SIGTERM, then shut down (Serve, and a local Ray)."""
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()


def replica_pids() -> list[int]:
    """Process ids of this machine's tuneforge replicas (Ray titles them ``ray::ServeReplica:APP:DEPLOYMENT``);
    Linux only, for the kill -9 drills in tests and bench/scale_out.py."""
    title = f"ray::ServeReplica:{APP_NAME}:{DEPLOYMENT}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(title):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return sorted(pids)


def _short_tmp() -> str:
    """Ray's socket paths must stay under 107 bytes: a short folder under /tmp."""
    base = Path(tempfile.gettempdir())
    return str(base if len(str(base)) < 40 else Path("/tmp"))


def wait_ready(url: str, timeout: float = 120.0, *, proc=None) -> float:
    """Seconds until ``url``/healthz answers 200 (raises on timeout or if ``proc`` exited)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise UsageError(f"the server exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.2)
    raise UsageError(f"{url}/healthz did not answer 200 within {timeout:.0f} s")
