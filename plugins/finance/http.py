"""The monitor's HTTP service (FastAPI): ``POST /v1/events``, ``GET /v1/alerts``, ``GET /v1/status``, ``/healthz``.

``POST /v1/events`` takes one event ``{"id", "timestamp"?, "text", "source"?, "entities"?}``, a
list of them, or ``{"events": [...]}``; it answers after the batch is committed:
``{"accepted", "duplicates", "malformed": [{"line", "reason"}], "late", "alerts": [ids]}``.
Malformed events go to the dead-letter file like malformed lines; the rest are processed.
"""

from __future__ import annotations

import hmac
import threading

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

MAX_EVENTS = 1000


def create_events_app(monitor, token: str | None = None):
    app = FastAPI(title="tuneforge finance monitor")

    def auth(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    def error(status: int, message: str):
        return JSONResponse({"error": {"message": message, "type": "invalid_request"}}, status_code=status)

    @app.post("/v1/events", dependencies=[Depends(auth)])
    async def events(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return error(400, "body is not valid JSON")
        if isinstance(body, dict) and "events" in body:
            body = body["events"]
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not body:
            return error(422, "send an event object, a non-empty list of them, or {\"events\": [...]}")
        if len(body) > MAX_EVENTS:
            return error(413, f"{len(body)} events in one request; the limit is {MAX_EVENTS}")
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(monitor.submit, body, source="http")

    @app.get("/v1/alerts", dependencies=[Depends(auth)])
    def alerts(limit: int = 50):
        return {"alerts": monitor.store.alerts(limit=max(1, min(limit, 1000)))}

    @app.get("/v1/status", dependencies=[Depends(auth)])
    def status():
        return monitor.status()

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app


class HttpService:
    """Runs the app with uvicorn on a background thread (``start`` / ``stop``)."""

    def __init__(self, monitor, host: str = "127.0.0.1", port: int = 8088, token: str | None = None):
        import uvicorn

        config = uvicorn.Config(create_events_app(monitor, token), host=host, port=port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="finance-monitor-http", daemon=True)

    def start(self) -> "HttpService":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
