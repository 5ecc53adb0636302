"""``tuneforge train``."""

from __future__ import annotations

import click

from .common import columns_from, columns_option, parse_set, report_run

EXAMPLE = """\b
Examples:
  tuneforge train --task support-intents --mode top-k --epochs 4
  tuneforge train --task text-classification --data reviews.csv --label-column stars --mode lora
  tuneforge train --task support-intents --mode few-shot --few-shot-per-class 8
  tuneforge train --task support-intents --mode zero-shot \
      --label-descriptions plugins/support_bot/data/intent_descriptions.yaml
  tuneforge train --config train.toml --set learning_rate=3e-5
  tuneforge train --resume runs/support-intents-full-20261122-101500

Settings come from, lowest first: the task's defaults, --config FILE ([train]
table), these flags, then --set KEY=VALUE (any field of TrainConfig, see
docs/training.md).  The resolved config is saved in the run folder."""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.option("--task", "-t", help="Task to train (see `tuneforge plugins`). Default: from --config or "
                  "text-classification.")
    @click.option("--data", "-d", type=click.Path(dir_okay=False), help="Training file (CSV, TSV, JSONL, Parquet).")
    @click.option("--validation", type=click.Path(dir_okay=False), help="Validation file (default: split off --data).")
    @click.option("--test", type=click.Path(dir_okay=False), help="Test file (default: split off --data).")
    @click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
    @click.option("--mode", "-m", type=click.Choice(["full", "lora", "top-k", "head", "few-shot", "zero-shot"]),
                  help="What learns: everything, LoRA adapters, the top k layers, the head, few-shot (k examples "
                       "per class, contrastive), or zero-shot (label names/descriptions only).")
    @click.option("--few-shot-per-class", type=int, help="Mode few-shot: examples kept per class (default 8).")
    @click.option("--label-descriptions", type=click.Path(exists=True, dir_okay=False),
                  help="YAML/JSON {label: description}: anchors for few-shot, the classifier for zero-shot.")
    @click.option("--unlabelled", type=click.Path(exists=True, dir_okay=False),
                  help="Mode zero-shot: a file of unlabelled texts (one per line, or CSV/JSONL with a text "
                       "column) to self-train on.")
    @click.option("--base-model", help="all-MiniLM-L6-v2 (default) or a local Hugging Face model folder.")
    @click.option("--epochs", type=float)
    @click.option("--batch-size", type=int)
    @click.option("--lr", "learning_rate", type=float, help="Encoder learning rate (head: 20x unless set).")
    @click.option("--max-length", type=int, help="Truncate texts to this many tokens (no padding to it).")
    @click.option("--top-k", type=int, help="Mode top-k: number of top encoder layers that learn.")
    @click.option("--limit-train", type=int, help="Train on a stratified subset of this many rows.")
    @click.option("--seed", type=int)
    @click.option("--output-dir", type=click.Path(file_okay=False), help="Where run folders go (default runs/).")
    @click.option("--run-name", help="Run folder name (default: TASK-MODE-TIMESTAMP).")
    @click.option("--resume", type=click.Path(exists=True, file_okay=False),
                  help="Continue an interrupted run from its folder (with the run's own config).")
    @columns_option
    @click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any other TrainConfig field.")
    @click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def train(task, config_file, settings, progress, as_json, text_column, label_column, pair_column, **flags):
        """Fine-tune a task's model and write a run folder (model, report, config, provenance)."""
        from ..config import read_toml
        from ..train import config_for_task
        from ..train import train as run_train

        overrides = {k: v for k, v in flags.items() if v is not None}
        columns = columns_from(text_column, label_column, pair_column)
        if columns:
            overrides["columns"] = columns
        for key, value in parse_set(settings).items():
            if key == "columns" and isinstance(value, dict):
                value = {**overrides.get("columns", {}), **value}
            overrides[key] = value
        if not task:
            task = (read_toml(config_file, table="train").get("task") if config_file else None) \
                or "text-classification"
        config = config_for_task(task, file=config_file, **overrides)
        report_run(run_train(config, progress=progress), as_json)


