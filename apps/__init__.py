"""Runnable applications composed from a plugin and the runtime (``python -m tuneforge.apps.<name>``)."""
