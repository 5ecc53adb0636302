"""The bot's HTTP routes, served by core (``tuneforge serve support-bot``).

``POST /v1/chat``      ``{"message": "...", "session_id": "optional"}`` ->
                       ``{"session_id", "answer", "kind", "confidence", "intent", "sources", "turn_id", "ticket_id"}``
``POST /v1/feedback``  ``{"turn_id": 12, "verdict": "wrong", "intent": "card_arrival"}`` or
                       ``{"ticket_id": 3, "intent": "card_arrival"}``
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.errors import UsageError

from .conversation import Conversation
from .feedback import record_feedback

MAX_MESSAGE_CHARS = 2000


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    session_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn_id: int | None = None
    ticket_id: int | None = None
    verdict: Literal["right", "wrong"] | None = None
    intent: str | None = Field(default=None, max_length=100)


def make_router(conversation: Conversation, labels: list[str], metrics=None) -> APIRouter:
    router = APIRouter(tags=["support-bot"])

    @router.post("/v1/chat")
    def chat(req: ChatRequest):
        """One customer turn: the answer, its kind (template, knowledge, clarify, handoff, ...) and sources."""
        if not req.message.strip():
            raise UsageError("message is empty")
        session = req.session_id or conversation.new_session()
        ans = conversation.turn(session, req.message)
        if metrics is not None:
            metrics.observe(ans)
        return {"session_id": session, "answer": ans.text, "kind": ans.kind,
                "confidence": round(ans.confidence, 4), "intent": ans.intent, "sources": ans.sources,
                "turn_id": ans.turn_id, "ticket_id": ans.ticket_id}

    @router.post("/v1/feedback")
    def feedback(req: FeedbackRequest):
        """Mark a turn right or wrong, or label a ticket with the intent it should have had."""
        if metrics is not None:
            metrics.feedback.labels(req.verdict or "label").inc()
        return record_feedback(conversation.store, labels, turn_id=req.turn_id, ticket_id=req.ticket_id,
                               verdict=req.verdict, intent=req.intent)

    return router
