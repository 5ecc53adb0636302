"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json

import click

from ..errors import UsageError


def parse_set(values: tuple[str, ...]) -> dict:
    """``--set key=value`` pairs; values parsed as JSON when they can be (numbers, lists, true)."""
    out = {}
    for item in values:
        if "=" not in item:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}", hint="e.g. --set warmup_ratio=0.1")
        key, raw = item.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = raw
    return out


def server_options(f):
    """``--host``, ``--port``, ``--token`` as every tuneforge server takes them (core and plugin apps)."""
    f = click.option("--token", envvar="TUNEFORGE_TOKEN",
                     help="Require this bearer token (env TUNEFORGE_TOKEN).")(f)
    f = click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))(f)
    return click.option("--host", default="127.0.0.1", show_default=True)(f)


def columns_option(f):
    f = click.option("--text-column", help="Column holding the text (default: the task's, usually 'text').")(f)
    f = click.option("--label-column", help="Column holding the label (default: the task's, usually 'label').")(f)
    f = click.option("--pair-column", help="Column holding the second text (pair / embedding tasks).")(f)
    return f


def columns_from(text_column, label_column, pair_column) -> dict:
    mapping = {"text": text_column, "label": label_column, "text_pair": pair_column}
    return {k: v for k, v in mapping.items() if v}


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
