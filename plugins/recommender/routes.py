"""HTTP routes (served by core: ``tuneforge serve recommender``).

``POST /v1/recommend``  ``{"user": "42", "k": 10}`` or ``{"taste": "space operas", "k": 5}``
                        -> ``{"user", "mode", "recommendations": [{"item", "title", "score",
                        "features", "because": [history items that drove it]}], "took_ms"}``
``POST /v1/score``      ``{"user": "42", "items": ["1", "260"]}`` -> ``{"user", "scores": [...]}``

Unknown users, empty tastes and bad ``k`` are 422 ``invalid_request`` errors with one clear line.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.serve import NON_BLANK, APIError

from .service import MAX_TASTE_CHARS, Recommender, UnknownUser


class RecommendRequest(BaseModel):
    """A known ``user`` or a free-text ``taste``: exactly one of them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["user"], "properties": {"user": {"not": {"type": "null"}}},
                   "not": {"required": ["taste"]}},
                  {"required": ["taste"], "properties": {"taste": {"type": "string", "pattern": NON_BLANK}},
                   "not": {"required": ["user"]}}]})
    user: str | int | None = None
    taste: str | None = Field(default=None, max_length=MAX_TASTE_CHARS)
    k: int = Field(default=10, ge=1, le=1000)
    explain: bool = True


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | int
    items: list[str | int] = Field(min_length=1, max_length=10000)


def make_router(recommender: Recommender, on_recommend=None) -> APIRouter:
    router = APIRouter(tags=["recommender"])

    @router.post("/v1/recommend", responses={404: {"description": "unknown user"}})
    def recommend(req: RecommendRequest):
        """Top-k unseen items for a known user, or for a taste described in free text."""
        user = None if req.user is None else str(req.user)
        try:
            result = recommender.recommend(user, taste=req.taste, k=req.k, explain=req.explain)
        except UnknownUser as exc:
            raise APIError(404, "not_found", exc.message) from None
        if on_recommend is not None:
            on_recommend.labels(result.get("mode", "user")).inc()
        return result

    @router.post("/v1/score", responses={404: {"description": "unknown user"}})
    def score(req: ScoreRequest):
        """Scores of the given items for a known user."""
        try:
            return recommender.score(str(req.user), [str(i) for i in req.items])
        except UnknownUser as exc:
            raise APIError(404, "not_found", exc.message) from None

    return router
