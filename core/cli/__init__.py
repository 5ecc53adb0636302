"""The ``tuneforge`` command line: a thin layer over the Python API.

Heavy libraries (torch, transformers, onnxruntime) are imported inside the
commands that need them, so ``tuneforge --help`` and ``tuneforge plugins``
start fast.  Library errors become one line on stderr; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import TuneforgeError

EPILOG = """\b
Examples:
  tuneforge train --task support-intents --mode top-k
  tuneforge export runs/support-intents-top-k-20261122-101500
  tuneforge predict exports/support-intents/v1 --text "my card has not arrived"
  tuneforge plugins
Docs: README.md and docs/ in the source tree."""


class TuneforgeGroup(click.Group):
    """Turns typed library errors into one clear line and a non-zero exit code."""

    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug", False)
        try:
            return super().invoke(ctx)
        except TuneforgeError as exc:
            if debug:
                raise
            click.echo(f"error: {exc.one_line()}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # bad option values: the same one line, exit 2
            if debug:
                raise
            where = exc.ctx.command_path if exc.ctx is not None else "tuneforge"
            message = exc.format_message().replace("\n", " ")
            click.echo(f"error: {message} (hint: see `{where} --help`)", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=TuneforgeGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tuneforge")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """tuneforge: fine-tune a text encoder, export it to ONNX, serve it, extend it with plugins."""


@click.group(epilog="""\b
Examples:
  tuneforge report finance --db my-monitor/monitor.db --since 24h""")
def report() -> None:
    """Reports that plugins provide (e.g. `tuneforge report finance`)."""


def _register_commands() -> None:
    from . import apps, distill, evaluate, export, plugins, predict, serve, signing, soup, train

    for module in (train, distill, soup, evaluate, export, predict, serve, signing, plugins, apps):
        module.register(cli)
    cli.add_command(report)
    from ..plugin_manager import call_each

    # one plugin's broken command registration must not take the CLI down
    call_each("tuneforge_register_commands", lambda plugin: {"cli": cli}, isolate=True)


_register_commands()


def main(argv: list[str] | None = None, *, prefix: tuple[str, ...] = (), prog_name: str = "tuneforge") -> None:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) after ``prefix`` -- the apps under
    ``tuneforge.apps`` are ``main(prefix=("chat",))`` and the like: the CLI's own code path."""
    args = list(sys.argv[1:] if argv is None else argv)
    cli.main(args=[*prefix, *args], prog_name=prog_name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
