"""A uniform model soup (Wortsman et al., ICML 2022): the weights of several fine-tuned runs averaged.

The runs must share a base model, task, labels and architecture; they differ in what the data
seed changes (batch order and dropout, ``TrainConfig.data_seed``), so they start from the same
weights -- head included -- and end in the same basin, where the average is a better single model
than its members, at one model's cost to serve.  ``soup_runs`` writes an ordinary run folder (the
first member's config, labels and splits, ``soup.json`` naming the members, metrics re-measured
on the validation and test splits), which ``tuneforge export`` takes like any run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..errors import UsageError
from ..metrics import headline
from ..modeling import TaskModel
from ..storage import write_json


def average_models(models: list[TaskModel]) -> TaskModel:
    """The first model with every floating-point weight replaced by the members' mean."""
    if len(models) < 2:
        raise UsageError("a soup needs at least two runs")
    first = models[0]
    for other in models[1:]:
        if (other.spec.kind, list(other.spec.labels), other.spec.max_length) != (
                first.spec.kind, list(first.spec.labels), first.spec.max_length):
            raise UsageError("the runs of a soup must share task kind, labels and max_length",
                             hint="average runs of one recipe trained with different data_seed values")
    states = [m.state_dict() for m in models]
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise UsageError("the runs of a soup must have the same architecture",
                             hint="average runs of one recipe trained with different data_seed values")
    with torch.no_grad():
        for k in keys:
            if states[0][k].is_floating_point():
                states[0][k].copy_(torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype))
    return first


def soup_runs(runs: list[str | Path], out_dir: str | Path) -> Path:
    """Average the saved models of ``runs`` into the new run folder ``out_dir``; returns it."""
    from transformers import AutoTokenizer

    from .driver import _save_model_atomically, evaluate_saved

    runs = [Path(r) for r in runs]
    for r in runs:
        if not (r / "model").is_dir() or not (r / "run.json").is_file():
            raise UsageError(f"{r} is not a finished run folder (no model/ or run.json)",
                             hint="pass folders printed by `tuneforge train`")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists", hint="choose a new folder for the soup")
    model = average_models([TaskModel.load(r / "model") for r in runs]).eval()
    tokenizer = AutoTokenizer.from_pretrained(runs[0] / "model" / "encoder")
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name in ("config.json", "labels.json"):
            if (runs[0] / name).is_file():
                shutil.copy2(runs[0] / name, out / name)
        shutil.copytree(runs[0] / "splits", out / "splits")
        _save_model_atomically(model, tokenizer, out / "model")
        info = json.loads((runs[0] / "run.json").read_text())
        info.update(id=out.name, soup=[str(r) for r in runs], status="complete")
        write_json(out / "run.json", info)
        write_json(out / "soup.json", {"members": [str(r) for r in runs], "weights": "uniform"})
        metrics = {split: evaluate_saved(out, out / "splits" / f"{split}.jsonl")["metrics"]
                   for split in ("validation", "test")}
        write_json(out / "metrics.json", {k: headline(v) for k, v in metrics.items()})
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def train_soup(task, config, pm, *, progress: bool = True):
    """``TrainConfig.soup`` > 1: train ``soup`` runs of ``config`` with ``data_seed`` = seed, seed + 1,
    ... into ``<run>-members/``, then average them into ``<run>`` (``tuneforge train`` does this when
    the config asks for a soup).  Returns the soup's :class:`~tuneforge.train.RunResult`."""
    from dataclasses import replace

    from . import RunResult
    from .driver import new_run_dir, run_training
    from .progress import log

    out = new_run_dir(config, task)          # reserves the name; soup_runs fills it
    members_dir = out.parent / f"{out.name}-members"
    base_seed = config.seed if config.data_seed is None else config.data_seed
    members, fits = [], []
    try:
        for i in range(config.soup):
            ds = base_seed + i
            log(f"soup member {i + 1} of {config.soup}: data_seed {ds}", progress)
            member = replace(config, soup=1, data_seed=ds, output_dir=str(members_dir), run_name=f"data-seed-{ds}")
            result = run_training(task, member, pm, progress=progress)
            members.append(result.run_dir)
            fits.append(result.fit)
        soup_runs(members, out)
    except BaseException:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()        # the reserved name, never filled; finished members stay under -members/
        raise
    write_json(out / "config.json", config.to_dict())
    metrics = json.loads((out / "metrics.json").read_text())
    log(f"soup of {config.soup}: test " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items()
                                                    if isinstance(v, float)), progress)
    return RunResult(run_dir=out, metrics=metrics,
                     fit={"members": [str(m) for m in members], "member_fits": fits,
                          "train_seconds": sum(f.get("train_seconds", 0.0) for f in fits)})
