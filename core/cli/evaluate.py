"""``tuneforge eval``."""

from __future__ import annotations

import click

from .common import columns_from, columns_option, echo_json

EXAMPLE = """\b
Example:
  tuneforge eval runs/support-intents-top-k-20261122-101500 --data new_questions.csv"""


def register(cli: click.Group) -> None:
    @cli.command(name="eval", epilog=EXAMPLE)
    @click.argument("run", type=click.Path(exists=True, file_okay=False))
    @click.option("--data", "-d", required=True, type=click.Path(dir_okay=False), help="Labelled file to score.")
    @click.option("--encoding", default="utf-8", show_default=True)
    @columns_option
    @click.option("--json", "as_json", is_flag=True, help="Print all metrics as JSON.")
    def evaluate(run, data, encoding, text_column, label_column, pair_column, as_json):
        """Re-evaluate a training run's model on any labelled file."""
        from ..metrics import headline
        from ..train import evaluate_run

        result = evaluate_run(run, data, columns=columns_from(text_column, label_column, pair_column) or None,
                              encoding=encoding)
        if as_json:
            echo_json(result)
            return
        for key, value in headline(result["metrics"]).items():
            click.echo(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
