"""Read a training run folder (``runs/<id>/``) for export.

Layout written by the trainer::

    model/            TaskModel.save(): encoder/ (+ tokenizer.json), head.safetensors, task_model.json
    config.json       resolved training config ("task", "mode", ...)
    labels.json       {"labels": [...]}
    metrics.json      {"validation": {...}, "test": {...}}
    run.json          {"id", "task", "created", "versions", "data_sha256", "wall_time_s"}
    splits/validation.jsonl   {"text", "text_pair", "label"} per line
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError

PARITY_SPLITS = ("validation", "test", "train")


@dataclass
class RunFolder:
    path: Path
    model_dir: Path
    spec: dict                       # task_model.json
    config: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    split: str | None = None         # which split the parity rows come from

    @property
    def run_id(self) -> str:
        return str(self.run.get("id") or self.path.name)

    @property
    def task(self) -> str:
        return str(self.run.get("task") or self.config.get("task") or self.spec["kind"])

    @property
    def uses_pairs(self) -> bool:
        """Only pair models read a second text; for embeddings text_pair is a training target."""
        return self.spec.get("kind") == "pair"


def _json(path: Path, *, required: bool, default=None):
    if not path.is_file():
        if required:
            raise DataError("missing", path=path, hint="is this a tuneforge run folder?")
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"not valid JSON: {e}", path=path,
                        hint="the trainer writes this file; re-run training or fix it") from None


def read_rows(path: Path, limit: int) -> list[dict]:
    """Up to ``limit`` rows of a split file, validated."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON: {e.msg}", path=path, line=n) from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError('each line needs a "text" string', path=path, line=n)
            pair = row.get("text_pair")
            if pair is not None and not isinstance(pair, str):
                raise DataError('"text_pair" must be a string or null', path=path, line=n)
            rows.append({"text": row["text"], "text_pair": pair, "label": row.get("label"),
                         "tokens": row.get("tokens"), "tags": row.get("tags")})
    return rows


def read_run(run_dir: str | Path, *, parity_rows: int = 2000) -> RunFolder:
    path = Path(run_dir)
    if not path.is_dir():
        raise UsageError(f"run folder {path} does not exist", hint="pass runs/<run-id>")
    model_dir = path / "model"
    if not (model_dir / "task_model.json").is_file():
        raise UsageError(f"{path} is not a training run: no model/task_model.json",
                         hint="pass a folder written by tuneforge train (runs/<run-id>)")
    if not isinstance(parity_rows, int) or parity_rows < 1:
        raise UsageError(f"parity_rows must be a positive integer, got {parity_rows!r}")
    spec = _json(model_dir / "task_model.json", required=True)
    if not (model_dir / "encoder" / "tokenizer.json").is_file():
        raise DataError("missing: the export needs the fast tokenizer's tokenizer.json",
                        path=model_dir / "encoder" / "tokenizer.json",
                        hint="save the model with TaskModel.save(path, tokenizer) using a fast tokenizer")
    run = RunFolder(path, model_dir, spec,
                    config=_json(path / "config.json", required=False, default={}) or {},
                    metrics=_json(path / "metrics.json", required=False, default={}) or {},
                    run=_json(path / "run.json", required=False, default={}) or {})
    status = run.run.get("status")
    if status not in (None, "complete"):
        why = f": {run.run['error']}" if run.run.get("error") else ""
        raise UsageError(f"run {run.run_id} did not complete (status {status}{why})",
                         hint="export a run whose run.json says status complete")
    labels_file = _json(path / "labels.json", required=False)
    spec_labels = list(spec.get("labels") or [])
    if labels_file is not None:
        labels = labels_file.get("labels") if isinstance(labels_file, dict) else labels_file
        if not isinstance(labels, list):
            raise DataError('expected {"labels": [...]}', path=path / "labels.json")
        if spec_labels and [str(x) for x in labels] != [str(x) for x in spec_labels]:
            raise DataError("labels differ from model/task_model.json's labels: the head's "
                            "outputs would be mislabelled", path=path / "labels.json",
                            hint="re-run training; the two files must come from the same run")
    run.labels = [str(x) for x in spec_labels]
    for split in PARITY_SPLITS:
        split_file = path / "splits" / f"{split}.jsonl"
        if split_file.is_file():
            run.rows, run.split = read_rows(split_file, parity_rows), split
            if run.rows:
                break
    if not run.rows:
        raise DataError("no rows to check parity on", path=path / "splits" / "validation.jsonl",
                        hint="the trainer writes splits/validation.jsonl; the export checks "
                             "every variant against PyTorch on it")
    return run
