"""Built-in domain plugins.  Each sub-package is a plugin loaded through the
``tuneforge`` entry-point group, exactly like a third-party plugin."""
