"""Typed library errors.

Every error a user can cause (a bad file, a bad config, a tampered bundle) is a
:class:`TuneforgeError`.  The CLI turns one into a single line on stderr --
``error: <message> (hint: <hint>)`` -- and exits with :attr:`exit_code`; the
traceback is shown only with ``--debug``.  Library users catch the class they
care about.
"""

from __future__ import annotations

from pathlib import Path


class TuneforgeError(Exception):
    """Base class: a problem the user can fix, with a hint saying how."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text.replace("\n", " ")


class UsageError(TuneforgeError):
    """Bad input from the user: arguments, config values, files."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(UsageError):
    """A data file cannot be used.  Names the file and, where known, the line."""

    def __init__(self, message: str, *, path: str | Path | None = None,
                 line: int | None = None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "")
            where += ": "
        super().__init__(where + message, hint=hint)
        self.problem = message


class PluginError(TuneforgeError):
    """A plugin cannot be loaded, or a named task/template/plugin does not exist."""


class BundleError(TuneforgeError):
    """An exported bundle is missing, incomplete or fails its integrity check."""


class ParityError(TuneforgeError):
    """An exported variant does not reproduce the PyTorch model closely enough."""

    def __init__(self, message: str, *, results: dict | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.results = results or {}
