"""Training texts for calibrating static INT8, and the reader onnxruntime's calibrator pulls from.

Static quantisation fixes each activation's INT8 range ahead of time from sample inputs.
They come from the run's *training* file (``run.json`` -> ``data.train.path``), never from
the parity rows: ranges fitted on the rows the gate then checks would make the gate
optimistic.  Rows that also sit in the parity set are left out.  Where the training file
cannot be read here (another machine, a deleted file), static candidates are skipped and the
manifest says why.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ROWS = 512


@dataclass
class Calibration:
    """Up to ``limit`` training rows (``text``/``text_pair``) and where they came from."""

    rows: list[dict] = field(default_factory=list)
    source: str | None = None          # the training file, when found
    skipped: str | None = None         # why there are no rows

    def __post_init__(self):
        if not self.rows and self.skipped is None:
            self.skipped = "no training rows"

    def to_dict(self) -> dict:
        if not self.rows:
            return {"rows": 0, "skipped": self.skipped}
        return {"rows": len(self.rows), "source": self.source,
                "excluded": "rows also in the parity set"}


def training_rows(run, *, limit: int = DEFAULT_ROWS, seed: int = 0) -> Calibration:
    """A seeded sample of the run's training texts, minus the parity rows."""
    from ..data import ColumnMap, load_dataset
    from ..errors import TuneforgeError

    train = ((run.run.get("data") or {}).get("train") or {}).get("path")
    if not train:
        return Calibration(skipped="run.json names no training file (data.train.path)")
    path = Path(train)
    if not path.is_file():
        return Calibration(skipped=f"the training file {path} is not on this machine")
    columns = dict(_task_columns(run.task))
    columns.update(run.config.get("columns") or {})
    cmap = ColumnMap(text=columns.get("text", "text"), label=None,
                     text_pair=columns.get("text_pair") if run.uses_pairs else None)
    try:
        ds = load_dataset(path, cmap, label_kind="none")
    except (TuneforgeError, OSError) as e:
        return Calibration(skipped=f"the training file could not be read: {e}")
    seen = {(r["text"], r.get("text_pair") or "") for r in run.rows}
    rows = [{"text": e.text, "text_pair": e.text_pair} for e in ds.examples
            if (e.text, e.text_pair or "") not in seen]
    if not rows:
        return Calibration(skipped="every training row is also a parity row")
    random.Random(seed).shuffle(rows)
    return Calibration(rows[:limit], source=str(path))


def _task_columns(task: str) -> dict:
    try:
        from ..tasks import get_task

        return dict(get_task(task).columns or {})
    except Exception:  # an unregistered task (e.g. a plugin not installed here): default columns
        return {}


def feeds(tokenizer, calibration: Calibration, inputs: list[str], *, pairs: bool,
          batch_size: int = 32) -> list[dict]:
    """ONNX feeds (length-sorted batches, as served) over the calibration rows."""
    texts = [r["text"] for r in calibration.rows]
    tp = [r.get("text_pair") or "" for r in calibration.rows] if pairs else None
    return [b.feed for b in tokenizer.batches(texts, tp, inputs=inputs, batch_size=batch_size)]


def data_reader(batches: list[dict]):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``batches`` (one pass)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(batches)

    return _Reader()
