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
    """``--host``, ``--port`` and the token options, as every tuneforge server takes them."""
    f = click.option("--no-token-on-network", is_flag=True,
                     help="Allow serving a non-loopback --host without a token (not recommended).")(f)
    f = click.option("--token-file", envvar="TUNEFORGE_TOKEN_FILE", type=click.Path(dir_okay=False),
                     help="Read the bearer token from this file (env TUNEFORGE_TOKEN_FILE); keeps it out of `ps`.")(f)
    f = click.option("--token", envvar="TUNEFORGE_TOKEN",
                     help="Require this bearer token (env TUNEFORGE_TOKEN; prefer --token-file).")(f)
    f = click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))(f)
    return click.option("--host", default="127.0.0.1", show_default=True)(f)


LOOPBACK = ("127.", "::1", "localhost")


def resolve_token(token: str | None, token_file: str | None, host: str, allow_open: bool) -> str | None:
    """The server's token from ``--token`` / ``--token-file`` (env too); refuses an empty token, and
    a non-loopback host without a token unless ``allow_open``."""
    from pathlib import Path

    if token is not None and token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the token file {token_file}: {exc}") from None
        if not token:
            raise UsageError(f"the token file {token_file} is empty")
    if token is not None and not token.strip():
        raise UsageError("the token is empty (TUNEFORGE_TOKEN set to nothing?)",
                         hint="set a real token, or unset it to serve loopback-only without one")
    if token is None:
        if not host.startswith(LOOPBACK) and not allow_open:
            raise UsageError(f"refusing to serve {host} without a token: anyone on the network could use it",
                             hint="set TUNEFORGE_TOKEN_FILE / --token-file, or pass --no-token-on-network")
        click.echo("warning: serving without a token" + ("" if host.startswith(LOOPBACK) else
                   f" on {host}: anyone who can reach it can use it"), err=True)
    return token.strip() if token else None


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


def report_run(result, as_json: bool) -> None:
    """A finished run (train, distill): its JSON, or its test metrics and its folder."""
    if as_json:
        echo_json(result.to_dict())
        return
    test = result.metrics["test"]
    shown = ", ".join(f"{k}={v:.4f}" for k, v in test.items() if isinstance(v, float))
    click.echo(f"test: {shown}")
    click.echo(f"run: {result.run_dir}")
