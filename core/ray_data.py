"""``tuneforge predict --engine ray``: score a file of any size on Ray Data, resumably.

Two steps, both on Ray Data:

1. **Plan** (once per output folder): Ray Data reads the input (CSV/TSV, JSONL, Parquet), the
   rows stream back in order and are cut into shards of ``shard_rows`` rows, each written to
   ``OUT/_input/shard-NNNNN.parquet`` with its row number (``_row``) and id (the ``id`` column
   if the input has one, else the row number).  ``OUT/manifest.json`` records the plan; it is
   written last, so a crash while planning just plans again.
2. **Score**: the shards without an output part become a Ray dataset (one block per shard),
   scored by a pool of runtime actors (:class:`ScoreActor`: onnxruntime + tokenizers, never torch -- each actor
   reports whether torch got imported, and the run fails if it did).  Rows stream back to this
   process, which writes a shard's output ``OUT/part-NNNNN.jsonl|parquet`` (tmp file, then an
   atomic rename) as soon as all its rows are in.

A rerun after a crash finds the manifest, skips every shard whose part exists and scores only
the rest: no row is scored into the output twice, none is missing.  Reading ``part-*`` in name
order gives the input order (:func:`read_output`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UsageError

MANIFEST = "manifest.json"
FORMATS = ("jsonl", "parquet")
PLAN_VERSION = 1


@dataclass
class ScoreJob:
    """One batch-scoring run.  Validated: the source exists, sizes are positive."""

    bundle: str
    source: str
    out_dir: str
    column: str = "text"
    id_column: str | None = None     # default: "id" when the input has that column, else the row number
    format: str = "jsonl"
    shard_rows: int = 10_000
    actors: int | None = None        # default: the cluster's CPUs / cpus_per_actor
    cpus_per_actor: float = 1.0
    batch_size: int = 64
    variant: str | None = None
    trust: str | None = None
    raw: bool = False

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UsageError(f"--format {self.format!r}: use jsonl or parquet")
        if not Path(self.source).is_file():
            raise UsageError(f"{self.source}: no such file", hint="--file takes a CSV/TSV, JSONL or Parquet file")
        for name in ("shard_rows", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"--actors must be >= 1, got {self.actors!r}")
        if not 0 < self.cpus_per_actor <= 64:
            raise UsageError(f"CPU share per actor must be in (0, 64], got {self.cpus_per_actor!r}")
        self.bundle = str(Path(self.bundle).resolve())
        self.source = str(Path(self.source).resolve())
        self.out_dir = str(Path(self.out_dir).resolve())
        if self.trust is not None:
            self.trust = str(Path(self.trust).resolve())

    def plan_key(self) -> dict:
        """What a resumed run must share with the first one."""
        stat = Path(self.source).stat()
        return {"version": PLAN_VERSION, "source": self.source, "source_bytes": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns, "column": self.column, "id_column": self.id_column,
                "shard_rows": self.shard_rows, "bundle": self.bundle, "variant": self.variant,
                "format": self.format, "raw": self.raw}


@dataclass
class ScoreReport:
    rows: int
    shards: int
    skipped_shards: int               # already scored by an earlier (crashed) run
    scored_shards: int
    scored_rows: int
    seconds: float
    rows_per_s: float
    actors: int
    torch_in_actors: bool
    out_dir: str
    parts: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class ScoreActor:
    """One runtime in a Ray actor: a :class:`tuneforge.runtime.Predictor` and the task's post-processing."""

    def __init__(self, bundle: str, variant: str | None, trust: str | None, batch_size: int, raw: bool):
        import sys

        from .cli.predict import _postprocessor
        from .runtime import Predictor

        self.predictor = Predictor.load(bundle, variant=variant, **({"trust": trust} if trust else {}))
        self.postprocess = None if raw else _postprocessor(self.predictor)
        self.batch_size = batch_size
        self.torch = "torch" in sys.modules

    def __call__(self, batch):
        """Score the shards named in ``batch`` (columns ``input``: their parquet files)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = []
        for path in batch.column("input").to_pylist():
            shard = pq.read_table(path)
            texts = shard.column("text").to_pylist()
            preds = self.predictor.predict(texts, batch_size=self.batch_size)
            rows = (self.postprocess(texts, preds) if self.postprocess else None) or [p.to_dict() for p in preds]
            out.append(pa.table({"_row": shard.column("_row"), "id": shard.column("id"), "text": shard.column("text"),
                                 "result": [json.dumps(r, ensure_ascii=False) for r in rows],
                                 "_torch": [self.torch] * len(texts)}))
        return pa.concat_tables(out)


def _read(source: str):
    """The input as a Ray dataset (by suffix)."""
    import ray.data

    suffix = Path(source).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return ray.data.read_json(source, lines=True) if suffix != ".json" else ray.data.read_json(source)
    if suffix in (".csv", ".tsv"):
        if suffix == ".tsv":
            import pyarrow.csv as pcsv

            return ray.data.read_csv(source, parse_options=pcsv.ParseOptions(delimiter="\t"))
        return ray.data.read_csv(source)
    if suffix in (".parquet", ".pq"):
        return ray.data.read_parquet(source)
    raise UsageError(f"{source}: unknown file type {suffix!r}", hint="use .csv, .tsv, .jsonl or .parquet")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def plan(job: ScoreJob) -> dict:
    """The shard plan of ``job`` (made now, or the one a previous run left in ``out_dir``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data import DataContext

    out = Path(job.out_dir)
    manifest_path = out / MANIFEST
    key = job.plan_key()
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") != key:
            changed = sorted(k for k in key if manifest.get("key", {}).get(k) != key[k])
            raise UsageError(f"{out} holds a run with other settings or another input ({', '.join(changed)})",
                             hint="use a new --out folder, or delete this one to start over")
        return manifest
    if out.exists() and any(p.name.startswith("part-") for p in out.iterdir()):
        raise UsageError(f"{out} has output parts but no {MANIFEST}", hint="use a new --out folder")
    shard_dir = out / "_input"
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True)
    # row numbers follow the file: set before the dataset is made (a dataset keeps the context it was made in)
    DataContext.get_current().execution_options.preserve_order = True
    ds = _read(job.source)
    names = ds.columns()
    if job.column not in names:
        raise UsageError(f"{job.source} has no column {job.column!r} (columns: {', '.join(names)})",
                         hint="pass --column NAME")
    id_column = job.id_column or ("id" if "id" in names and job.column != "id" else None)
    if job.id_column and job.id_column not in names:
        raise UsageError(f"{job.source} has no id column {job.id_column!r}")
    ds = ds.select_columns([job.column] + ([id_column] if id_column else []))
    shards, row = [], 0
    for k, batch in enumerate(ds.iter_batches(batch_size=job.shard_rows, batch_format="pyarrow",
                                              prefetch_batches=1)):
        n = batch.num_rows
        text = batch.column(job.column).cast(pa.string())
        if text.null_count:
            bad = row + next(i for i, v in enumerate(text.to_pylist()) if v is None)
            raise UsageError(f"{job.source}: row {bad} has no {job.column!r} text")
        ids = batch.column(id_column).cast(pa.string()) if id_column else pa.array(
            [str(i) for i in range(row, row + n)], pa.string())
        table = pa.table({"_row": pa.array(range(row, row + n), pa.int64()), "id": ids, "text": text})
        name = f"shard-{k:05d}.parquet"
        pq.write_table(table, shard_dir / name)
        shards.append({"index": k, "input": f"_input/{name}", "first_row": row, "rows": n})
        row += n
    if not shards:
        raise UsageError(f"{job.source} has no rows")
    manifest = {"key": key, "rows": row, "id_column": id_column or "(row number)", "shards": shards,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _atomic_write(manifest_path, lambda p: p.write_text(json.dumps(manifest, indent=2)))
    return manifest


def part_path(out_dir: str | Path, index: int, fmt: str) -> Path:
    return Path(out_dir) / f"part-{index:05d}.{fmt}"


def _write_part(path: Path, tables: list, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, sort_keys=[("_row", "ascending")]))
    rows = [{"id": i, "text": t, **json.loads(r)} for i, t, r in zip(
        table.column("id").to_pylist(), table.column("text").to_pylist(), table.column("result").to_pylist())]
    if fmt == "jsonl":
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        import pyarrow.parquet as pq

        def write(tmp):
            pq.write_table(pa.Table.from_pylist(rows), tmp)
    _atomic_write(path, write)


def score(job: ScoreJob, *, progress=None) -> ScoreReport:
    """Plan (or resume) and score ``job`` on the connected Ray; returns what happened."""
    import pyarrow as pa
    import ray
    import ray.data

    _quiet()
    t0 = time.perf_counter()
    manifest = plan(job)
    out = Path(job.out_dir)
    shards = manifest["shards"]
    for stale in out.glob(".part-*.tmp-*"):     # a part a killed run was writing: it is scored again
        stale.unlink()
    pending = [s for s in shards if not part_path(out, s["index"], job.format).exists()]
    cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
    actors = min(job.actors or max(1, int(cpus // job.cpus_per_actor)), max(1, len(pending)))
    # --actors N: exactly N; by default a pool that grows from 1 to one per CPU as CPUs are free
    pool = ray.data.ActorPoolStrategy(size=actors) if job.actors else \
        ray.data.ActorPoolStrategy(min_size=1, max_size=actors)
    torch_seen = False
    if pending:
        by_index = {s["index"]: s for s in pending}
        # one block per pending shard; the actors read their shard's parquet file themselves
        # (no file-listing task that would need a CPU the actors hold)
        ds = ray.data.from_items([{"index": s["index"], "input": str(out / s["input"])} for s in pending],
                                 override_num_blocks=len(pending))
        scored = ds.map_batches(ScoreActor, batch_format="pyarrow", batch_size=1,
                                compute=pool, num_cpus=job.cpus_per_actor,
                                fn_constructor_kwargs={"bundle": job.bundle, "variant": job.variant,
                                                       "trust": job.trust, "batch_size": job.batch_size,
                                                       "raw": job.raw})
        waiting: dict[int, list] = {}
        have: dict[int, int] = {}
        shard_rows = job.shard_rows
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            if batch.num_rows == 0:
                continue
            torch_seen = torch_seen or any(batch.column("_torch").to_pylist())
            rows = batch.column("_row").to_numpy()
            shard_of = rows // shard_rows
            ks = sorted(set(shard_of.tolist()))
            for k in ks:
                piece = batch.filter(pa.array(shard_of == k)) if len(ks) > 1 else batch
                waiting.setdefault(k, []).append(piece)
                have[k] = have.get(k, 0) + piece.num_rows
                if have[k] == by_index[k]["rows"]:
                    _write_part(part_path(out, k, job.format), waiting.pop(k), job.format)
                    if progress is not None:
                        progress(k)
                elif have[k] > by_index[k]["rows"]:
                    raise RuntimeError(f"shard {k}: {have[k]} rows scored, the plan has {by_index[k]['rows']}")
        if waiting:
            raise RuntimeError(f"shards {sorted(waiting)} came back incomplete")
        if torch_seen:
            raise RuntimeError("a scoring actor imported torch: the runtime must stay torch-free")
    seconds = time.perf_counter() - t0
    scored_rows = sum(s["rows"] for s in pending)
    report = ScoreReport(rows=manifest["rows"], shards=len(shards), skipped_shards=len(shards) - len(pending),
                         scored_shards=len(pending), scored_rows=scored_rows, seconds=round(seconds, 2),
                         rows_per_s=round(scored_rows / max(seconds, 1e-9), 1), actors=actors if pending else 0,
                         torch_in_actors=torch_seen, out_dir=str(out),
                         parts=[part_path(out, s["index"], job.format).name for s in shards])
    _atomic_write(out / "_SUCCESS.json", lambda p: p.write_text(json.dumps(report.to_dict(), indent=2)))
    return report


def _quiet() -> None:
    """Ray Data's progress lines off (a batch job prints its parts and a summary)."""
    import logging

    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.WARNING)


def read_output(out_dir: str | Path):
    """Every scored row of ``out_dir`` in input order (JSONL or Parquet parts)."""
    for path in sorted(Path(out_dir).glob("part-*")):
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)
        else:
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
