"""Fold labelled feedback into the intent training data and train + export a new bundle version.

Core does the work (``tuneforge.train.train``, ``tuneforge.export.export_run``,
``tuneforge.evaluate.evaluate_bundle``); the new bundle replaces the bot's only if its
accuracy on the old test set drops by at most ``max_drop`` (then thresholds are recalibrated).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tuneforge.errors import ConfigError

from .bot import BotConfig, artefacts, next_generation, portable, resolve
from .datasets import INTENT_TEST, INTENT_TRAIN
from .feedback import fold_feedback
from .store import open_bot_store


@dataclass
class RetrainReport:
    old_bundle: str
    new_bundle: str
    run_dir: str
    data: dict
    old_metrics: dict
    new_metrics: dict
    max_drop: float
    accepted: bool
    reason: str
    thresholds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def retrain(bot_dir: str | Path, *, max_drop: float = 0.01, base_train: str | Path = INTENT_TRAIN,
            test: str | Path = INTENT_TEST, runs: str | Path = "runs", exports: str | Path = "exports",
            train_settings: dict | None = None, export_settings: dict | None = None,
            calibration: dict | None = None, progress: Callable[[str], None] = lambda s: None,
            store_url: str | None = None) -> RetrainReport:
    """Train on base data + feedback, export, compare on ``test``; switch the bot if within ``max_drop``."""
    from tuneforge.evaluate import evaluate_bundle
    from tuneforge.export import export_run
    from tuneforge.runtime import Predictor
    from tuneforge.train import config_for_task, train

    from . import TASK
    from .build import calibrate_bot

    if not 0 <= max_drop <= 1:
        raise ConfigError(f"max_drop must be in [0, 1] (accuracy points as a fraction), got {max_drop}")
    bot_dir = Path(bot_dir)
    config = BotConfig.load(bot_dir)
    old_bundle = resolve(bot_dir, config.intent_bundle)
    store = open_bot_store(bot_dir, store_url)
    data = fold_feedback(store, base_train, bot_dir / "retrain" / f"train-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    store.close()
    progress(f"training on {data['base_rows']} base rows + {data['feedback_rows']} from feedback")
    settings = {"mode": "top-k", "epochs": 3, **(train_settings or {})}
    cfg = config_for_task(TASK, data=data["file"], test=str(test), output_dir=str(runs), **settings)
    run = train(cfg, progress=False)
    name = Predictor.load(old_bundle).manifest.name
    progress(f"exporting {run.run_dir}")
    new_bundle = export_run(run.run_dir, out_dir=exports, name=name, **(export_settings or {}))
    columns = {"text": "text", "label": "category"}
    old_m = evaluate_bundle(old_bundle, test, columns=columns)["metrics"]
    new_m = evaluate_bundle(new_bundle, test, columns=columns)["metrics"]
    drop = old_m["accuracy"] - new_m["accuracy"]
    accepted = drop <= max_drop + 1e-12
    reason = (f"accuracy on the old test set {old_m['accuracy']:.4f} -> {new_m['accuracy']:.4f} "
              f"({-drop:+.4f}; allowed drop {max_drop:.4f})")
    report = RetrainReport(str(old_bundle), str(new_bundle), str(run.run_dir), data,
                           _headline(old_m), _headline(new_m), max_drop, accepted, reason)
    if accepted:
        target = _target(bot_dir)
        with next_generation(bot_dir) as gen:      # the new bundle and its thresholds switch together
            config = BotConfig.load(gen)
            config.previous_intent_bundles = [*(config.previous_intent_bundles or []), config.intent_bundle]
            config.intent_bundle = portable(new_bundle, gen)
            config.save(gen)
            progress("recalibrating thresholds for the new model")
            report.thresholds = calibrate_bot(gen, target=target, **(calibration or {})).to_dict()
    return report


def _headline(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k in ("accuracy", "macro_f1", "n", "ece")}


def _target(bot_dir: Path) -> float:
    from .calibrate import Thresholds

    path = artefacts(bot_dir) / "thresholds.json"
    return Thresholds.load(path).target_precision if path.is_file() else 0.9
