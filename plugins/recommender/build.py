"""Build a recommender folder end to end, evaluating every model on the way.

data folder -> positives (threshold) -> leave-last-out + cold-start cut-off (and its validation
window one window earlier) -> EASE lambda / item-kNN neighbours on validation -> baselines ->
two-tower (engine train on pairs before the validation window + export, or a given bundle) and
the base encoder exported as is -> the text mix chosen on the cold-start validation window ->
item vectors + FAISS index -> blend and LightGBM ranker (settings by group k-fold) fitted on
validation -> test-phase table -> cold-start table -> serving folder:

``recommender.json`` (settings, blend, bundles, text mix), ``items.jsonl``, ``item_vectors.npy``,
``index.faiss``, ``space.npz`` + ``knn.npz`` + ``ease.npy`` (features over *all* positives),
``ranker.txt`` (the LightGBM ranker), ``histories.json`` (known users), ``user_vectors.npy`` +
``user_ease.npy`` + ``user_ease_last.npy`` (known users' text vectors and EASE scores),
``eval.json`` / ``eval.md``.
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
from .coldstart import cold_start_split, validation_cold_split
from .coldstart_eval import choose_text_mix, cold_start_rows
from .data import load_folder
from .evaluate import (
    EvalReport,
    Protocol,
    _row,
    baseline_rows,
    feature_tensor,
    learn_blend,
    space_for,
    tune_on_validation,
    visible_times,
)
from .features import fit_space
from .ranker import (
    LAST,
    Phase,
    RankerConfig,
    as_float16,
    choose_ranker,
    fit_sources,
    full_scores,
    group_table,
    title_years,
)
from .split import leave_last_out
from .twotower import (
    Encoder,
    MixedEncoder,
    TwoTowerConfig,
    export_base_encoder,
    export_two_tower,
    mix_vectors,
    train_two_tower,
    user_text,
)

FORMAT = 1


@dataclass
class BuildConfig:
    data: str
    out: str
    threshold: float | None = 4.0
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    bundle: str | None = None       # an existing embedding bundle: skip training
    base_bundle: str | None = None  # the base encoder exported as a bundle (None: exported by the build)
    text_mix: float | None = None   # base-encoder weight in the text tower (None: chosen on cold-start validation)
    base_model: str | None = None   # override two_tower.base_model (e.g. a tiny test model)
    baselines: bool = True
    bpr: BPRConfig | None = None    # None = BPRConfig(seed=seed)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    cold_fraction: float = 0.1      # the last 10 % of interaction times: cold-start items and users
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
        if self.text_mix is not None and not 0.0 <= self.text_mix <= 1.0:
            raise ConfigError(f"text_mix must be in [0, 1], got {self.text_mix}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_toml(cls, path, **overrides) -> BuildConfig:
        """``[recommender]`` table (+ ``[recommender.two_tower]``, ``[recommender.bpr]``); relative
        ``data`` / ``out`` / ``bundle`` paths are relative to the TOML file; ``overrides`` win when not None."""
        from tuneforge.config import read_toml

        values = dict(read_toml(path, table="recommender"))
        base = Path(path).resolve().parent
        for key in ("data", "out", "bundle", "base_bundle"):
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
    cold_val = validation_cold_split(interactions, positives, config.cold_fraction)
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
        say("training the two-tower model through the engine (events before the cold-start validation cut-off)")
        run_dir = train_two_tower(catalogue, split, config.two_tower, out / "work", base_model=config.base_model,
                                  progress=progress is not None, before=cold_val.cutoff)
        say("exporting it")
        bundle = str(export_two_tower(run_dir, out / "work" / "exports"))
    base_bundle = config.base_bundle
    if base_bundle is None and config.text_mix != 0.0:
        say("exporting the base encoder as shipped (the text tower's partner on new items)")
        base_bundle = str(export_base_encoder(config.base_model or config.two_tower.base_model, catalogue,
                                              out / "work" / "base", max_length=config.two_tower.max_length))
    train_s = time.perf_counter() - t0
    tuned_enc = Encoder(bundle, threads=config.threads)
    base_enc = Encoder(base_bundle, threads=config.threads) if base_bundle and config.text_mix != 0.0 else None
    say(f"embedding {n_items} items")
    t0 = time.perf_counter()
    texts = [catalogue.text(i) for i in range(n_items)]
    vec_tuned = tuned_enc(texts)
    vec_base = base_enc(texts) if base_enc is not None else None
    if config.text_mix is None:
        say("choosing the text tower's mix (fine-tuned vs base encoder) on the cold-start validation window")
        mix, mix_log = choose_text_mix(cold_val, catalogue, (tuned_enc, vec_tuned),
                                       None if base_enc is None else (base_enc, vec_base), config.two_tower.history,
                                       config.k, progress=say)
    else:
        mix, mix_log = config.text_mix, {"given": config.text_mix}
    encoder = MixedEncoder(tuned_enc, base_enc, mix)
    item_vectors = mix_vectors(vec_tuned, vec_base, mix)
    say(f"  text tower = {1 - mix:g} x fine-tuned + {mix:g} x base encoder (cosine)")
    n = config.two_tower.history
    u_val = encoder([user_text(catalogue, h, n) or "no history" for h in val.histories])
    u_test = encoder([user_text(catalogue, h, n) or "no history" for h in test.histories])
    embed_s = time.perf_counter() - t0
    rows.append(_row("text tower (two-tower)", test, u_test @ item_vectors.T, embed_s + train_s, config.k))

    say("fitting the blend on validation")
    t0 = time.perf_counter()
    times = lambda p: visible_times(split, p)  # noqa: E731
    space_val = space_for(split, catalogue, item_vectors, "val", times, knn=tuned.knn["val"])
    space_test = space_for(split, catalogue, item_vectors, "test", times, knn=tuned.knn["test"])
    blend = learn_blend(feature_tensor(space_val, val, u_val), val, seed=config.seed)
    x_test = feature_tensor(space_test, test, u_test)
    rows.append(_row("text tower + blend", test, blend.score(x_test), time.perf_counter() - t0 + embed_s + train_s,
                     config.k))
    del x_test

    say("fitting the LightGBM ranker on validation (candidates: EASE + text tower + item-kNN)")
    t0 = time.perf_counter()
    years = title_years(catalogue.titles)
    phases = [Phase(val.users, *_group_table(fit_sources(tuned.ease["val"], space_val, config.ranker.per_source,
                                                         years), val, u_val, targets=True))]
    for j in range(1, config.ranker.extra_phases + 1):   # pseudo-validation phases j steps earlier
        sj = split.earlier(j)
        pj = Protocol(sj, n_items, "val", config.seed)
        uj, ij = sj.matrix_pairs("val")
        knn_j = ItemKNN(tuned.knn_neighbours).fit(uj, ij, len(sj.train), n_items)
        space_j = space_for(sj, catalogue, item_vectors, "val", lambda p, s=sj: visible_times(s, p), knn=knn_j)
        ease_j = EASE(tuned.ease_lambda).fit(uj, ij, len(sj.train), n_items)
        vec_j = encoder([user_text(catalogue, h, n) or "no history" for h in pj.histories])
        phases.append(Phase(pj.users, *_group_table(fit_sources(ease_j, space_j, config.ranker.per_source, years),
                                                    pj, vec_j, targets=True)))
        del ease_j
        say(f"  pseudo-validation phase {j}: {len(pj.users)} users")
    ranker, ranker_info = choose_ranker(phases, config.ranker, progress=say)
    features = tuple(ranker_info["features"])
    del phases
    src_test = fit_sources(tuned.ease["test"], space_test, config.ranker.per_source, years, features)
    cands, x, _ = _group_table(src_test, test, u_test)
    fallback = tuned.ease["test"].scores(test.users, test.histories)
    recall = float(np.mean([t in set(c.tolist()) for c, t in zip(cands, test.targets)]))
    rows.append(_row("ranker (LightGBM lambdarank)", test, full_scores(ranker, cands, x, fallback, n_items),
                     time.perf_counter() - t0 + embed_s + train_s, config.k))
    ranker_info.update(test_candidate_recall=round(recall, 4), importance=dict(zip(
        features, (round(float(v), 1) for v in ranker.feature_importance("gain")))))
    say(f"  ranker: features {ranker_info['feature_set']}, {ranker_info['extra_phases']} extra phases, "
        f"tree {ranker_info['tree']}, {ranker_info['rounds']} rounds (all chosen by a group "
        f"{config.ranker.folds}-fold on validation users), test candidate recall {recall:.3f}")
    del fallback, x

    say("cold start: new items and new users (models see events before the cut-off only)")
    t0 = time.perf_counter()
    parts = []
    if 0.0 < mix:
        parts.append(("fine-tuned tower alone", tuned_enc, vec_tuned))
    if mix < 1.0 and base_enc is not None:
        parts.append(("base encoder alone (not fine-tuned)", base_enc, vec_base))
    cold_rows = cold_start_rows(cold, catalogue, item_vectors, encoder, tuned, blend, ranker, config,
                                text_models=parts, progress=say, ranker_features=features)
    cold_s = time.perf_counter() - t0
    report = EvalReport(rows, seed=config.seed, users=len(test.users), items=n_items, cold=cold_rows,
                        settings={"threshold": config.threshold, "two_tower": config.two_tower.to_dict(),
                                  "bundle": str(bundle), "base_bundle": base_bundle, "text_mix": mix,
                                  "text_mix_validation": mix_log, "blend": blend.to_dict(),
                                  "bpr": asdict(config.bpr), "data": str(config.data), "train_s": round(train_s, 1),
                                  "ease_lambda": tuned.ease_lambda, "knn_neighbours": tuned.knn_neighbours,
                                  "validation": tuned.log, "ranker": ranker_info,
                                  "cold_start": {"fraction": config.cold_fraction, "cutoff": cold.cutoff,
                                                 "validation_cutoff": cold_val.cutoff,
                                                 "new_items": int(len(cold.new_items)), "seconds": round(cold_s, 1)}},
                        wall_s=time.perf_counter() - t_start)
    say("writing the serving folder (EASE, item-kNN and features over every positive)")
    _write_folder(out, catalogue, positives, item_vectors, blend, bundle, config, report, encoder, tuned, ranker,
                  base_bundle=base_bundle, mix=mix, features=features)
    report.wall_s = time.perf_counter() - t_start
    (out / "eval.json").write_text(json.dumps(report.to_dict(), indent=2))
    (out / "eval.md").write_text(report.markdown(config.k) + "\n")
    return out, report


def _group_table(sources, proto: Protocol, user_vectors, targets: bool = False):
    knn = sources.space.knn.scores(proto.users, proto.histories)
    return group_table(sources, user_vectors, proto.histories, proto.now,
                       targets=proto.targets if targets else None, knn=knn)


def _rel(path, out: Path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(out.resolve()))
    except ValueError:
        return str(p)


def _write_folder(out: Path, catalogue, positives, item_vectors, blend, bundle, config: BuildConfig,
                  report: EvalReport, encoder, tuned, ranker, *, base_bundle=None, mix: float = 0.0,
                  features=()) -> None:
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
    b16 = as_float16(ease.B)
    np.save(tmp / "ease.npy", b16)
    del ease
    ranker.save_model(str(tmp / "ranker.txt"))
    histories = {}
    by_time = np.lexsort((t, u))
    for uu, ii, tt in zip(u[by_time], it[by_time], t[by_time]):
        h = histories.setdefault(positives.user_ids[uu], [[], []])
        h[0].append(catalogue.ids[ii])
        h[1].append(int(tt))
    (tmp / "histories.json").write_text(json.dumps(histories))
    # known users' EASE scores (whole history, last items), summed once here as serving would (float32
    # sums of the float16 B), stored in float16: a long history costs a row read, not a sum of rows
    b32 = b16.astype(np.float32)
    del b16
    rows_all, rows_last = [], []
    for h in histories.values():
        hi = np.array([catalogue.index(i) for i in h[0]], dtype=np.int64)
        s_all = b32[hi].sum(0)
        rows_all.append(s_all.astype(np.float16))
        rows_last.append((b32[hi[-LAST:]].sum(0) if len(hi) > LAST else s_all).astype(np.float16))
    del b32
    empty = np.zeros((0, len(catalogue)), np.float16)
    np.save(tmp / "user_ease.npy", np.stack(rows_all) if rows_all else empty)
    np.save(tmp / "user_ease_last.npy", np.stack(rows_last) if rows_last else empty)
    del rows_all, rows_last
    # known users' vectors, computed once here like the items' (rows follow histories.json)
    n = config.two_tower.history
    texts = [user_text(catalogue, [catalogue.index(i) for i in h[0]], n) or "no history" for h in histories.values()]
    np.save(tmp / "user_vectors.npy", encoder(texts) if texts else np.zeros((0, item_vectors.shape[1]), np.float32))
    meta = {"format": FORMAT, "bundle": _rel(bundle, out), "threshold": config.threshold,
            "text": {"mix": mix, "base_bundle": _rel(base_bundle, out) if base_bundle and mix > 0 else None},
            "history": config.two_tower.history, "blend": blend.to_dict(), "items": len(catalogue),
            "ranker": {"features": list(features), "per_source": config.ranker.per_source,
                       "ease_lambda": tuned.ease_lambda, "knn_neighbours": tuned.knn_neighbours,
                       "user_scores": True},
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
