"""The bot's HTTP routes, served by core (``tuneforge serve support-bot``).

``POST /v1/chat``      ``{"message": "...", "session_id": "optional, server-issued"}`` ->
                       ``{"session_id", "answer", "kind", "confidence", "intent", "sources", "turn", "ticket"}``
``POST /v1/feedback``  ``{"session_id": "...", "turn": "...", "verdict": "wrong", "intent": "card_arrival"}``:
                       only the session that received a turn can mark it (turn refs are not enumerable)
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.errors import UsageError
from tuneforge.serve import NON_BLANK, APIError, is_blank

from .conversation import Conversation
from .feedback import record_feedback

MAX_MESSAGE_CHARS = 2000


SESSION = r"^[A-Za-z0-9_-]{24}$"          # what Store.new_session issues
REF = r"^[A-Za-z0-9_-]{16}$"               # what Store.add_turn issues


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=NON_BLANK)
    session_id: str | None = Field(default=None, pattern=SESSION,
                                   description="From an earlier answer; omit it to start a new session.")


def feedback_model(labels: list[str]) -> type[BaseModel]:
    """The feedback body; ``intent`` (the right intent of a wrong answer) is one of the bot's labels."""
    from pydantic import create_model

    intents = Literal[tuple(labels)] if labels else str
    return create_model("FeedbackRequest", __config__=ConfigDict(extra="forbid"),
                        session_id=(str, Field(pattern=SESSION)), turn=(str, Field(pattern=REF)),
                        verdict=(Literal["right", "wrong"], ...), intent=(intents | None, None),
                        __doc__="Feedback on one of this session's answers: the session_id and turn it came "
                                "with; intent (a wrong answer's right intent) is ignored with 'right'.")


def make_router(conversation: Conversation, labels: list[str], metrics=None) -> APIRouter:
    router = APIRouter(tags=["support-bot"])

    @router.post("/v1/chat", responses={404: {"description": "unknown session_id"}})
    def chat(req: ChatRequest):
        """One customer turn: the answer, its kind (template, retrieval, clarify, handoff, smalltalk,
        decline) and sources.  Keep ``session_id`` for the next turn and ``turn`` for feedback."""
        if is_blank(req.message):
            raise UsageError("message is empty")
        if req.session_id is not None and not conversation.store.has_session(req.session_id):
            raise APIError(404, "not_found", "unknown session_id (omit session_id to start a new session)")
        session = req.session_id or conversation.new_session()
        ans = conversation.turn(session, req.message)
        if metrics is not None:
            metrics.observe(ans)
        return {"session_id": session, "answer": ans.text, "kind": ans.kind,
                "confidence": round(ans.confidence, 4), "intent": ans.intent, "sources": ans.sources,
                "turn": ans.turn_ref, "ticket": ans.ticket_id}

    def feedback(req):
        """Mark one of this session's answers right or wrong (a wrong one may name the right intent).
        Labelling tickets is for operators: ``tuneforge support-bot feedback --ticket``."""
        turn = conversation.store.turn_of_session(req.turn, req.session_id)
        if turn is None:
            raise APIError(404, "not_found", "no such turn in this session")
        if metrics is not None:
            metrics.feedback.labels(req.verdict).inc()
        result = record_feedback(conversation.store, labels, turn_id=turn["id"], verdict=req.verdict,
                                 intent=req.intent if req.verdict == "wrong" else None)["turn"]
        return {"turn": {"turn": result["ref"], "kind": result["kind"], "intent": result["intent"],
                         "feedback": result["feedback"], "correct_intent": result["correct_intent"]}}

    feedback.__annotations__["req"] = feedback_model(labels)   # the labels are known only now
    router.post("/v1/feedback", responses={404: {"description": "no such turn in this session"}})(feedback)
    return router
