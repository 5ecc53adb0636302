"""``tuneforge finance backfill``: a news archive into the monitor's state, the model part on Ray Data.

Two steps:

1. **Score** the archive's texts with the monitor's bundle on Ray Data (:mod:`tuneforge.ray_data`:
   a pool of torch-free runtime actors, parts written to ``OUT``, resumable after a crash: a rerun
   skips the parts already written).
2. **Replay** the archive through the same :class:`Monitor` as a live run -- parse, dedup, entities,
   event-time windows with grace, rules, cooldown, dedup, the state store (SQLite or PostgreSQL) --
   with a scorer that looks each text's probabilities up in step 1's output.  The ordered,
   stateful part stays in one process (windows and rules depend on the items' order); only the
   model, the expensive part, is spread over the cluster.

Alerts the replay raises are stored (and visible to reports and the live page); they reach the
sinks only with ``sinks=True`` (a backfill of last month rarely should page anyone now).  A text
missing from the scored output (e.g. an item the monitor's parser normalised) is scored by the
bundle in this process and counted (``fallback``).
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tuneforge.errors import UsageError

from .config import MonitorConfig
from .scoring import ORDER, BundleScorer


@dataclass
class BackfillReport:
    archive: str
    scored_rows: int          # rows the Ray job scored in this run (0: every part was already there)
    skipped_parts: int        # parts a previous run had written
    items: int                # items the monitor took in (new, not duplicates)
    duplicates: int
    late: int
    alerts: int
    looked_up: int            # texts whose probabilities came from the Ray output
    fallback: int             # texts scored in this process instead
    out_dir: str

    def to_dict(self) -> dict:
        return asdict(self)


class LookupScorer:
    """Probabilities by text from a scored Ray output folder (``tuneforge.ray_data``, ``raw`` rows);
    texts it does not know go to ``fallback`` (a :class:`BundleScorer`, loaded on first use)."""

    def __init__(self, table: dict[str, np.ndarray], fallback, temperature: float = 1.0):
        self.table, self._fallback, self.temperature = table, fallback, float(temperature)
        self.looked_up = self.missed = 0

    @classmethod
    def from_output(cls, out_dir, fallback, temperature: float = 1.0) -> "LookupScorer":
        from tuneforge.ray_data import read_output

        table = {}
        for row in read_output(out_dir):
            result = json.loads(row["result"]) if isinstance(row.get("result"), str) else row
            scores = result.get("scores") or {}
            probs = {str(k).lower(): float(v) for k, v in scores.items()}
            if set(probs) >= set(ORDER):
                table[row["text"]] = np.array([probs[name] for name in ORDER], dtype=np.float32)
        return cls(table, fallback, temperature)

    def score(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 3), dtype=np.float32)
        known = [i for i, t in enumerate(texts) if t in self.table]
        missing = [i for i, t in enumerate(texts) if t not in self.table]
        if known:
            out[known] = np.stack([self.table[texts[i]] for i in known])
            if self.temperature != 1.0:
                from tuneforge.temperature import apply_temperature

                out[known] = apply_temperature(out[known], self.temperature)
        if missing:
            out[missing] = self._fallback().score([texts[i] for i in missing])   # applies the temperature itself
        self.looked_up += len(known)
        self.missed += len(missing)
        return out

    def describe(self) -> str:
        return f"scores from a Ray Data run ({len(self.table)} texts)"


def backfill(config: MonitorConfig, archive: str | Path, out_dir: str | Path, *, address: str | None = None,
             actors: int | None = None, sinks: bool = False, progress=None) -> BackfillReport:
    """Score ``archive`` (JSONL/CSV items: id, timestamp, text, ...) on Ray, then replay it into the
    monitor ``config`` describes (its state store, rules, windows).  ``address``: a Ray cluster
    (default: a local Ray, shut down at the end)."""
    archive = Path(archive)
    if not archive.is_file():
        raise UsageError(f"archive {archive} does not exist", hint="pass a JSONL or CSV file of news items")
    if config.model.scorer != "bundle":
        raise UsageError("backfill scores with the monitor's bundle; [model] scorer is not 'bundle'",
                         hint='set [model] bundle = "exports/finance-sentiment" in monitor.toml')
    from tuneforge.ray_data import ScoreJob, score
    from tuneforge.ray_serve import init_ray, require_ray

    require_ray()
    bundle = config.path(config.model.bundle)
    job = ScoreJob(bundle=str(bundle), source=str(archive), out_dir=str(out_dir), column="text", id_column="id",
                   actors=actors, batch_size=config.model.batch_size, variant=config.model.variant, raw=True)
    started = init_ray(address)
    try:
        job_report = score(job, progress=progress)
    finally:
        if started:
            import ray

            ray.shutdown()

    model = config.model

    @functools.cache
    def fallback():
        return BundleScorer.load(bundle, variant=model.variant, threads=model.threads,
                                 batch_size=model.batch_size, temperature=model.temperature)

    scorer = LookupScorer.from_output(out_dir, fallback, temperature=model.temperature)
    cfg = copy.deepcopy(config)
    cfg.ingest.files, cfg.ingest.watch_dir, cfg.ingest.stdin = [str(archive.resolve())], None, False
    cfg.ingest.speed, cfg.ingest.follow = 0.0, False
    cfg.http.enabled = False
    from .monitor import Monitor

    with Monitor(cfg, scorer=scorer, **({} if sinks else {"sinks": []})) as mon:
        stats = mon.run()
    return BackfillReport(archive=str(archive), scored_rows=job_report.scored_rows,
                          skipped_parts=job_report.skipped_shards, items=stats.scored,
                          duplicates=stats.duplicates, late=stats.late, alerts=stats.alerts,
                          looked_up=scorer.looked_up, fallback=scorer.missed, out_dir=str(out_dir))
