"""One training run end to end: data -> splits -> model -> fit -> report -> run folder."""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import TrainConfig
from ..data import Dataset, Example, LabelMap, stratified_split
from ..errors import ConfigError, DataError
from ..metrics import headline
from ..modeling import ModelSpec, TaskModel, build_task_model
from ..runinfo import library_versions, utc_now
from ..storage import replace_dir, staging_dir, write_json
from ..tasks import TaskSpec, load_split
from .features import encode
from .loop import Trainer
from .modes import apply_mode, merge_lora
from .progress import log
from .report import write_report

if TYPE_CHECKING:
    from . import RunResult


# -- data ---------------------------------------------------------------------
def _split(ds: Dataset, fractions: tuple[float, ...], seed: int) -> tuple[Dataset, ...]:
    if len(ds) < 2 * len(fractions):
        raise DataError(f"only {len(ds)} rows: too few to split into {len(fractions)} parts",
                        path=ds.path, hint="add data or pass --validation/--test files")
    return stratified_split(ds, fractions, seed=seed)


def start_run_info(run_dir: Path, task: TaskSpec, splits, **extra) -> dict:
    """Write ``run.json`` for a run that starts now (status ``running``): its task, library versions
    and where each split (train, validation, test) came from; ``extra`` keys are added."""
    data_info = {name: {"path": ds.path, "sha256": ds.sha256, "rows": len(ds)}
                 for name, ds in zip(("train", "validation", "test"), splits)}
    run_info = {"id": run_dir.name, "task": task.name, "plugin": task.plugin, "status": "running",
                "created": utc_now(), "versions": library_versions(), "data": data_info, **extra}
    write_json(run_dir / "run.json", run_info)
    return run_info


def load_task_splits(task: TaskSpec, config: TrainConfig, pm) -> tuple[Dataset, Dataset, Dataset]:
    """Train / validation / test sets from the config's files or the task's bundled ones."""
    files = dict(task.data_files)
    for split in ("data", "validation", "test"):
        value = getattr(config, split)
        if value:
            files["train" if split == "data" else split] = value
    if config.data and not config.test:
        files.pop("test", None)  # user data: don't mix in the task's bundled test file
    if config.data and not config.validation:
        files.pop("validation", None)
    if "train" not in files:
        raise ConfigError(f"task {task.name!r} has no bundled data", hint="pass --data FILE")
    labels = task.labels or None

    def load(name: str) -> Dataset:
        return load_split(task, files[name], name, pm, columns=config.columns, labels=labels)

    train = load("train")
    val = load("validation") if "validation" in files else None
    test = load("test") if "test" in files else None
    tr, va, te = config.split
    if val is None and test is None:
        train, val, test = _split(train, (tr, va, te), config.seed)
    elif val is None:
        train, val = _split(train, (tr / (tr + va), va / (tr + va)), config.seed)
    elif test is None:
        train, test = _split(train, (tr / (tr + te), te / (tr + te)), config.seed)
    if config.limit_train and config.limit_train < len(train):
        keep = config.limit_train / len(train)
        train = stratified_split(train, (keep, 1 - keep), seed=config.seed)[0]
    if config.mode == "few-shot":
        train = few_shot_subset(train, config.few_shot_per_class, config.seed)
    return train, val, test


def rewrite_training_texts(ds: Dataset, task: TaskSpec, config: TrainConfig) -> Dataset:
    """``text_augment`` > 0: each training row, with that probability, gets a copy rewritten by
    the task's ``text_augmenter`` (label kept) after it; the original stays.  Seeded by the data
    seed, so each member of a soup sees its own rewrites; validation and test stay as they are."""
    if config.text_augment == 0:
        return ds
    if task.text_augmenter is None:
        raise ConfigError(f"text_augment = {config.text_augment}, but task {task.name!r} has no text_augmenter",
                          hint="set text_augment = 0, or register the task with a text_augmenter")
    seed = config.seed if config.data_seed is None else config.data_seed
    rng = random.Random(f"text-augment-{seed}")
    rows = []
    for ex in ds.examples:
        rows.append(ex)
        if rng.random() < config.text_augment:
            rows.append(replace(ex, text=task.text_augmenter(ex.text, rng)))
    return replace(ds, examples=rows)


def few_shot_subset(ds: Dataset, per_class: int, seed: int) -> Dataset:
    import random

    rng = random.Random(seed)
    by_label: dict = {}
    for i, ex in enumerate(ds.examples):
        by_label.setdefault(ex.label if isinstance(ex.label, str) else str(ex.label), []).append(i)
    keep = []
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        keep += idx[:per_class]
    return ds.subset(sorted(keep))


def _dump_split(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for e in ds.examples:
            row = {"text": e.text, "text_pair": e.text_pair, "label": e.label}
            if e.tokens is not None:
                row.update(tokens=e.tokens, tags=e.tags)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# -- run ------------------------------------------------------------------------
def new_run_dir(config: TrainConfig, task: TaskSpec) -> Path:
    root = Path(config.output_dir)
    name = config.run_name or f"{task.name}-{config.mode}-{datetime.now():%Y%m%d-%H%M%S}"
    path = root / name
    n = 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    path.mkdir(parents=True)
    return path


def run_training(task: TaskSpec, config: TrainConfig, pm, *, progress: bool = True) -> "RunResult":
    from . import RunResult

    t_start = time.perf_counter()
    train_ds, val_ds, test_ds = load_task_splits(task, config, pm)  # validates before anything is written
    train_ds = rewrite_training_texts(train_ds, task, config)
    labels = LabelMap(task.labels or train_ds.label_names()) if task.kind in (
        "classification", "multilabel", "token") else None
    spec = ModelSpec(kind=task.kind, labels=list(labels.labels) if labels else [],
                     base_model=config.base_model or task.base_model, max_length=config.max_length)
    if config.mode in ("few-shot", "zero-shot") and task.kind != "classification":
        raise ConfigError(f"mode {config.mode} is for classification tasks", hint="use --mode full or lora")
    if config.unlabelled and config.mode != "zero-shot":
        raise ConfigError("unlabelled texts are used by mode zero-shot (self-training)",
                          hint="add --mode zero-shot, or drop --unlabelled")
    descriptions = {}
    if config.label_descriptions:
        from .zeroshot import load_label_descriptions

        descriptions = load_label_descriptions(config.label_descriptions, spec.labels)
    set_seed(config.seed)  # the new head's initial weights depend on it
    model, tokenizer = build_task_model(spec, dropout=config.dropout)
    label_only = config.mode in ("few-shot", "zero-shot")
    summary = apply_mode(model, "head" if label_only else config.mode, top_k=config.top_k,
                         train_word_embeddings=config.train_word_embeddings,
                         lora={"r": config.lora_r, "alpha": config.lora_alpha,
                               "dropout": config.lora_dropout, "targets": config.lora_targets})
    run_dir = Path(config.resume) if config.resume and Path(config.resume).is_dir() else new_run_dir(config, task)
    run_info = start_run_info(run_dir, task, (train_ds, val_ds, test_ds), model=summary)
    write_json(run_dir / "config.json", config.to_dict())
    if labels:
        labels.save(run_dir / "labels.json")
    _dump_split(val_ds, run_dir / "splits" / "validation.jsonl")
    _dump_split(test_ds, run_dir / "splits" / "test.jsonl")
    pm.hook.tuneforge_train_start(task=task, config=config.to_dict(), run_dir=str(run_dir))
    try:
        label_ids = {name: i for i, name in enumerate(spec.labels)}

        def enc(ds: Dataset):
            return encode(tokenizer, ds.examples, task.kind, label_ids, config.max_length)

        feats = {"train": enc(train_ds), "validation": enc(val_ds), "test": enc(test_ds)}
        log(f"{task.name}: {len(train_ds)} train / {len(val_ds)} validation / {len(test_ds)} test rows; "
            f"mode {config.mode}, {summary['trainable_params']:,} of {summary['total_params']:,} "
            f"parameters train" + (f", {summary['frozen_layers']} frozen layers cached"
                                   if summary["frozen_layers"] and config.cache_frozen else ""), progress)
        extra = {}
        if label_only:  # no big labelled validation set to choose on: fixed settings, no selection
            from .fewshot import contrastive_pretrain

            train_feats, extra = label_only_training_set(model, tokenizer, config, spec, descriptions,
                                                         feats["train"], enc, progress)
            if train_feats is not None:
                extra["contrastive"] = contrastive_pretrain(model, train_feats, config, tokenizer.pad_token_id,
                                                            progress=progress,
                                                            special_ids=tokenizer.all_special_ids)
        # few-shot / zero-shot: the head stage runs few_shot_head_epochs over cached features
        stage_cfg = replace(config, epochs=config.few_shot_head_epochs) if label_only else config
        trainer = Trainer(model, stage_cfg, summary=summary, pad_id=tokenizer.pad_token_id,
                          special_ids=set(tokenizer.all_special_ids), run_dir=run_dir, progress=progress)
        if not label_only:
            fit = trainer.fit(feats["train"], feats["validation"])
            if config.wise_alpha < 1.0:   # before the metrics: they describe the model that is saved
                from .wise import interpolate

                interpolate(trainer.model, config.wise_alpha)
                extra["wise_alpha"] = config.wise_alpha
                log(f"encoder weights interpolated towards {spec.base_model}: alpha {config.wise_alpha:g}", progress)
        elif train_feats is not None:
            fit = trainer.fit(train_feats, None)
            if config.few_shot_finetune_epochs > 0:
                trainer, extra["end_to_end"] = _end_to_end(trainer.model, train_feats, config, tokenizer,
                                                           run_dir, progress)
        else:
            from .loop import FitResult

            fit = FitResult()
        metrics = {"validation": trainer.evaluate(feats["validation"]),
                   "test": trainer.evaluate(feats["test"], use_cache=False)}
        if config.zero_shot_baseline and task.kind == "classification":
            from .zeroshot import zero_shot_metrics

            extra["zero_shot_test"] = zero_shot_metrics(spec, test_ds, label_ids, config, descriptions)
        model = merge_lora(trainer.model)
        _save_model_atomically(model, tokenizer, run_dir / "model")
        for name in ("checkpoint.pt", "best.pt"):
            (run_dir / name).unlink(missing_ok=True)
        fit_d = fit.to_dict()
        fit_d["throughput_examples_per_s"] = fit.train_examples_seen / max(fit.train_seconds, 1e-9)
        write_json(run_dir / "metrics.json", {k: headline(v) for k, v in metrics.items()})
        write_report(run_dir, task=task.name, mode=config.mode, labels=spec.labels, metrics=metrics,
                     fit=fit_d, extra=extra)
    except BaseException as exc:
        run_info.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        write_json(run_dir / "run.json", run_info)
        raise
    run_info.update(status="complete", finished=utc_now(), wall_time_s=round(time.perf_counter() - t_start, 2))
    write_json(run_dir / "run.json", run_info)
    pm.hook.tuneforge_train_end(task=task, config=config.to_dict(), run_dir=str(run_dir),
                                metrics={k: headline(v) for k, v in metrics.items()})
    return RunResult(run_dir=run_dir, metrics=metrics, fit=fit_d)


def _end_to_end(model, train_feats, config: TrainConfig, tokenizer, run_dir, progress):
    """The optional last few-shot stage: encoder and head together on cross-entropy, a few epochs at
    a low learning rate, from the contrastively tuned encoder and the fitted head."""
    summary = apply_mode(model, "full", train_word_embeddings=config.train_word_embeddings)
    stage = replace(config, mode="full", epochs=config.few_shot_finetune_epochs,
                    learning_rate=config.few_shot_finetune_lr)
    log(f"end-to-end pass: {config.few_shot_finetune_epochs:g} epochs at lr {config.few_shot_finetune_lr:g}",
        progress)
    trainer = Trainer(model, stage, summary=summary, pad_id=tokenizer.pad_token_id,
                      special_ids=set(tokenizer.all_special_ids), run_dir=run_dir, progress=progress)
    fit = trainer.fit(train_feats, None)
    return trainer, {"epochs": config.few_shot_finetune_epochs, "lr": config.few_shot_finetune_lr,
                     "train_seconds": round(fit.train_seconds, 1)}


def label_only_training_set(model, tokenizer, config, spec, descriptions, train_feats, enc, progress):
    """What modes few-shot and zero-shot train on: (features or None, facts for the report).

    few-shot: the k examples per class + the label anchors.  zero-shot: the head becomes the label
    vectors (nothing to train, None returned) -- or, with unlabelled texts, the most confident
    pseudo-labelled texts per label + the anchors, trained like few-shot."""
    from .features import concat_features
    from .fewshot import anchor_texts
    from .zeroshot import embed_texts, label_vectors, pseudo_label, read_unlabelled, set_head_to_vectors

    labels = list(spec.labels)
    anchors = Dataset([Example(text=t, label=lab) for lab in labels
                       for t in anchor_texts(lab, descriptions.get(lab))], label_kind="single") \
        if config.label_anchors or config.mode == "zero-shot" else None
    facts = {"label_descriptions": len(descriptions), "anchors": len(anchors) if anchors else 0}
    if config.mode == "few-shot":
        log(f"few-shot: {len(train_feats)} examples ({config.few_shot_per_class} per class) + "
            f"{facts['anchors']} label anchors; loss {config.few_shot_loss}", progress)
        return (concat_features(train_feats, enc(anchors)) if anchors else train_feats), facts
    model.encoder.eval()
    vecs = label_vectors(model.encoder, tokenizer, labels, descriptions, config.max_length)
    if not config.unlabelled:
        set_head_to_vectors(model, tokenizer, vecs, anchors.texts(), config.max_length)
        log(f"zero-shot: {len(labels)} label vectors from {facts['anchors']} anchors "
            f"({len(descriptions)} descriptions)", progress)
        return None, facts
    texts = read_unlabelled(config.unlabelled, config.columns)
    chosen = pseudo_label(embed_texts(model.encoder, tokenizer, texts, config.max_length), vecs,
                          config.self_train_per_class)
    pseudo = Dataset([Example(text=texts[i], label=labels[c]) for i, c in chosen], label_kind="single")
    facts.update(unlabelled=len(texts), pseudo_labelled=len(pseudo))
    log(f"zero-shot self-training: {len(pseudo)} of {len(texts)} unlabelled texts pseudo-labelled "
        f"(<= {config.self_train_per_class} per label) + {facts['anchors']} anchors", progress)
    return concat_features(enc(pseudo), enc(anchors)), facts


def set_seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_model_atomically(model: TaskModel, tokenizer, target: Path) -> None:
    tmp = staging_dir(target)
    try:
        model.save(tmp, tokenizer)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def encoder_run(base_model: str, sample_texts: list[str], *, output_dir: str = "runs",
                run_name: str | None = None, max_length: int = 128, pooling: str = "mean") -> Path:
    """A run folder holding ``base_model`` as-is as an embedding model (nothing trained).

    For exporting a pretrained sentence encoder (e.g. for retrieval) through the same
    export + parity path as trained models; ``sample_texts`` become the parity rows.
    """
    if not sample_texts:
        raise DataError("encoder_run needs sample texts for the export parity check")
    spec = ModelSpec(kind="embedding", base_model=base_model, max_length=max_length, pooling=pooling)
    model, tokenizer = build_task_model(spec)
    config = TrainConfig(task="embedding", base_model=base_model, mode="head", max_length=max_length,
                         output_dir=output_dir, run_name=run_name, epochs=1)
    from ..tasks import get_task

    run_dir = new_run_dir(config, get_task("embedding"))
    _save_model_atomically(model.eval(), tokenizer, run_dir / "model")
    _dump_split(Dataset([Example(text=t, text_pair=t, line=i + 1) for i, t in enumerate(sample_texts)],
                        label_kind="none"), run_dir / "splits" / "validation.jsonl")
    write_json(run_dir / "config.json", config.to_dict())
    write_json(run_dir / "metrics.json", {})
    write_json(run_dir / "run.json", {"id": run_dir.name, "task": "embedding", "status": "complete",
                                      "created": utc_now(), "versions": library_versions(),
                                      "note": f"untrained snapshot of {base_model}"})
    return run_dir


def evaluate_saved(run_dir: Path, data: Path, *, columns: dict | None = None, encoding: str = "utf-8") -> dict:
    """Metrics of a run's saved model on a labelled file (``tuneforge eval``)."""
    from transformers import AutoTokenizer

    from ..errors import UsageError
    from ..plugin_manager import get_plugin_manager
    from ..tasks import get_task

    info_path = run_dir / "run.json"
    if not info_path.is_file() or not (run_dir / "model").is_dir():
        raise UsageError(f"{run_dir} is not a finished run folder (no run.json or model/)",
                         hint="pass a folder printed by `tuneforge train`")
    info = json.loads(info_path.read_text())
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    task = get_task(info["task"])
    model = TaskModel.load(run_dir / "model")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model" / "encoder")
    ds = load_split(task, data, "test", get_plugin_manager(), columns=columns or config.columns,
                    labels=model.spec.labels or None, encoding=encoding)
    label_ids = {name: i for i, name in enumerate(model.spec.labels)}
    feats = encode(tokenizer, ds.examples, task.kind, label_ids, model.spec.max_length)
    trainer = Trainer(model, config, summary={"frozen_layers": 0, "mode": config.mode},
                      pad_id=tokenizer.pad_token_id, progress=False)
    metrics = trainer.evaluate(feats, use_cache=False)
    return {"run": str(run_dir), "data": str(data), "sha256": ds.sha256, "metrics": metrics}
