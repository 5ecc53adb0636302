"""The fine-tuning engine: ``train(config)`` -> a run folder anyone can trace.

    from tuneforge.train import train, config_for_task
    run = train(config_for_task("support-intents", mode="top-k", epochs=4))
    print(run.metrics["test"]["accuracy"], run.run_dir)

A run folder holds ``model/`` (LoRA merged), ``config.json`` (resolved),
``labels.json``, ``metrics.json``, ``report.{json,md}`` (+ ``confusion.png``),
``run.json`` (versions, data hashes, wall time, status) and
``splits/{validation,test}.jsonl`` (what export's parity gate checks against).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig, resolve_config
from ..tasks import get_task

__all__ = ["RunResult", "TrainConfig", "config_for_task", "encoder_run", "evaluate_run", "resume", "train"]


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    fit: dict

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "metrics": self.metrics, "fit": self.fit}


def config_for_task(task: str, *, file: str | Path | None = None, **overrides) -> TrainConfig:
    """The task's plugin defaults, then ``file`` ([train] table), then ``overrides``."""
    spec = get_task(overrides.get("task") or task)
    overrides["task"] = spec.name
    return resolve_config(task_defaults=spec.train_defaults, file=file, overrides=overrides)


def train(config: TrainConfig, *, progress: bool = True) -> RunResult:
    """Fine-tune ``config.task`` as ``config`` says; see module doc for what is written."""
    from ..plugin_manager import get_plugin_manager
    from .driver import run_training

    task = get_task(config.task)
    if config.soup > 1:
        from .soup import train_soup

        return train_soup(task, config, get_plugin_manager(), progress=progress)
    return run_training(task, config, get_plugin_manager(), progress=progress)


def resume(run_dir: str | Path, *, progress: bool = True) -> RunResult:
    """Continue an interrupted run from its last checkpoint, with the config it was started with."""
    import json

    from ..errors import UsageError

    config_path = Path(run_dir) / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{run_dir} is not a run folder (no config.json)", hint="pass a folder under runs/")
    config = TrainConfig.from_dict({**json.loads(config_path.read_text()), "resume": str(run_dir)},
                                   source=str(config_path))
    return train(config, progress=progress)


def evaluate_run(run_dir: str | Path, data: str | Path, *, columns: dict | None = None,
                 encoding: str = "utf-8") -> dict:
    """Re-evaluate a finished run's model on any labelled file of the same task."""
    from .driver import evaluate_saved

    return evaluate_saved(Path(run_dir), Path(data), columns=columns, encoding=encoding)


def encoder_run(base_model: str, sample_texts: list[str], **kwargs) -> Path:
    """A run folder with ``base_model`` as an (untrained) embedding model, ready for export."""
    from .driver import encoder_run as _encoder_run

    return _encoder_run(base_model, sample_texts, **kwargs)
