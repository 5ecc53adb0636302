"""Build a recommender folder end to end, evaluating every model on the way.

data folder -> positives (threshold) -> leave-last-out -> two-tower (engine train +
export, or a given bundle) -> item vectors + FAISS index -> blend fitted on validation
-> test-phase table (baselines in the same run) -> serving folder:

``recommender.json`` (settings, blend, bundle), ``items.jsonl``, ``item_vectors.npy``,
``index.faiss``, ``space.npz`` + ``knn.npz`` (features over *all* positives),
``histories.json`` (known users), ``eval.json`` / ``eval.md``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError

from .baselines import BPRConfig
from .data import load_folder
from .evaluate import EvalReport, Protocol, _row, baseline_rows, feature_tensor, learn_blend, space_for, visible_times
from .features import fit_space
from .split import leave_last_out
from .twotower import Encoder, TwoTowerConfig, export_two_tower, train_two_tower, user_text

FORMAT = 1


@dataclass
class BuildConfig:
    data: str
    out: str
    threshold: float | None = 4.0
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    bundle: str | None = None       # an existing embedding bundle: skip training
    base_model: str | None = None   # override two_tower.base_model (e.g. a tiny test model)
    baselines: bool = True
    bpr: BPRConfig | None = None    # None = BPRConfig(seed=seed)
    seed: int = 42
    k: int = 10
    threads: int | None = None

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if isinstance(self.two_tower, dict):
            self.two_tower = TwoTowerConfig(**self.two_tower)
        if isinstance(self.bpr, dict):
            self.bpr = BPRConfig(**self.bpr)
        if self.bpr is None:
            self.bpr = BPRConfig(seed=self.seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_toml(cls, path, **overrides) -> BuildConfig:
        """``[recommender]`` table (+ ``[recommender.two_tower]``, ``[recommender.bpr]``); relative
        ``data`` / ``out`` / ``bundle`` paths are relative to the TOML file; ``overrides`` win when not None."""
        from tuneforge.config import read_toml

        values = dict(read_toml(path, table="recommender"))
        base = Path(path).resolve().parent
        for key in ("data", "out", "bundle"):
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = str(base / values[key])
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown [recommender] setting {unknown[0]!r}",
                              hint="use " + ", ".join(sorted(known)))
        for key in ("data", "out"):
            if key not in values:
                raise ConfigError(f"{path}: [recommender] needs {key!r}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def build_recommender(config: BuildConfig, *, progress=print) -> tuple[Path, EvalReport]:
    t_start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    catalogue, interactions = load_folder(config.data)
    positives = interactions.positives(config.threshold)
    split = leave_last_out(positives)
    n_items = len(catalogue)
    if len(split.eval_users) == 0:
        raise ConfigError("no user has 3 or more positive interactions: nothing to evaluate or learn a blend on",
                          hint="lower --threshold or add interactions")
    progress(f"{len(interactions.user_ids)} users, {n_items} items, {len(positives)} positives; "
             f"{len(split.eval_users)} users held out")
    val, test = (Protocol(split, n_items, p, config.seed) for p in ("val", "test"))
    rows = []
    if config.baselines:
        progress("baselines: popularity, item-kNN, BPR")
        rows += baseline_rows(split, test, n_items, seed=config.seed, k=config.k, bpr=config.bpr)

    t0 = time.perf_counter()
    bundle = config.bundle
    if bundle is None:
        progress("training the two-tower model through the engine")
        run_dir = train_two_tower(catalogue, split, config.two_tower, out / "work",
                                  base_model=config.base_model, progress=progress is not None)
        progress("exporting it")
        bundle = str(export_two_tower(run_dir, out / "work" / "exports"))
    train_s = time.perf_counter() - t0
    encoder = Encoder(bundle, threads=config.threads)
    progress(f"embedding {n_items} items")
    t0 = time.perf_counter()
    item_vectors = encoder([catalogue.text(i) for i in range(n_items)])
    n = config.two_tower.history
    u_val = encoder([user_text(catalogue, h, n) or "no history" for h in val.histories])
    u_test = encoder([user_text(catalogue, h, n) or "no history" for h in test.histories])
    embed_s = time.perf_counter() - t0
    rows.append(_row("two-tower (text)", test, u_test @ item_vectors.T, embed_s + train_s, config.k))

    progress("fitting the blend on validation")
    t0 = time.perf_counter()
    blend = learn_blend(feature_tensor(space_for(split, catalogue, item_vectors, "val",
                                                 lambda p: visible_times(split, p)), val, u_val),
                        val, seed=config.seed)
    x_test = feature_tensor(space_for(split, catalogue, item_vectors, "test", lambda p: visible_times(split, p)),
                            test, u_test)
    rows.append(_row("two-tower + blend", test, blend.score(x_test), time.perf_counter() - t0 + embed_s + train_s,
                     config.k))
    del x_test
    report = EvalReport(rows, seed=config.seed, users=len(test.users), items=n_items,
                        settings={"threshold": config.threshold, "two_tower": config.two_tower.to_dict(),
                                  "bundle": str(bundle), "blend": blend.to_dict(), "bpr": asdict(config.bpr),
                                  "data": str(config.data), "train_s": round(train_s, 1)},
                        wall_s=time.perf_counter() - t_start)
    _write_folder(out, catalogue, positives, item_vectors, blend, bundle, config, report, encoder)
    return out, report


def _write_folder(out: Path, catalogue, positives, item_vectors, blend, bundle, config: BuildConfig,
                  report: EvalReport, encoder: Encoder) -> None:
    import faiss
    from scipy import sparse

    tmp = out / ".serving.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "items.jsonl", "w", encoding="utf-8") as f:
        for rec in catalogue.to_records():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    np.save(tmp / "item_vectors.npy", item_vectors)
    index = faiss.IndexFlatIP(item_vectors.shape[1])
    index.add(item_vectors)
    faiss.write_index(index, str(tmp / "index.faiss"))
    # serving features over every positive (no hold-out): dedupe (user, item), keep the first time
    order = np.lexsort((positives.time, positives.item, positives.user))
    u, it, t = positives.user[order], positives.item[order], positives.time[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (it[1:] != it[:-1])
    u, it, t = u[first], it[first], t[first]
    space = fit_space(item_vectors, catalogue.genre_matrix, u, it, t, len(positives.user_ids))
    np.savez_compressed(tmp / "space.npz", pop=space.pop, cum=space.cum, month0=np.array(space.month0))
    sparse.save_npz(tmp / "knn.npz", space.knn.sim)
    histories = {}
    by_time = np.lexsort((t, u))
    for uu, ii, tt in zip(u[by_time], it[by_time], t[by_time]):
        h = histories.setdefault(positives.user_ids[uu], [[], []])
        h[0].append(catalogue.ids[ii])
        h[1].append(int(tt))
    (tmp / "histories.json").write_text(json.dumps(histories))
    # known users' vectors, computed once here like the items' (rows follow histories.json)
    n = config.two_tower.history
    texts = [user_text(catalogue, [catalogue.index(i) for i in h[0]], n) or "no history" for h in histories.values()]
    np.save(tmp / "user_vectors.npy", encoder(texts) if texts else np.zeros((0, item_vectors.shape[1]), np.float32))
    bundle_path = Path(bundle).resolve()
    try:
        bundle_ref = str(bundle_path.relative_to(out.resolve()))
    except ValueError:
        bundle_ref = str(bundle_path)
    meta = {"format": FORMAT, "bundle": bundle_ref, "threshold": config.threshold,
            "history": config.two_tower.history, "blend": blend.to_dict(), "items": len(catalogue),
            "users": len(histories), "data": str(config.data), "seed": config.seed,
            "latest_time": int(t.max()) if len(t) else 0}
    (tmp / "recommender.json").write_text(json.dumps(meta, indent=2))
    (tmp / "eval.json").write_text(json.dumps(report.to_dict(), indent=2))
    (tmp / "eval.md").write_text(report.table(config.k) + "\n")
    for p in tmp.iterdir():  # files move into place one by one; recommender.json last
        if p.name != "recommender.json":
            p.replace(out / p.name)
    (tmp / "recommender.json").replace(out / "recommender.json")
    tmp.rmdir()
