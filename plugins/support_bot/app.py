"""The support bot as an app core serves (``tuneforge serve support-bot``): its routes, warm-up,
counters (turns by answer kind, tickets) and close."""

from __future__ import annotations

from tuneforge.application import AppContext, LoadedApp

WARMUP_TEXT = "my card has not arrived"


class BotMetrics:
    """The bot's own Prometheus counters, in the server's registry."""

    def __init__(self, registry):
        from prometheus_client import Counter

        self.turns = Counter("tuneforge_support_bot_turns", "Chat turns by answer kind.", ["kind"],
                             registry=registry)
        self.tickets = Counter("tuneforge_support_bot_tickets", "Hand-off tickets filed.", registry=registry)
        self.feedback = Counter("tuneforge_support_bot_feedback", "Feedback received, by verdict.", ["verdict"],
                                registry=registry)

    def observe(self, answer) -> None:
        self.turns.labels(answer.kind).inc()
        if answer.ticket_id is not None:
            self.tickets.inc()


def load(context: AppContext) -> LoadedApp:
    from tuneforge.webpages import WebPages

    from .routes import make_router
    from .service import load_conversation

    conversation, bot = load_conversation(context.require_path("a bot folder (bot.json)"),
                                          trust=context.options.get("trust"), store=context.options.get("store"))
    metrics = BotMetrics(context.metrics)

    def warmup():
        bot.score_intents([WARMUP_TEXT])
        bot.retrieve([WARMUP_TEXT], k=1)

    router = make_router(conversation, list(bot.intent_predictor.manifest.labels), metrics=metrics)

    def close():
        conversation.store.close()
        bot.close()

    return LoadedApp(name=context.name, routers=[router], warmup=warmup, close=close,
                     info={"intent_model": bot.intent_predictor.manifest.model_id},
                     predictor=bot.intent_predictor, pages=WebPages.of(__package__))
