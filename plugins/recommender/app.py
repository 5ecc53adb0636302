"""The recommender as an app core serves (``tuneforge serve recommender --app-path DIR``)."""

from __future__ import annotations

from tuneforge.application import AppContext, LoadedApp


def load(context: AppContext) -> LoadedApp:
    from prometheus_client import Counter

    from tuneforge.webpages import WebPages

    from .browse import make_users_router
    from .routes import make_router
    from .service import Recommender

    rec = Recommender.load(context.require_path("a recommender folder (recommender.json)"))
    served = Counter("tuneforge_recommender_recommendations", "Recommendation requests by mode.", ["mode"],
                     registry=context.metrics)

    def warmup():
        rec.recommend(None, taste="a funny adventure", k=1, explain=False)

    return LoadedApp(name=context.name, routers=[make_router(rec, on_recommend=served), make_users_router(rec)],
                     warmup=warmup, pages=WebPages.of(__package__),
                     info={"items": len(rec.catalogue.ids)},
                     predictor=rec.encoder.predictor)
