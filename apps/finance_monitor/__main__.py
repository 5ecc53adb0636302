"""The finance news monitor with alerting: ``python -m tuneforge.apps.finance_monitor --config monitor.toml``.

The same code path as ``tuneforge finance monitor``.
"""

from tuneforge.cli import main

main(prefix=("finance", "monitor",), prog_name="python -m tuneforge.apps.finance_monitor")
