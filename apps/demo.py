"""The README's demo: ``python -m tuneforge.apps.demo`` (what ``make demo`` runs).

The same code path as ``tuneforge support-bot demo``.
"""

from tuneforge.cli import main

main(prefix=("support-bot", "demo"), prog_name="python -m tuneforge.apps.demo")
