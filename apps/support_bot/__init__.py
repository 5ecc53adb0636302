"""The support bot in a terminal: ``python -m tuneforge.apps.support_bot [--bot-dir DIR] [--debug]``.

Also ``tuneforge chat`` / ``tuneforge support-bot chat``.  Build the bot first with
``tuneforge support-bot build --intent-bundle exports/support-intents``.
"""

from __future__ import annotations

import argparse
import os
import sys


def default_bot_dir() -> str:
    from tuneforge.plugins.support_bot.bot import DEFAULT_BOT_DIR

    return os.environ.get("TUNEFORGE_SUPPORT_BOT", DEFAULT_BOT_DIR)


def run_chat(bot_dir: str, *, debug: bool = False, session: str | None = None, console=None,
             read=input) -> int:
    """The chat loop: greeting, then one answer per line until /quit or end of input."""
    from rich.console import Console
    from rich.markup import escape

    from tuneforge.plugins.support_bot.bot import Bot
    from tuneforge.plugins.support_bot.conversation import Conversation
    from tuneforge.plugins.support_bot.store import Store

    console = console or Console(highlight=False)
    bot = Bot.load(bot_dir)
    store = Store(bot.dir / "bot.sqlite")
    conv = Conversation(bot.cascade, store)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneforge.apps.support_bot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot-dir", default=default_bot_dir(),
                        help="bot folder (default: $TUNEFORGE_SUPPORT_BOT or bots/support-bot)")
    parser.add_argument("--debug", action="store_true", help="show intent, confidence, sources and timing per turn")
    parser.add_argument("--session", help="session id (default: a new one)")
    args = parser.parse_args(argv)
    from tuneforge.errors import TuneforgeError

    try:
        return run_chat(args.bot_dir, debug=args.debug, session=args.session)
    except TuneforgeError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
