"""The terminal chat loop (``tuneforge chat`` / ``python -m tuneforge.apps.support_bot``)."""

from __future__ import annotations


def run_chat(bot_dir: str, *, debug: bool = False, session: str | None = None, console=None,
             read=input, store_url: str | None = None) -> int:
    """The chat loop: greeting, then one answer per line until /quit or end of input."""
    from rich.console import Console
    from rich.markup import escape

    from .bot import Bot
    from .conversation import Conversation
    from .store import open_bot_store

    console = console or Console(highlight=False)
    bot = Bot.load(bot_dir)
    store = open_bot_store(bot.root, store_url)
    conv = Conversation(bot.cascade, store, bot=bot)
    session = session or conv.new_session()
    say = lambda text: console.print(f"[bold green]bot>[/] {escape(text)}", soft_wrap=True)  # noqa: E731
    say(conv.greeting())
    if debug:
        info = bot.info()
        th = {k: v for k, v in info.pop("thresholds").items() if k != "details"}
        console.print(escape(f"[debug] session {session}; {info}; thresholds {th}"), style="dim", soft_wrap=True)
    try:
        while True:
            try:
                text = read("you> ")
            except EOFError:
                break
            if not text.strip():
                continue
            ans = conv.turn(session, text)
            say(ans.text)
            if debug and ans.kind not in ("quit", "help", "reset"):
                console.print(escape(_debug_line(ans)), style="dim", soft_wrap=True)
            if ans.kind == "quit":
                break
    except KeyboardInterrupt:
        console.print("\nGoodbye!")
    finally:
        store.close()
    return 0


def _debug_line(ans) -> str:
    top = ", ".join(f"{i} {p:.3f}" for i, p in ans.candidates) or "-"
    sources = ", ".join(f"{s['citation']} {s['score']:.3f}" for s in ans.sources) or "-"
    timing = ", ".join(f"{k} {v:.1f} ms" for k, v in ans.timings_ms.items())
    return (f"[debug] turn {ans.turn_id} kind={ans.kind} intent={ans.intent} confidence={ans.confidence:.3f} "
            f"| top intents: {top} | sources: {sources} | {timing}")
