"""The finance news monitor with alerting (``python -m tuneforge.apps.finance_monitor``)."""
