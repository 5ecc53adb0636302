"""Build a recommender folder end to end, evaluating every model on the way.

data folder -> positives (threshold) -> leave-last-out + cold-start cut-off -> EASE lambda /
item-kNN neighbours on validation -> baselines -> two-tower (engine train on pre-cut-off pairs
+ export, or a given bundle) -> item vectors + FAISS index -> blend and LightGBM ranker fitted
on validation -> test-phase table -> cold-start table -> serving folder:

``recommender.json`` (settings, blend, bundle), ``items.jsonl``, ``item_vectors.npy``,
``index.faiss``, ``space.npz`` + ``knn.npz`` + ``ease.npy`` (features over *all* positives),
``ranker.txt`` (the LightGBM ranker),
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

from .baselines import EASE, BPRConfig, ItemKNN
from .data import load_folder
from .coldstart import cold_start_split
from .coldstart_eval import cold_start_rows
from .evaluate import (EvalReport, Protocol, _row, baseline_rows, feature_tensor, learn_blend, space_for,
                       tune_on_validation, visible_times)
from .features import fit_space
from .ranker import (RANKER_FEATURES, RankerConfig, as_float16, fit_ranker, fit_sources, full_scores, group_table,
                     title_years)
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
    ranker: RankerConfig = field(default_factory=RankerConfig)
    cold_fraction: float = 0.1      # the last 10 % of interaction times: cold-start items and users
    frozen_base_row: bool = False   # also score cold start with the frozen base encoder (torch, slow)
    seed: int = 42
    k: int = 10
    threads: int | None = None

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if not 0 < self.cold_fraction < 1:
            raise ConfigError(f"cold_fraction must be in (0, 1), got {self.cold_fraction}")
        if isinstance(self.ranker, dict):
            self.ranker = RankerConfig(**self.ranker)
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
    say = progress or (lambda s: None)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    catalogue, interactions = load_folder(config.data)
    positives = interactions.positives(config.threshold)
    split = leave_last_out(positives)
    n_items = len(catalogue)
    if len(split.eval_users) == 0:
        raise ConfigError("no user has 3 or more positive interactions: nothing to evaluate or learn a blend on",
                          hint="lower --threshold or add interactions")
    cold = cold_start_split(interactions, positives, config.cold_fraction)
    say(f"{len(interactions.user_ids)} users, {n_items} items, {len(positives)} positives; "
        f"{len(split.eval_users)} users held out; cold start: {len(cold.new_items)} new items, "
        f"{len(cold.item_cases)} users on them, {len(cold.user_cases[1])} new users")
    val, test = (Protocol(split, n_items, p, config.seed) for p in ("val", "test"))
    say("choosing EASE lambda and item-kNN neighbours on validation")
    tuned = tune_on_validation(split, val, n_items, k=config.k, progress=say)
    rows = []
    if config.baselines:
        say("baselines: popularity, item-kNN, EASE, BPR, ALS")
    rows += baseline_rows(split, test, n_items, seed=config.seed, k=config.k, bpr=config.bpr, tuned=tuned, val=val,
                          als=config.baselines, progress=say, only_tuned=not config.baselines)

    t0 = time.perf_counter()
    bundle = config.bundle
    if bundle is None:
        say("training the two-tower model through the engine (events before the cold-start cut-off)")
        run_dir = train_two_tower(catalogue, split, config.two_tower, out / "work", base_model=config.base_model,
                                  progress=progress is not None, before=cold.cutoff)
        say("exporting it")
        bundle = str(export_two_tower(run_dir, out / "work" / "exports"))
    train_s = time.perf_counter() - t0
    encoder = Encoder(bundle, threads=config.threads)
    say(f"embedding {n_items} items")
    t0 = time.perf_counter()
    item_vectors = encoder([catalogue.text(i) for i in range(n_items)])
    n = config.two_tower.history
    u_val = encoder([user_text(catalogue, h, n) or "no history" for h in val.histories])
    u_test = encoder([user_text(catalogue, h, n) or "no history" for h in test.histories])
    embed_s = time.perf_counter() - t0
    rows.append(_row("two-tower (text)", test, u_test @ item_vectors.T, embed_s + train_s, config.k))

    say("fitting the blend on validation")
    t0 = time.perf_counter()
    times = lambda p: visible_times(split, p)  # noqa: E731
    space_val = space_for(split, catalogue, item_vectors, "val", times, knn=tuned.knn["val"])
    space_test = space_for(split, catalogue, item_vectors, "test", times, knn=tuned.knn["test"])
    blend = learn_blend(feature_tensor(space_val, val, u_val), val, seed=config.seed)
    x_test = feature_tensor(space_test, test, u_test)
    rows.append(_row("two-tower + blend", test, blend.score(x_test), time.perf_counter() - t0 + embed_s + train_s,
                     config.k))
    del x_test

    say("fitting the LightGBM ranker on validation (candidates: EASE + two-tower + item-kNN)")
    t0 = time.perf_counter()
    years = title_years(catalogue.titles)
    tables = [(val.users, _group_table(fit_sources(tuned.ease["val"], space_val, config.ranker.per_source, years),
                                       val, u_val, targets=True))]
    for j in range(1, config.ranker.extra_phases + 1):   # pseudo-validation phases j steps earlier
        sj = split.earlier(j)
        pj = Protocol(sj, n_items, "val", config.seed)
        uj, ij = sj.matrix_pairs("val")
        knn_j = ItemKNN(tuned.knn_neighbours).fit(uj, ij, len(sj.train), n_items)
        space_j = space_for(sj, catalogue, item_vectors, "val", lambda p, s=sj: visible_times(s, p), knn=knn_j)
        ease_j = EASE(tuned.ease_lambda).fit(uj, ij, len(sj.train), n_items)
        vec_j = encoder([user_text(catalogue, h, n) or "no history" for h in pj.histories])
        tables.append((pj.users, _group_table(fit_sources(ease_j, space_j, config.ranker.per_source, years),
                                              pj, vec_j, targets=True)))
        del ease_j
    cands = [c for _, t in tables for c in t[0]]
    mask = np.zeros(len(cands), dtype=bool)
    mask[:len(tables[0][1][0])] = True  # the rounds are chosen on the real validation phase's users
    ranker, ranker_info = fit_ranker(cands, np.concatenate([t[1] for _, t in tables]),
                                     np.concatenate([t[2] for _, t in tables]), config.ranker,
                                     users=np.concatenate([u for u, _ in tables]), eval_mask=mask)
    del tables
    src_test = fit_sources(tuned.ease["test"], space_test, config.ranker.per_source, years)
    cands, x, _ = _group_table(src_test, test, u_test)
    fallback = tuned.ease["test"].scores(test.users, test.histories)
    recall = float(np.mean([t in set(c.tolist()) for c, t in zip(cands, test.targets)]))
    rows.append(_row("ranker (LightGBM lambdarank)", test, full_scores(ranker, cands, x, fallback, n_items),
                     time.perf_counter() - t0 + embed_s + train_s, config.k))
    ranker_info.update(test_candidate_recall=round(recall, 4), importance=dict(zip(
        RANKER_FEATURES, (round(float(v), 1) for v in ranker.feature_importance("gain")))))
    say(f"  ranker: {ranker_info['rounds']} rounds (group {config.ranker.folds}-fold on validation users), "
        f"test candidate recall {recall:.3f}")
    del fallback, x

    say("cold start: new items and new users (models see events before the cut-off only)")
    t0 = time.perf_counter()
    cold_rows = cold_start_rows(cold, catalogue, item_vectors, encoder, tuned, blend, ranker, config,
                                frozen=config.frozen_base_row, progress=say)
    cold_s = time.perf_counter() - t0
    report = EvalReport(rows, seed=config.seed, users=len(test.users), items=n_items, cold=cold_rows,
                        settings={"threshold": config.threshold, "two_tower": config.two_tower.to_dict(),
                                  "bundle": str(bundle), "blend": blend.to_dict(), "bpr": asdict(config.bpr),
                                  "data": str(config.data), "train_s": round(train_s, 1),
                                  "ease_lambda": tuned.ease_lambda, "knn_neighbours": tuned.knn_neighbours,
                                  "validation": tuned.log, "ranker": ranker_info,
                                  "cold_start": {"fraction": config.cold_fraction, "cutoff": cold.cutoff,
                                                 "new_items": int(len(cold.new_items)), "seconds": round(cold_s, 1)}},
                        wall_s=time.perf_counter() - t_start)
    say("writing the serving folder (EASE, item-kNN and features over every positive)")
    _write_folder(out, catalogue, positives, item_vectors, blend, bundle, config, report, encoder, tuned, ranker)
    report.wall_s = time.perf_counter() - t_start
    (out / "eval.json").write_text(json.dumps(report.to_dict(), indent=2))
    (out / "eval.md").write_text(report.markdown(config.k) + "\n")
    return out, report


def _group_table(sources, proto: Protocol, user_vectors, targets: bool = False):
    knn = sources.space.knn.scores(proto.users, proto.histories)
    return group_table(sources, user_vectors, proto.histories, proto.now,
                       targets=proto.targets if targets else None, knn=knn)


def _write_folder(out: Path, catalogue, positives, item_vectors, blend, bundle, config: BuildConfig,
                  report: EvalReport, encoder: Encoder, tuned, ranker) -> None:
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
    space = fit_space(item_vectors, catalogue.genre_matrix, u, it, t, len(positives.user_ids),
                      neighbours=tuned.knn_neighbours)
    np.savez_compressed(tmp / "space.npz", pop=space.pop, cum=space.cum, month0=np.array(space.month0))
    sparse.save_npz(tmp / "knn.npz", space.knn.sim)
    ease = EASE(tuned.ease_lambda).fit(u, it, len(positives.user_ids), len(catalogue))
    np.save(tmp / "ease.npy", as_float16(ease.B))
    del ease
    ranker.save_model(str(tmp / "ranker.txt"))
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
            "ranker": {"features": list(RANKER_FEATURES), "per_source": config.ranker.per_source,
                       "ease_lambda": tuned.ease_lambda, "knn_neighbours": tuned.knn_neighbours},
            "users": len(histories), "data": str(config.data), "seed": config.seed,
            "latest_time": int(t.max()) if len(t) else 0}
    (tmp / "recommender.json").write_text(json.dumps(meta, indent=2))
    (tmp / "eval.json").write_text(json.dumps(report.to_dict(), indent=2))
    (tmp / "eval.md").write_text(report.markdown(config.k) + "\n")
    for p in tmp.iterdir():  # files move into place one by one; recommender.json last
        if p.name != "recommender.json":
            p.replace(out / p.name)
    (tmp / "recommender.json").replace(out / "recommender.json")
    tmp.rmdir()
