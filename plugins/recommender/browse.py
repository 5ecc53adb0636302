"""``GET /v1/users``: the known users a page can pick from (served by core, behind the token).

``{"users": [{"user", "history", "recent": [latest titles]}], "total"}``: users in id order
(numbers numerically), each with the size of its history and its latest ``recent`` titles.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

RECENT = 3


def _order(user: str):
    return (0, int(user), "") if user.isdigit() else (1, 0, user)


def make_users_router(recommender) -> APIRouter:
    router = APIRouter(tags=["recommender"])
    users = sorted(recommender.histories, key=_order)
    titles = dict(zip(recommender.catalogue.ids, recommender.catalogue.titles))

    @router.get("/v1/users")
    def known_users(limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)):
        """Known users (what ``/v1/recommend`` takes as ``user``), their history size and latest titles."""
        page = []
        for user in users[offset:offset + limit]:
            items = recommender.histories[user][0]
            page.append({"user": user, "history": len(items),
                         "recent": [titles.get(str(i), str(i)) for i in items[-RECENT:][::-1]]})
        return {"users": page, "total": len(users)}

    return router
