"""Time the variants on this machine: batch-1 latency and batch-32 throughput.

Only the ``session.run`` call is timed (tokenisation is identical for all
variants).  Sessions use the thread count the runtime would use here.  Fusion
and INT8 do not always win on small CPUs, so the export measures instead of
assuming; the numbers describe the export machine and are recorded with its CPU.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np


def timing_batches(tokenizer, rows: list[dict], inputs: list[str], *, pairs: bool,
                   single: int = 50, bulk_rows: int = 256, bulk_batch: int = 32):
    """(``single`` one-row feeds, batch-32 feeds over ``bulk_rows`` rows) from real rows."""
    rows = rows or [{"text": "hello world"}]
    cycled = (rows * (1 + max(single, bulk_rows) // len(rows)))

    def feeds(chosen, batch):
        texts = [r["text"] for r in chosen]
        tp = [r.get("text_pair") or "" for r in chosen] if pairs else None
        return [b.feed for b in tokenizer.batches(texts, tp, inputs=inputs, batch_size=batch)]

    return feeds(cycled[:single], 1), feeds(cycled[:bulk_rows], bulk_batch)


def time_runs(runs: dict, single: list[dict], bulk: list[dict], *, rounds: int = 3,
              warmup: int = 3) -> dict[str, dict]:
    """Timings for several ``run(feed)`` callables, measured round-robin.

    Each round times every variant once (batch 1 over ``single``, then one pass of
    ``bulk``), so drift and noisy neighbours hit all variants alike.  Returns per
    variant batch-1 p50/p90/mean (ms, over all rounds) and batch-32 items/s.
    """
    for run in runs.values():
        for feed in single[:warmup] + bulk[:1]:
            run(feed)
    lat = {name: [] for name in runs}
    bulk_time = dict.fromkeys(runs, 0.0)
    bulk_items = sum(len(next(iter(f.values()))) for f in bulk)
    for _ in range(rounds):
        for name, run in runs.items():
            for feed in single:
                t0 = time.perf_counter()
                run(feed)
                lat[name].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            for feed in bulk:
                run(feed)
            bulk_time[name] += time.perf_counter() - t0
    out = {}
    for name in runs:
        q = np.percentile(lat[name], [50, 90])
        out[name] = {"batch1_p50_ms": round(float(q[0]), 4), "batch1_p90_ms": round(float(q[1]), 4),
                     "batch1_mean_ms": round(statistics.fmean(lat[name]), 4),
                     "batch1_runs": len(lat[name]),
                     "batch32_items_per_s": round(bulk_items * rounds / bulk_time[name], 2),
                     "batch32_items": bulk_items * rounds}
    return out


def time_variants(paths: dict, single, bulk, *, threads: int, provider: str,
                  rounds: int = 3, disabled_optimizers: dict | None = None) -> dict[str, dict]:
    """Open a runner per variant file (onnxruntime on ``provider``; OpenVINO for an ``.xml`` IR)
    and time them all round-robin.  ``disabled_optimizers``: name -> onnxruntime optimizers
    that graph runs without."""
    from ..runtime.session import open_runner

    off = disabled_optimizers or {}
    runs = {name: open_runner(path, threads, [provider], disabled_optimizers=tuple(off.get(name, ())))
            for name, path in paths.items()}
    result = time_runs(runs, single, bulk, rounds=rounds)
    for name, run in runs.items():
        result[name]["provider"] = run.provider
        if run.engine != "onnxruntime":
            result[name]["engine"] = run.engine
    return result


def machine() -> dict:
    from ..runinfo import cpu_description
    from ..runtime.session import available_cpus

    flags = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), []))
    except OSError:
        pass
    int8 = [f for f in ("avx2", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return {"cpu": cpu_description(), "cpus_available": available_cpus(),
            "cpu_count": os.cpu_count(), "int8_features": int8, "platform": platform.platform()}


def fastest(timings: dict[str, dict]) -> dict:
    """Names of the fastest variants by batch-1 p50 and by batch-32 throughput."""
    if not timings:
        return {}
    return {"batch1_latency": min(timings, key=lambda v: timings[v]["batch1_p50_ms"]),
            "batch32_throughput": max(timings, key=lambda v: timings[v]["batch32_items_per_s"])}
