"""The support bot in a terminal (``python -m tuneforge.apps.support_bot``)."""
