"""``tuneforge eval``."""

from __future__ import annotations

import click

from .common import columns_from, columns_option, echo_json

EXAMPLE = """\b
Examples:
  tuneforge eval runs/support-intents-top-k-20261122-101500 --data new_questions.csv
  tuneforge eval exports/support-intents/v1 --data test.csv --label-column category

A run folder is scored with PyTorch; a bundle with onnxruntime (its default
variant for this machine, or --variant)."""


def register(cli: click.Group) -> None:
    @cli.command(name="eval", epilog=EXAMPLE)
    @click.argument("run", metavar="RUN_OR_BUNDLE", type=click.Path(exists=True, file_okay=False))
    @click.option("--data", "-d", required=True, type=click.Path(dir_okay=False), help="Labelled file to score.")
    @click.option("--encoding", default="utf-8", show_default=True)
    @click.option("--variant", help="Bundle only: ONNX variant to score (default: the served one).")
    @columns_option
    @click.option("--json", "as_json", is_flag=True, help="Print all metrics as JSON.")
    def evaluate(run, data, encoding, variant, text_column, label_column, pair_column, as_json):
        """Re-evaluate a training run or an exported bundle on any labelled file."""
        from ..evaluate import evaluate_bundle, is_bundle
        from ..metrics import headline

        columns = columns_from(text_column, label_column, pair_column) or None
        if is_bundle(run):
            result = evaluate_bundle(run, data, columns=columns, variant=variant, encoding=encoding)
        else:
            from ..train import evaluate_run

            result = evaluate_run(run, data, columns=columns, encoding=encoding)
        if as_json:
            echo_json(result)
            return
        for key, value in headline(result["metrics"]).items():
            click.echo(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
