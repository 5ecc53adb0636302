"""Serving speed and accuracy of an exported bundle against PyTorch eager, side by side, one run.

    python bench/runtime_bench.py --run runs/<id> --bundle exports/<name>/<v>   [--n1 200]

Batch 1: p50/p95 latency per request, tokenisation included, over the first ``--n1`` BANKING77
test questions, in blocks per engine alternating over 4 rounds (so drift hits all alike, and
no engine's spinning thread pool overlaps another's requests).
Batch 32: throughput over the whole test set (3,080 questions):
  * ``pytorch``          TaskModel eager, HF fast tokenizer, file-order chunks of 32 padded to the longest
  * ``ort naive``        the bundle's plain model.onnx driven the same way (file order, default session)
  * ``ort <variant>``    tuneforge's Predictor: length-sorted batches of 32, threads from available CPUs
Also: test accuracy of each, bundle file sizes, and cold start (fresh process: import, load, one answer).
Results: bench/results/runtime.json.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import BANKING, machine, save

BATCH = 32
ROUNDS = 4


def read_test() -> tuple[list[str], list[str]]:
    with open(BANKING / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--n1", type=int, default=200)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    from tuneforge.modeling import TaskModel
    from tuneforge.runtime import Predictor

    texts, gold = read_test()
    bundle = Path(args.bundle)
    model = TaskModel.load(Path(args.run) / "model")
    hf_tok = AutoTokenizer.from_pretrained(Path(args.run) / "model" / "encoder")
    labels = model.spec.labels
    max_len = model.spec.max_length

    def torch_fn(batch: list[str]) -> np.ndarray:
        enc = hf_tok(batch, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            return model(enc["input_ids"], enc["attention_mask"]).numpy()

    naive = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    naive_inputs = {i.name for i in naive.get_inputs()}

    def naive_fn(batch: list[str]) -> np.ndarray:
        enc = hf_tok(batch, padding=True, truncation=True, max_length=max_len, return_tensors="np")
        return naive.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in naive_inputs})[0]

    predictors = {v: Predictor.load(bundle, variant=v) for v in ("fp32", "fp32_opt", "int8")
                  if (bundle / {"fp32": "model.onnx", "fp32_opt": "model.opt.onnx",
                                "int8": "model.int8.onnx"}[v]).is_file()}
    engines = {"pytorch": torch_fn, "ort naive": naive_fn}
    for name, p in predictors.items():
        engines[f"ort {name}"] = (lambda pr: (lambda batch: pr.predict_raw(batch, batch_size=BATCH)))(p)

    for fn in engines.values():  # warm up
        fn(texts[:BATCH])
        fn(texts[:1])

    # Blocks of requests per engine, engines alternating over rounds: drift hits all alike,
    # while one engine's idle-spinning thread pool never overlaps another engine's requests.
    lat: dict[str, list[float]] = {k: [] for k in engines}
    block = max(1, args.n1 // ROUNDS)
    for start in range(0, args.n1, block):
        for name, fn in engines.items():
            time.sleep(0.3)
            for text in texts[start:start + block]:
                t = time.perf_counter()
                fn([text])
                lat[name].append(time.perf_counter() - t)

    results: dict[str, dict] = {}
    for name, fn in engines.items():
        t = time.perf_counter()
        if name.startswith("ort ") and name != "ort naive":
            logits = fn(texts)  # the Predictor sorts by length and batches by 32 itself
        else:
            logits = np.concatenate([fn(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)])
        seconds = time.perf_counter() - t
        pred = [labels[i] for i in np.asarray(logits).argmax(-1)]
        results[name] = {"batch1_p50_ms": pct(lat[name], 50), "batch1_p95_ms": pct(lat[name], 95),
                         "batch32_items_per_s": len(texts) / seconds,
                         "accuracy": float(np.mean([p == g for p, g in zip(pred, gold)]))}
    base = results["pytorch"]
    for r in results.values():
        r["speedup_batch1_p50"] = base["batch1_p50_ms"] / r["batch1_p50_ms"]
        r["speedup_batch32"] = r["batch32_items_per_s"] / base["batch32_items_per_s"]
        r["accuracy_delta_points"] = 100 * (r["accuracy"] - base["accuracy"])

    sizes = {p.name: p.stat().st_size for p in bundle.glob("model*.onnx")}
    code = ("import time; t=time.perf_counter(); from tuneforge.runtime import Predictor; "
            f"p=Predictor.load({str(bundle)!r}); p.predict(['where is my card?']); "
            "print(time.perf_counter()-t)")
    cold = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        cold.append(time.perf_counter() - t)
    out = {"machine": machine(), "ort_threads": {k: p.threads for k, p in predictors.items()},
           "bundle": str(bundle), "run": args.run, "n_batch1": args.n1, "n_test": len(texts),
           "results": results, "file_sizes": sizes,
           "int8_size_ratio": sizes.get("model.int8.onnx", 0) / sizes["model.onnx"],
           "cold_start_s": {"median": statistics.median(cold), "max": max(cold), "runs": cold}}
    save("runtime", out)
    print(f"{'engine':14} {'b1 p50':>8} {'b1 p95':>8} {'b32 /s':>8} {'x b1':>6} {'x b32':>6} {'acc':>7}")
    for name, r in results.items():
        print(f"{name:14} {r['batch1_p50_ms']:8.2f} {r['batch1_p95_ms']:8.2f} {r['batch32_items_per_s']:8.0f} "
              f"{r['speedup_batch1_p50']:6.2f} {r['speedup_batch32']:6.2f} {r['accuracy']:7.4f}")
    print(f"int8 size ratio {out['int8_size_ratio']:.2f}; cold start median {out['cold_start_s']['median']:.2f} s")


if __name__ == "__main__":
    main()
