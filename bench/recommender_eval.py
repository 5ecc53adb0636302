"""Recommender benchmark: the leave-last-out table, the cold-start table and serving latency.

Warm rows: popularity, item-kNN and EASE (neighbours / lambda chosen on validation), BPR-MF,
ALS (``implicit``, if installed), the text tower, text tower + blend, the LightGBM ranker;
full-catalogue and sampled-100 protocols.  Cold-start rows: new items (ranked among the new
items) and new users (1 or 2 interactions).  Seed and wall time.  Then the latency of
``recommend(user, k=10)`` for known users, warm, on this machine's CPU (p50 / p95 / p99
over ``--latency-users`` calls; the ranker re-rank included).

    nice -n 19 python bench/recommender_eval.py --data ../shared/data/movielens_small \\
        --out /tmp/recommender/bench                       # trains the two-tower model (slow on CPU)
    nice -n 19 python bench/recommender_eval.py --bundle exports/two-tower/v1 ...   # reuse a bundle

MovieLens is research-only (no redistribution): it is read in place from ``--data``, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def latency(folder: Path, users: int, k: int, threads: int | None, seed: int, embed_now: bool = False,
            blend_only: bool = False) -> dict:
    """``embed_now``: ignore the build-time user vectors and run the user tower on every call;
    ``blend_only``: rank with the linear blend instead of the LightGBM ranker (its cost)."""
    import numpy as np

    from tuneforge.plugins.recommender.service import Recommender

    rec = Recommender.load(folder, threads=threads)
    if embed_now:
        rec.user_rows = {}
    if blend_only:
        rec.ranker = None
    rng = np.random.default_rng(seed)
    ids = list(rec.histories)
    chosen = [ids[i] for i in rng.choice(len(ids), size=min(users, len(ids)), replace=False)]
    for u in chosen[:20]:  # warm-up
        rec.recommend(u, k=k)
    times = []
    for u in chosen:
        t0 = time.perf_counter()
        rec.recommend(u, k=k)
        times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    taste = []
    for text in ("space adventure with robots", "romantic comedy in paris", "dark psychological thriller"):
        t0 = time.perf_counter()
        rec.recommend(taste=text, k=k)
        taste.append((time.perf_counter() - t0) * 1000)
    return {"calls": len(t), "p50_ms": round(float(np.percentile(t, 50)), 2),
            "p95_ms": round(float(np.percentile(t, 95)), 2), "p99_ms": round(float(np.percentile(t, 99)), 2),
            "taste_mean_ms": round(float(np.mean(taste)), 2), "items": len(rec.catalogue),
            "threads": rec.encoder.predictor.threads, "variant": rec.encoder.predictor.variant}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/movielens_small")
    ap.add_argument("--out", default="/tmp/recommender/bench")
    ap.add_argument("--bundle", help="an exported two-tower bundle (skip training)")
    ap.add_argument("--threshold", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--pairs-per-user", type=int, default=6)
    ap.add_argument("--history", type=int, default=5, help="items in the user text (as the bundle was trained)")
    ap.add_argument("--mode", default="top-k")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all CPUs)")
    ap.add_argument("--latency-users", type=int, default=300)
    ap.add_argument("--base-bundle", help="the base encoder already exported as a bundle (skip its export)")
    ap.add_argument("--text-mix", type=float, default=None,
                    help="base-encoder weight in the text tower (default: chosen on the cold-start validation window)")
    ap.add_argument("--cold-fraction", type=float, default=0.1)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from tuneforge.plugins.recommender.build import BuildConfig, build_recommender
    from tuneforge.plugins.recommender.twotower import TwoTowerConfig

    t0 = time.perf_counter()
    cfg = BuildConfig(data=args.data, out=args.out, threshold=args.threshold, bundle=args.bundle, seed=args.seed,
                      two_tower=TwoTowerConfig(epochs=args.epochs, pairs_per_user=args.pairs_per_user,
                                               history=args.history, mode=args.mode, seed=args.seed),
                      threads=args.threads, base_bundle=args.base_bundle, text_mix=args.text_mix,
                      cold_fraction=args.cold_fraction)
    folder, report = build_recommender(cfg, progress=lambda s: print(f"[{time.perf_counter() - t0:7.1f}s] {s}",
                                                                     flush=True))
    rows = {r.model.split(" (")[0]: r for r in report.rows}
    ease, ranker, blend = (rows[m].full for m in ("EASE", "ranker", "text tower + blend"))
    lat = latency(folder, args.latency_users, 10, args.threads, args.seed)
    lat_now = latency(folder, args.latency_users, 10, args.threads, args.seed, embed_now=True)
    lat_blend = latency(folder, args.latency_users, 10, args.threads, args.seed, blend_only=True)
    print()
    print(f"{args.data}, threshold {args.threshold}")
    print(report.markdown())
    print(f"\nranker vs EASE: HR@10 {ranker['hr@10'] / ease['hr@10']:.2f}x, NDCG@10 "
          f"{ranker['ndcg@10'] / ease['ndcg@10']:.2f}x (target >= 1.2x both); blend vs EASE: HR@10 "
          f"{blend['hr@10'] / ease['hr@10']:.2f}x")
    s = report.settings
    cold = {(c["protocol"], c["model"].split(" (")[0]): c for c in report.cold}
    if ("cold items", "text tower") in cold:
        tt = cold["cold items", "text tower"]["hr@10"]
        for name in ("popularity", "popularity so far", "popularity oracle"):
            base = cold.get(("cold items", name))
            if base:
                ratio = f"{tt / base['hr@10']:.2f}x" if base["hr@10"] > 0 else "inf (popularity 0)"
                print(f"cold items: text tower HR@10 {tt:.4f} vs {name} {base['hr@10']:.4f}: {ratio} "
                      f"(target >= 3x)")
    print(f"text tower mix (base-encoder weight) {s['text_mix']}: {json.dumps(s['text_mix_validation'])}")
    print(f"validation: {json.dumps(s['validation'])}")
    print(f"ranker: {json.dumps({k: v for k, v in s['ranker'].items() if k not in ('config', 'search')})}")
    print(f"ranker search (validation CV): {json.dumps(s['ranker']['search'])}")
    print(f"build wall time {report.wall_s:.0f} s (two-tower training + exports {s['train_s']} s)")
    print(f"blend weights: {json.dumps(s['blend']['weights'])}")
    print(f"latency recommend(user, k=10), warm, {lat['calls']} known users, {lat['items']} items, "
          f"{lat['variant']} on {lat['threads']} CPU threads: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
          f"p99 {lat['p99_ms']} ms (target p95 <= 30 ms); taste queries {lat['taste_mean_ms']} ms mean")
    print(f"  with the user tower run on every call (history re-embedded): p50 {lat_now['p50_ms']} ms, "
          f"p95 {lat_now['p95_ms']} ms, p99 {lat_now['p99_ms']} ms")
    print(f"  the linear blend instead of the ranker: p50 {lat_blend['p50_ms']} ms, p95 {lat_blend['p95_ms']} ms, "
          f"p99 {lat_blend['p99_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"report": report.to_dict(), "latency": lat,
                                                 "latency_embed_now": lat_now,
                                                 "latency_blend_only": lat_blend}, indent=2))


if __name__ == "__main__":
    main()
