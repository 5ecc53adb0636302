"""Training configuration: one typed dataclass, validated, saved beside every run.

Precedence, lowest first: dataclass defaults < the task's ``train_defaults``
(from its plugin) < the TOML file (``[train]`` table or top level) < CLI flags.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

MODES = ("full", "lora", "top-k", "head", "few-shot", "zero-shot")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
METRICS = ("auto", "accuracy", "macro_f1", "micro_f1", "loss", "spearman", "recall@1")


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained.  See ``docs/training.md``."""

    task: str = "text-classification"
    data: str | None = None            # training file; None = the task's bundled data
    validation: str | None = None      # None = split off the training file
    test: str | None = None            # None = split off the training file / task's test file
    columns: dict[str, str | None] = field(default_factory=dict)
    base_model: str | None = None      # None = the task's default
    mode: str = "full"
    top_k: int = 2                     # mode top-k: layers left trainable
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    train_word_embeddings: bool = True   # mode full: false freezes the vocab x hidden embedding table
    few_shot_per_class: int = 8        # mode few-shot: examples kept per class (<= 64)
    few_shot_pairs: int = 20           # mode few-shot, loss "pairs": contrastive pairs per example
    few_shot_loss: str = "supcon"      # mode few-shot: "supcon" (class-balanced, hard batches) or "pairs"
    # mode few-shot, loss "supcon": passes over the examples + anchors; 5 chosen on validation folds of the
    # k examples (BANKING77, k=8 sample seed 100, 2 folds of 4 per class: 3 -> 0.797, 5 -> 0.799, 10 -> 0.783)
    few_shot_epochs: float = 5.0
    few_shot_classes_per_batch: int = 16   # mode few-shot, loss "supcon": classes in one batch (4 rows each)
    few_shot_temperature: float = 0.05     # mode few-shot, loss "supcon": softmax temperature
    few_shot_head_epochs: float = 50.0     # modes few-shot / zero-shot: epochs of the head stage (cached features)
    # modes few-shot / zero-shot: optional end-to-end pass (encoder + head, cross-entropy) after the head
    # stage, at few_shot_finetune_lr; 0 = off (see docs/training.md for how the default was chosen)
    few_shot_finetune_epochs: float = 0.0
    few_shot_finetune_lr: float = 1e-5
    label_anchors: bool = True         # few-shot / zero-shot: label names (+ descriptions) as examples
    label_descriptions: str | None = None  # YAML/JSON file {label: description} (few-shot, zero-shot)
    unlabelled: str | None = None      # zero-shot: unlabelled texts to self-train on (one per line / CSV)
    self_train_per_class: int = 16     # zero-shot with unlabelled: most confident texts kept per class
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None   # None = 20x learning_rate (a fresh head learns faster)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    max_length: int = 128
    dropout: float | None = None       # None = the encoder config's hidden_dropout_prob
    class_weights: bool = False
    label_smoothing: float = 0.0       # classification: share of each target spread over all labels
    layer_lr_decay: float = 1.0        # layer i of L (0 = bottom): lr * decay**(L-1-i); embeddings decay**L
    wise_alpha: float = 1.0            # full / top-k: encoder = alpha * fine-tuned + (1 - alpha) * base (WiSE-FT)
    early_stopping_patience: int = 2   # evaluations without improvement; 0 = off
    metric: str = "auto"               # validation metric for early stopping; auto = by task kind
    evals_per_epoch: int = 1
    augment: float = 0.0               # probability of deleting/swapping a word (tiny data sets)
    text_augment: float = 0.0          # probability a training row gets a copy rewritten by the task's text_augmenter
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    limit_train: int | None = None     # keep a stratified subset of this many training rows
    seed: int = 42
    data_seed: int | None = None       # batch order and dropout only (None = seed); the head's init stays seed's
    soup: int = 1                      # full / top-k: train this many runs (data_seed = seed, seed + 1, ...), save their mean
    precision: str = "auto"            # auto | fp32 | bf16 | fp16 (autocast: CUDA; bf16 also on CPU)
    device: str = "auto"
    cache_frozen: bool = True          # top-k / head: run frozen layers once, cache their output
    output_dir: str = "runs"
    run_name: str | None = None
    resume: str | None = None          # run folder or checkpoint to continue from
    checkpoint: bool = True            # write checkpoint.pt at each evaluation (needed for resume)
    zero_shot_baseline: bool = False   # also report zero-shot accuracy from label names

    def __post_init__(self):
        def need(cond: bool, what: str, hint: str | None = None):
            if not cond:
                raise ConfigError(what, hint=hint)

        _check_types(self)
        need(self.run_name is None or (bool(_RUN_NAME.match(self.run_name)) and ".." not in self.run_name),
             f"run_name must be a plain folder name, got {self.run_name!r}",
             "use letters, digits, '.', '_' and '-' (no '/', no '..'); --output-dir says where runs go")
        need(bool(self.output_dir), "output_dir must not be empty")
        need(self.epochs <= 10_000, f"epochs must be <= 10000, got {self.epochs}")
        need(self.batch_size <= 65_536 and self.eval_batch_size <= 65_536,
             f"batch sizes must be <= 65536, got {self.batch_size} / {self.eval_batch_size}")
        need(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")

        need(self.mode in MODES, f"unknown training mode {self.mode!r}", "use one of " + ", ".join(MODES))
        need(self.metric in METRICS, f"unknown metric {self.metric!r}", "use one of " + ", ".join(METRICS))
        need(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        need(self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}")
        need(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        need(1 <= self.few_shot_per_class <= 64,
             f"few_shot_per_class must be in 1..64, got {self.few_shot_per_class}")
        need(self.few_shot_loss in ("supcon", "pairs"), f"unknown few_shot_loss {self.few_shot_loss!r}",
             "use supcon or pairs")
        need(0 < self.few_shot_epochs <= 1000, f"few_shot_epochs must be in (0, 1000], got {self.few_shot_epochs}")
        need(2 <= self.few_shot_classes_per_batch <= 4096,
             f"few_shot_classes_per_batch must be in 2..4096, got {self.few_shot_classes_per_batch}")
        need(0 < self.few_shot_head_epochs <= 10_000,
             f"few_shot_head_epochs must be in (0, 10000], got {self.few_shot_head_epochs}")
        need(0 <= self.few_shot_finetune_epochs <= 1000,
             f"few_shot_finetune_epochs must be in [0, 1000], got {self.few_shot_finetune_epochs}", "0 turns it off")
        need(0 < self.few_shot_finetune_lr < 1,
             f"few_shot_finetune_lr must be in (0, 1), got {self.few_shot_finetune_lr}")
        need(0 < self.few_shot_temperature <= 10,
             f"few_shot_temperature must be in (0, 10], got {self.few_shot_temperature}", "0.05 is usual")
        need(1 <= self.self_train_per_class <= 10_000,
             f"self_train_per_class must be in 1..10000, got {self.self_train_per_class}")
        need(8 <= self.max_length <= 8192, f"max_length must be in 8..8192, got {self.max_length}")
        need(0 <= self.augment < 1, f"augment must be in [0, 1), got {self.augment}")
        need(0 <= self.text_augment <= 1, f"text_augment must be in [0, 1], got {self.text_augment}",
             "it is the share of training rows that get a rewritten copy; 0 turns it off")
        need(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
             "0.1 is the usual value; 0 turns it off")
        need(0 < self.layer_lr_decay <= 1, f"layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}",
             "0.8-0.95 keeps the lower layers close to the pretrained model; 1 turns it off")
        need(1 <= self.soup <= 16, f"soup must be 1 - 16 runs, got {self.soup}", "1 trains one run (no soup)")
        need(self.soup == 1 or self.mode in ("full", "top-k"), f"soup is for modes full and top-k, not {self.mode}",
             "drop soup, or train with --mode full")
        need(self.soup == 1 or not self.resume, "--resume continues one run, not a soup",
             "resume a member under RUN-members/, then `tuneforge soup` the members")
        need(0 < self.wise_alpha <= 1, f"wise_alpha must be in (0, 1], got {self.wise_alpha}",
             "the share of the fine-tuned weights kept (1 = off); bench/sentiment_cross.py --wise sweeps it")
        need(self.wise_alpha == 1 or self.mode in ("full", "top-k"),
             f"wise_alpha is for modes full and top-k, not {self.mode}",
             "drop wise_alpha, or train with --mode full")
        need(self.precision in ("auto", "fp32", "bf16", "fp16"), f"unknown precision {self.precision!r}",
             "use auto, fp32, bf16 or fp16")
        need(self.dropout is None or 0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        need(len(self.split) == 3 and all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6
             and self.split[0] > 0, f"split must be three fractions summing to 1, got {self.split}")
        need(self.limit_train is None or self.limit_train > 0, "limit_train must be > 0")
        need(self.evals_per_epoch >= 1, "evals_per_epoch must be >= 1")

    @property
    def head_lr(self) -> float:
        return self.head_learning_rate or self.learning_rate * 20

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], known, n=1)
            raise ConfigError(f"{source}: unknown setting {unknown[0]!r}",
                              hint=f"did you mean {close[0]!r}?" if close else "see `tuneforge train --help`")
        try:
            return cls(**d)
        except TypeError as exc:  # pragma: no cover - defensive
            raise ConfigError(f"{source}: {exc}") from None


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        item = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(item, _type_name(item))
    if origin is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _fits(value, tp) -> bool:
    """Whether ``value`` is of the annotated type ``tp`` (ints pass as floats; bools are not numbers)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(tp)
        return isinstance(value, dict) and all(_fits(k, key) and _fits(v, item) for k, v in value.items())
    return True


def _check_types(config) -> None:
    """Every field holds a value of its annotated type: ``--set seed=[1]`` or ``epochs = inf`` is a
    ConfigError naming the field, not a ``TypeError`` deep inside training."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if not _fits(value, hints[f.name]):
            finite = " (finite)" if isinstance(value, float) and not math.isfinite(value) else ""
            raise ConfigError(f"{f.name} must be {_type_name(hints[f.name])}{finite}, got {value!r}",
                              hint="see docs/training.md for every setting and its type")
        if hints[f.name] in (float, float | None) and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, f.name, float(value))


def read_toml(path: str | Path, table: str | None = None) -> dict[str, Any]:
    """Read a TOML file (optionally one table of it) with errors naming file and line."""
    from .storage import read_toml as read_file

    path = Path(path)
    data = read_file(path)
    if table is not None and table in data:
        if not isinstance(data[table], dict):
            raise ConfigError(f"{path}: [{table}] must be a table")
        return data[table]
    return data


def resolve_config(*, task_defaults: dict | None = None, file: str | Path | None = None,
                   overrides: dict | None = None) -> TrainConfig:
    """Merge the layers (see module doc) into one validated :class:`TrainConfig`."""
    merged: dict[str, Any] = {}

    def layer(values: dict) -> None:
        for key, value in values.items():
            if key == "columns" and isinstance(value, dict):  # column mappings merge key by key
                merged["columns"] = {**merged.get("columns", {}), **value}
            elif value is not None:
                merged[key] = value

    layer(task_defaults or {})
    source = "config"
    if file is not None:
        # Other tools' settings (e.g. [export], [monitor]) live in their own tables.
        layer({k: v for k, v in read_toml(file, table="train").items() if not isinstance(v, dict) or k == "columns"})
        source = str(file)
    for key in ("columns",):
        if overrides and key in overrides and not isinstance(overrides[key], dict):
            raise ConfigError(f"{key} must be a table/dict, got {overrides[key]!r}")
    layer(overrides or {})
    return TrainConfig.from_dict(merged, source=source)
