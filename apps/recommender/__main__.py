"""Recommendations from a built recommender: ``python -m tuneforge.apps.recommender --user 42``.

The same code path as ``tuneforge recommend``.
"""

from tuneforge.cli import main

main(prefix=("recommend",), prog_name="python -m tuneforge.apps.recommender")
