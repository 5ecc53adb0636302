"""``tuneforge distill``."""

from __future__ import annotations

import click

from .common import report_run

EXAMPLE = """\b
Examples:
  tuneforge distill runs/support-intents-full-20261122-101500 --layers 3
  tuneforge distill RUN --layers 4 --layer-map 0,2,3,5 --temperature 3 --alpha 0.7
  tuneforge export runs/support-intents-distill-3L-20261201-120000

Trains a shallower student (the teacher's embeddings, the layers in --layer-map, its head)
on the teacher's logits (KL at --temperature, weight --alpha) and the labels, on the teacher's
training split, and writes an ordinary run folder (+ distill.json) to export like any run."""


def _layer_map(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated layer numbers, got {value!r}") from None


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("run", type=click.Path(exists=True, file_okay=False))
    @click.option("--layers", type=int,
                  help="Encoder layers the student keeps (default 3, or as many as --layer-map names).")
    @click.option("--layer-map", callback=_layer_map,
                  help="Teacher layer for each student layer, e.g. 0,2,4 (default: evenly spaced from 0).")
    @click.option("--temperature", type=float, default=2.0, show_default=True,
                  help="Softmax temperature of the KL term.")
    @click.option("--alpha", type=float, default=0.5, show_default=True,
                  help="Weight of the KL term (1 - alpha on the labels).")
    @click.option("--epochs", type=float, default=6.0, show_default=True,
                  help="Passes over the training split (6: chosen on validation, docs/performance.md).")
    @click.option("--lr", "learning_rate", type=float, default=1e-4, show_default=True,
                  help="Encoder learning rate (head: 20x).")
    @click.option("--batch-size", type=int, help="Default: the teacher's.")
    @click.option("--max-length", type=int, help="Default: the teacher's.")
    @click.option("--limit-train", type=int, help="Distil on a stratified subset of this many rows.")
    @click.option("--seed", type=int, help="Default: the teacher's.")
    @click.option("--output-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
    @click.option("--run-name", help="Run folder name (default: TASK-distill-NL-TIMESTAMP).")
    @click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def distill(run, progress, as_json, **options):
        """Distil a trained classification run into a shallower, faster student run."""
        from ..train.distill import DistillConfig
        from ..train.distill import distill as run_distill

        report_run(run_distill(DistillConfig(teacher=run, **options), progress=progress), as_json)
