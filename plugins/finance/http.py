"""The monitor's routes (served by core: ``tuneforge serve finance-monitor``, or beside the monitor loop
with ``[http] enabled``): ``POST /v1/events``, ``GET /v1/alerts``, ``GET /v1/status``.

``POST /v1/events`` takes one event ``{"id", "timestamp"?, "text", "source"?, "entities"?}``, a
list of them, or ``{"events": [...]}``; it answers after the batch is committed:
``{"accepted", "duplicates", "malformed": [{"line", "reason"}], "late", "alerts": [ids]}``.
Malformed events go to the dead-letter file like malformed lines; the rest are processed.
"""

from __future__ import annotations

from typing import Any, Union

from fastapi import APIRouter, Body, Query
from starlette.concurrency import run_in_threadpool

from tuneforge.serve import APIError

MAX_EVENTS = 1000
EVENT_SCHEMA = {
    "type": "object", "required": ["id", "text"],
    "properties": {"id": {"type": "string"}, "text": {"type": "string"},
                   "timestamp": {"type": ["string", "number"]}, "source": {"type": "string"},
                   "entities": {"type": "array", "items": {"type": "string"}}},
}
EVENTS_BODY = {"oneOf": [EVENT_SCHEMA, {"type": "array", "items": EVENT_SCHEMA, "minItems": 1},
                         {"type": "object", "required": ["events"],
                          "properties": {"events": {"type": "array", "items": EVENT_SCHEMA, "minItems": 1}}}]}


def make_router(monitor, metrics=None) -> APIRouter:
    router = APIRouter(tags=["finance-monitor"])

    @router.post("/v1/events", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": EVENTS_BODY}}}})
    async def events(body: Union[dict[str, Any], list[Any]] = Body(...)):
        """Ingest news items; answers after they are scored, windowed and committed."""
        if isinstance(body, dict) and "events" in body:
            body = body["events"]
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not body:
            raise APIError(422, "invalid_request",
                           'send an event object, a non-empty list of them, or {"events": [...]}')
        if len(body) > MAX_EVENTS:
            raise APIError(413, "too_large", f"{len(body)} events in one request; the limit is {MAX_EVENTS}")
        return await run_in_threadpool(monitor.submit, body, source="http")

    @router.get("/v1/alerts")
    def alerts(limit: int = Query(50, ge=1, le=1000)):
        """The newest alerts."""
        return {"alerts": monitor.store.alerts(limit=limit)}

    @router.get("/v1/status")
    def status():
        """Counts (read, scored, duplicates, malformed, late, alerts), dead letters, deliveries."""
        return monitor.status()

    return router
