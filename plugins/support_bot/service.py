"""Small helpers shared by the CLI, the HTTP routes and the hook: open a bot's store, load a conversation."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .bot import BotConfig, resolve
from .store import open_bot_store


@contextmanager
def open_store(bot_dir: str | Path, store_url: str | None = None):
    """The bot's store: ``bot.sqlite`` in its folder, or the PostgreSQL URL ``store_url``."""
    BotConfig.load(bot_dir)                 # a clear error if this is not a bot folder
    store = open_bot_store(bot_dir, store_url)
    try:
        yield store
    finally:
        store.close()


def bot_labels(bot_dir: str | Path) -> list[str]:
    """The intent labels of the bot's intent bundle (manifest only: no model loaded)."""
    from tuneforge.export.bundle import load_manifest, resolve_bundle_dir

    config = BotConfig.load(bot_dir)
    return list(load_manifest(resolve_bundle_dir(resolve(bot_dir, config.intent_bundle))).labels)


def load_conversation(bot_dir: str | Path, *, intent_predictor=None, trust=None, threads: int | None = None,
                      store: str | None = None):
    """(Conversation, Bot) for a bot folder, its store opened beside it or at the PostgreSQL URL
    ``store`` (``threads``: see :meth:`Bot.load`)."""
    from .bot import Bot
    from .conversation import Conversation

    bot = Bot.load(bot_dir, intent_predictor=intent_predictor, trust=trust, threads=threads)
    try:
        opened = open_bot_store(bot.root, store)
    except BaseException:
        bot.close()
        raise
    return Conversation(bot.cascade, opened, bot=bot), bot
