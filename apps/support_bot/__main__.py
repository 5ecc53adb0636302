"""The support bot in a terminal: ``python -m tuneforge.apps.support_bot [--bot-dir DIR] [--debug]``.

The same code path as ``tuneforge chat`` (build the bot first: ``tuneforge support-bot build``).
"""

from tuneforge.cli import main

main(prefix=("chat",), prog_name="python -m tuneforge.apps.support_bot")
