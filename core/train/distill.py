"""Knowledge distillation: a shallower student from a trained run (``tuneforge distill RUN``).

    from tuneforge.train.distill import DistillConfig, distill
    run = distill(DistillConfig(teacher="runs/support-intents-full-...", layers=3))

The student is the teacher with fewer encoder layers: the same embeddings, the teacher's layers
at ``layer_map`` (default evenly spaced from the bottom, DistilBERT-style: 0, 2, 4 of 6) and the
teacher's head, then trained in mode ``full`` through the engine's loop on
``alpha`` x KL(teacher || student) at ``temperature`` + ``(1 - alpha)`` x cross-entropy on the
labels, on the teacher's own training split (same files, same seed).  The teacher's logits are
computed once, before training.  The result is an ordinary run folder (``distill.json`` adds
what it was distilled from) that ``tuneforge export`` exports like any run.
Classification tasks only.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..config import TrainConfig
from ..errors import ConfigError, DataError, UsageError


@dataclass
class DistillConfig:
    """What to distil and how; every ``None`` falls back to the teacher run's setting."""

    teacher: str                       # run folder of the trained teacher
    layers: int | None = None          # None: len(layer_map), else 3
    layer_map: list[int] | None = None  # teacher layer for each student layer (default: evenly spaced)
    temperature: float = 2.0
    alpha: float = 0.5                 # weight of the KL term; 1 - alpha on the labels
    # 6, chosen on the validation split (BANKING77 + the bot's rows, 3-layer student of a 6-layer
    # full-FT teacher at 0.9066): 3 epochs 0.8942, 6 epochs 0.9058; alpha 0.9 / T 4 at 6 epochs 0.9033
    epochs: float = 6.0
    learning_rate: float = 1e-4
    batch_size: int | None = None
    max_length: int | None = None
    limit_train: int | None = None
    seed: int | None = None
    output_dir: str = "runs"
    run_name: str | None = None

    def __post_init__(self):
        def need(cond: bool, what: str, hint: str | None = None):
            if not cond:
                raise ConfigError(what, hint=hint)

        if self.layers is None:
            self.layers = len(self.layer_map) if self.layer_map else 3
        need(isinstance(self.layers, int) and not isinstance(self.layers, bool) and self.layers >= 1,
             f"layers must be a positive integer, got {self.layers!r}")
        if self.layer_map is not None:
            self.layer_map = [int(i) for i in self.layer_map]
            need(len(self.layer_map) == self.layers,
                 f"layer_map names {len(self.layer_map)} layers but layers is {self.layers}",
                 "give one teacher layer per student layer, e.g. --layer-map 0,2,4")
            need(all(i >= 0 for i in self.layer_map) and self.layer_map == sorted(set(self.layer_map)),
                 f"layer_map must be increasing teacher layer indices, got {self.layer_map}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        need(0 < self.epochs <= 10_000, f"epochs must be in (0, 10000], got {self.epochs}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.limit_train is None or self.limit_train > 0, "limit_train must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def evenly_spaced(teacher_layers: int, k: int) -> list[int]:
    """``k`` of ``teacher_layers`` layers, from the bottom, evenly spaced: (6, 3) -> [0, 2, 4]."""
    if not 1 <= k <= teacher_layers:
        raise ConfigError(f"a student of {k} layers cannot come from a {teacher_layers}-layer teacher",
                          hint=f"use --layers between 1 and {teacher_layers}")
    return [(i * teacher_layers) // k for i in range(k)]


def build_student(teacher, layer_map: list[int]):
    """A copy of ``teacher`` (a TaskModel) keeping only the encoder layers in ``layer_map``."""
    from torch import nn

    from .modes import encoder_layers

    student = copy.deepcopy(teacher)
    layers = encoder_layers(student.encoder)
    if layers is None:
        raise ConfigError("distillation needs a BERT-style encoder (embeddings + encoder.layer)",
                          hint="use a BERT/MiniLM-family base model")
    if max(layer_map) >= len(layers):
        raise ConfigError(f"layer_map {layer_map} names a layer the {len(layers)}-layer teacher lacks")
    student.encoder.encoder.layer = nn.ModuleList([layers[i] for i in layer_map])
    student.encoder.config.num_hidden_layers = len(layer_map)
    for i, layer in enumerate(student.encoder.encoder.layer):  # layer index used by caches/attention
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = i
    return student


def distill(config: DistillConfig, *, progress: bool = True):
    """Train a student of ``config.layers`` layers on the teacher's logits; returns a RunResult."""
    import numpy as np
    from transformers import AutoTokenizer

    from ..metrics import headline
    from ..modeling import TaskModel
    from ..plugin_manager import get_plugin_manager
    from ..runinfo import utc_now
    from ..storage import write_json
    from ..tasks import get_task
    from . import RunResult
    from .driver import _dump_split, _save_model_atomically, load_task_splits, new_run_dir, set_seed, start_run_info
    from .features import encode
    from .loop import Trainer
    from .modes import apply_mode
    from .progress import log
    from .report import write_report

    t_start = time.perf_counter()
    root = Path(config.teacher)
    if not (root / "model" / "task_model.json").is_file() or not (root / "config.json").is_file():
        raise UsageError(f"{root} is not a finished training run (no model/ or config.json)",
                         hint="pass a folder written by `tuneforge train` (runs/<id>)")
    teacher_cfg = TrainConfig.from_dict(json.loads((root / "config.json").read_text()),
                                        source=str(root / "config.json"))
    teacher_info = json.loads((root / "run.json").read_text()) if (root / "run.json").is_file() else {}
    if teacher_info.get("status") not in (None, "complete"):
        raise UsageError(f"teacher run {root.name} did not complete", hint="distil a finished run")
    teacher = TaskModel.load(root / "model")
    if teacher.spec.kind != "classification":
        raise UsageError(f"distillation supports classification runs; {root.name} is a "
                         f"{teacher.spec.kind} run", hint="distil a classification run")
    depth = int(teacher.encoder.config.num_hidden_layers)
    layer_map = config.layer_map or evenly_spaced(depth, config.layers)
    if max(layer_map) >= depth:
        raise ConfigError(f"layer_map {layer_map} names a layer the {depth}-layer teacher lacks",
                          hint=f"use indices 0..{depth - 1}")
    task = get_task(teacher_cfg.task)
    pm = get_plugin_manager()
    student_cfg = replace(
        teacher_cfg, mode="full", epochs=float(config.epochs), learning_rate=float(config.learning_rate),
        head_learning_rate=None, batch_size=config.batch_size or teacher_cfg.batch_size,
        max_length=config.max_length or teacher_cfg.max_length,
        limit_train=config.limit_train if config.limit_train is not None else teacher_cfg.limit_train,
        seed=config.seed if config.seed is not None else teacher_cfg.seed, output_dir=config.output_dir,
        run_name=config.run_name, resume=None, cache_frozen=False, zero_shot_baseline=False)
    train_ds, val_ds, test_ds = load_task_splits(task, student_cfg, pm)
    tokenizer = AutoTokenizer.from_pretrained(root / "model" / "encoder")
    label_ids = {name: i for i, name in enumerate(teacher.spec.labels)}
    unknown = sorted({str(e.label) for ds in (train_ds, val_ds, test_ds) for e in ds.examples} - set(label_ids))
    if unknown:
        raise DataError(f"the {task.name} data has {len(unknown)} label(s) the teacher {root.name} was not trained "
                        f"on: {', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""),
                        hint="the task's data changed since the teacher was trained: retrain the teacher "
                             f"(tuneforge train --task {task.name}), then distil the new run")
    feats = {name: encode(tokenizer, ds.examples, task.kind, label_ids, student_cfg.max_length)
             for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds))}

    if student_cfg.run_name is None:
        from datetime import datetime

        student_cfg = replace(student_cfg, run_name=f"{task.name}-distill-{len(layer_map)}L-"
                                                   f"{datetime.now():%Y%m%d-%H%M%S}")
    run_dir = new_run_dir(student_cfg, task)
    info = {"teacher": str(root), "teacher_id": teacher_info.get("id", root.name),
            "teacher_layers": depth, "layer_map": layer_map, "temperature": config.temperature,
            "alpha": config.alpha, "teacher_metrics": _teacher_metrics(root)}
    run_info = start_run_info(run_dir, task, (train_ds, val_ds, test_ds), distill=info)
    write_json(run_dir / "config.json", student_cfg.to_dict())
    write_json(run_dir / "distill.json", {**config.to_dict(), **info})
    write_json(run_dir / "labels.json", {"labels": list(teacher.spec.labels)})
    _dump_split(val_ds, run_dir / "splits" / "validation.jsonl")
    _dump_split(test_ds, run_dir / "splits" / "test.jsonl")
    try:
        log(f"{task.name}: teacher logits on {len(train_ds)} training rows ({depth} layers)", progress)
        t0 = time.perf_counter()
        probe = Trainer(teacher, student_cfg, summary={"frozen_layers": 0}, pad_id=tokenizer.pad_token_id,
                        progress=False)
        feats["train"].soft_targets = np.ascontiguousarray(
            probe.predict(feats["train"], use_cache=False), dtype=np.float32)
        info["teacher_logits_seconds"] = round(time.perf_counter() - t0, 2)
        del probe
        set_seed(student_cfg.seed)
        student = build_student(teacher, layer_map)
        student.spec = replace(student.spec, max_length=student_cfg.max_length)
        del teacher
        summary = apply_mode(student, "full", train_word_embeddings=student_cfg.train_word_embeddings)
        summary["distilled_layers"] = layer_map
        run_info["model"] = summary
        log(f"student: {len(layer_map)} layers {layer_map} of {depth}, {summary['trainable_params']:,} "
            f"parameters; T={config.temperature}, alpha={config.alpha}", progress)
        trainer = Trainer(student, student_cfg, summary=summary, pad_id=tokenizer.pad_token_id,
                          special_ids=set(tokenizer.all_special_ids), run_dir=run_dir, progress=progress,
                          distill=(float(config.temperature), float(config.alpha)))
        fit = trainer.fit(feats["train"], feats["validation"])
        metrics = {"validation": trainer.evaluate(feats["validation"]),
                   "test": trainer.evaluate(feats["test"], use_cache=False)}
        _save_model_atomically(trainer.model, tokenizer, run_dir / "model")
        for name in ("checkpoint.pt", "best.pt"):
            (run_dir / name).unlink(missing_ok=True)
        fit_d = fit.to_dict()
        fit_d["throughput_examples_per_s"] = fit.train_examples_seen / max(fit.train_seconds, 1e-9)
        write_json(run_dir / "metrics.json", {k: headline(v) for k, v in metrics.items()})
        write_report(run_dir, task=task.name, mode=f"distill {len(layer_map)} layers", labels=student.spec.labels,
                     metrics=metrics, fit=fit_d, extra={"distill": info})
    except BaseException as exc:
        run_info.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        write_json(run_dir / "run.json", run_info)
        raise
    write_json(run_dir / "distill.json", {**config.to_dict(), **info})
    run_info.update(status="complete", finished=utc_now(), distill=info,
                    wall_time_s=round(time.perf_counter() - t_start, 2))
    write_json(run_dir / "run.json", run_info)
    return RunResult(run_dir=run_dir, metrics=metrics, fit=fit_d)


def _teacher_metrics(root: Path) -> dict:
    try:
        return json.loads((root / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
