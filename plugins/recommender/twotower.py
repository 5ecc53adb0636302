"""The two-tower text model: user = text of the last N liked items, item = its text.

Training goes through the engine (``run_training`` on an ``embedding`` task: in-batch
negatives / MNRL), export through ``run_export``; vectors come from the torch-free
runtime ``Predictor``.  Pairs are written as JSONL (``query``, ``item``) for the engine.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.storage import atomic_write

from .data import Catalogue
from .split import LeaveLastOut

TASK = "recommender-two-tower"


@dataclass
class TwoTowerConfig:
    history: int = 5             # items in the user text (most recent first)
    pairs_per_user: int = 6      # training targets per user (the most recent ones)
    base_model: str = "all-MiniLM-L6-v2"
    mode: str = "top-k"          # top 2 layers train: affordable on a CPU
    epochs: float = 1.0
    batch_size: int = 64
    learning_rate: float = 5e-5
    max_length: int = 64
    seed: int = 42

    def __post_init__(self):
        if self.history < 1 or self.pairs_per_user < 1:
            raise ConfigError("history and pairs_per_user must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def user_text(catalogue: Catalogue, history, n: int) -> str:
    """The user tower's input: titles of the ``n`` most recent items, newest first."""
    recent = [int(i) for i in list(history)[-n:]][::-1]
    if not recent:
        return ""
    return "Liked: " + "; ".join(catalogue.titles[i] for i in recent)


def training_pairs(catalogue: Catalogue, split: LeaveLastOut, config: TwoTowerConfig,
                   phase: str = "train", before: float | None = None) -> list[dict]:
    """``phase`` train: (history before item j -> item j) over each user's training sequence;
    ``val`` / ``test``: one pair per evaluated user (history -> held-out item).  ``before``: only
    training events earlier than this time (the cold-start cut-off: the tower never sees the
    cold-start items or users it is evaluated on)."""
    rows = []
    for u in range(len(split.train)):
        if phase == "train":
            seq = split.train[u]
            if before is not None:
                seq = seq[split.times[u] < before]
            for j in range(max(1, len(seq) - config.pairs_per_user), len(seq)):
                rows.append({"query": user_text(catalogue, seq[:j], config.history),
                             "item": catalogue.text(int(seq[j]))})
        elif split.test[u] >= 0:
            target = split.val[u] if phase == "val" else split.test[u]
            rows.append({"query": user_text(catalogue, split.history(u, phase), config.history),
                         "item": catalogue.text(int(target))})
    return [r for r in rows if r["query"]]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    return atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def train_two_tower(catalogue: Catalogue, split: LeaveLastOut, config: TwoTowerConfig, work_dir: Path,
                    *, base_model: str | None = None, progress: bool = True, before: float | None = None) -> Path:
    """Write the pairs (training events before ``before`` only, if given), train through the engine;
    returns the run folder."""
    from tuneforge.config import TrainConfig
    from tuneforge.plugin_manager import get_plugin_manager
    from tuneforge.tasks import get_task
    from tuneforge.train.driver import run_training

    data = Path(work_dir) / "pairs"
    train = training_pairs(catalogue, split, config, "train", before=before)
    random.Random(config.seed).shuffle(train)
    files = {name: write_jsonl(rows, data / f"{name}.jsonl") for name, rows in (
        ("train", train), ("validation", training_pairs(catalogue, split, config, "val")))}
    tc = TrainConfig(task=TASK, data=str(files["train"]), validation=str(files["validation"]),
                     test=str(files["validation"]), base_model=base_model or config.base_model,
                     mode=config.mode, epochs=config.epochs, batch_size=config.batch_size,
                     learning_rate=config.learning_rate, max_length=config.max_length, seed=config.seed,
                     output_dir=str(Path(work_dir) / "runs"), run_name="two-tower",
                     early_stopping_patience=0, checkpoint=False, warmup_ratio=0.1)
    result = run_training(get_task(TASK), tc, get_plugin_manager(), progress=progress)
    return result.run_dir


def export_two_tower(run_dir: Path, out_dir: Path, *, variants=("int8",), parity_rows: int = 200) -> Path:
    from tuneforge.export.pipeline import run_export

    return run_export(run_dir, out_dir=str(out_dir), name="two-tower", version="v1", variants=list(variants),
                      parity_rows=parity_rows, measure=False)


def export_base_encoder(base_model: str, catalogue: Catalogue, work_dir: Path, *, max_length: int = 64,
                        variants=("int8",)) -> Path:
    """The base encoder as shipped (no fine-tuning) exported like the tower (same runtime, INT8 on CPU):
    the text tower's fall-back / blend partner on items nobody has interacted with."""
    from tuneforge.train import encoder_run

    sample = [catalogue.text(i) for i in range(min(len(catalogue), 200))]
    run = encoder_run(base_model, sample, output_dir=str(Path(work_dir) / "runs"), run_name="base-encoder",
                      max_length=max_length)
    from tuneforge.export.pipeline import run_export

    return run_export(run, out_dir=str(Path(work_dir) / "exports"), name="base-encoder", version="v1",
                      variants=list(variants), parity_rows=len(sample), measure=False)


class Encoder:
    """Text -> L2-normalised vectors with an exported embedding bundle (onnxruntime only)."""

    def __init__(self, bundle_dir, threads: int | None = None):
        from tuneforge.runtime import Predictor

        self.predictor = Predictor.load(bundle_dir, threads=threads)
        if self.predictor.kind != "embedding":
            raise ConfigError(f"{bundle_dir} is a {self.predictor.kind} bundle, not an embedding bundle")

    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.predictor.embed(list(texts), batch_size=batch_size)

    @property
    def dim(self) -> int:
        return int(self.predictor.manifest.output["shape"][-1])


class MixedEncoder:
    """The text tower's vectors: ``[sqrt(1 - a) * tuned(text), sqrt(a) * base(text)]`` for a mix
    weight ``a`` chosen on validation, so that one inner product is the blended cosine
    ``(1 - a) cos_tuned + a cos_base`` (unit norm; one FAISS index).  ``a`` 0 or 1: one encoder only."""

    def __init__(self, tuned, base, mix: float):
        if not 0.0 <= mix <= 1.0:
            raise ConfigError(f"text mix must be in [0, 1], got {mix}")
        if base is None and mix > 0:
            raise ConfigError("a text mix above 0 needs the base encoder")
        self.tuned, self.base, self.mix = tuned, base, float(mix)
        self.parts = [(e, w) for e, w in ((tuned, 1.0 - self.mix), (base, self.mix)) if w > 0]
        self.predictor = self.parts[0][0].predictor

    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return np.concatenate([np.sqrt(w, dtype=np.float32) * e(texts, batch_size=batch_size)
                               for e, w in self.parts], axis=1).astype(np.float32)

    @property
    def dim(self) -> int:
        return sum(e.dim for e, _ in self.parts)


def mix_vectors(tuned: np.ndarray, base: np.ndarray | None, mix: float) -> np.ndarray:
    """:class:`MixedEncoder`'s vectors from the two encoders' own vectors."""
    parts = [(v, w) for v, w in ((tuned, 1.0 - mix), (base, mix)) if w > 0]
    return np.concatenate([np.sqrt(w, dtype=np.float32) * v for v, w in parts], axis=1).astype(np.float32)
