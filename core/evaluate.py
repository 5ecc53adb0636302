"""Score an exported bundle on a labelled file with the runtime (onnxruntime, no torch).

``tuneforge eval`` uses this when given a bundle instead of a run folder, so
the numbers reported are those of the model that will actually be served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import ColumnMap, load_dataset
from .errors import UsageError
from .metrics import compute_metrics, encode_targets

LABEL_KINDS = {"classification": "single", "multilabel": "multi", "pair": "score"}


def is_bundle(path: str | Path) -> bool:
    path = Path(path)
    return (path / "manifest.json").is_file() or any(path.glob("v*/manifest.json"))


def evaluate_bundle(bundle: str | Path, data: str | Path, *, columns: dict | None = None,
                    variant: str | None = None, encoding: str = "utf-8", batch_size: int = 64) -> dict:
    """Metrics of ``bundle`` (its default or a named ``variant``) on the labelled file ``data``."""
    from .runtime import Predictor

    predictor = Predictor.load(bundle, variant=variant)
    kind = predictor.kind
    if kind not in LABEL_KINDS:
        raise UsageError(f"evaluating {kind} bundles from a file is not supported yet",
                         hint="evaluate the training run instead: tuneforge eval RUN --data FILE")
    labels = list(predictor.manifest.labels)
    ds = _load(predictor.task, data, kind, columns, labels, encoding)
    pairs = [e.text_pair for e in ds.examples] if kind == "pair" else None
    outputs = predictor.predict_raw(ds.texts(), pairs, batch_size=batch_size)
    targets = encode_targets(kind, ds.labels(), {name: i for i, name in enumerate(labels)})
    metrics = compute_metrics(kind, np.asarray(outputs), targets, labels)
    return {"bundle": str(bundle), "variant": predictor.variant, "provider": predictor.provider,
            "data": str(data), "sha256": ds.sha256, "metrics": metrics}


def _load(task_name: str, data, kind: str, columns: dict | None, labels: list[str], encoding: str):
    """The file as the bundle's task reads it (its plugin's loader and checks), else a plain table."""
    from .plugin_manager import get_plugin_manager
    from .tasks import all_tasks, load_split

    task = all_tasks().get(task_name)
    if task is not None and task.kind == kind:
        return load_split(task, data, "test", get_plugin_manager(), columns=columns, labels=labels or None,
                          encoding=encoding)
    return load_dataset(data, ColumnMap.from_dict({"text": "text", "label": "label", **(columns or {})}),
                        label_kind=LABEL_KINDS[kind], labels=labels or None, encoding=encoding)
