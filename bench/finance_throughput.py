"""Finance monitor throughput, end to end (file -> alerts), beside the bare model, in one run.

    python bench/finance_throughput.py --bundle exports/finance-sentiment/v1 --run runs/<id> [--n 4000]

Same texts for all three (the Twitter financial news validation set, cycled to ``--n``):

* ``bare int8``       ``Predictor.predict_raw(texts, batch_size=32)``: the INT8 bundle alone, all
                      texts in one call (globally length-sorted batches) -- the ceiling
* ``monitor int8``    the whole monitor: a JSONL file with ids and timestamps is read, parsed,
                      de-duplicated, scored with the *same* loaded INT8 predictor, entities found
                      (cashtags + a watchlist), windows updated, four rules checked per entity, items
                      and alerts committed to SQLite, alerts written to a JSONL sink
* ``monitor pytorch`` the same monitor with a PyTorch-eager scorer (the run's TaskModel, HF fast
                      tokenizer, length-sorted batches of 32 per chunk, torch.inference_mode)

Each is timed ``--rounds`` times, interleaved, the median kept.  Targets: monitor int8 >= 85 % of
bare int8 items/s, and >= 2x monitor pytorch.  Threads: ``--threads`` for onnxruntime and torch.
Writes JSON to ``--out`` (default: stdout only); ``--save`` writes bench/results/finance_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "plugins" / "finance" / "data" / "valid.csv"
T0 = 1_714_521_600.0


def read_texts(path: Path, n: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    return list(itertools.islice(itertools.cycle(texts), n))


def write_stream(texts: list[str], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"i{i}", "ts": T0 + i * 10.0, "text": t, "source": "bench"}) + "\n")
    return path


CONFIG = """
[model]
scorer = "keywords"          # replaced by the injected scorer
batch_size = {batch}

[ingest]
files = ["{stream}"]
chunk = {chunk}
dead_letter = "dead.jsonl"

[state]
db = "monitor.db"

[alerts]
dedup = "2h"

[[rules]]
name = "negative-share"
kind = "negative_share"
window = "1h"
threshold = 0.6
min_volume = 8

[[rules]]
name = "negative-surge"
kind = "negative_surge"
bucket = "1h"
z = 4.0
min_count = 6

[[rules]]
name = "sentiment-drop"
kind = "sentiment_drop"
window = "1h"
baseline = "24h"
drop = 0.5
min_volume = 8

[[rules]]
name = "negative-run"
kind = "negative_run"
window = "3h"
event_share = 0.8
threshold = 7.0
min_count = 4
evidence = "probability"

[sinks]
console = false
jsonl = "alerts.jsonl"

[dashboard]
enabled = "off"

[[watchlist.companies]]
ticker = "TSLA"
name = "Tesla"
aliases = ["Tesla Inc"]

[[watchlist.companies]]
ticker = "AAPL"
name = "Apple"
aliases = ["Apple Inc"]

[[watchlist.companies]]
ticker = "AMZN"
name = "Amazon"
"""


class TorchScorer:
    """PyTorch eager: TaskModel + HF fast tokenizer, length-sorted batches within each call."""

    def __init__(self, run_dir: Path, batch_size: int, threads: int):
        import torch
        from transformers import AutoTokenizer

        from tuneforge.modeling import TaskModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = TaskModel.load(run_dir / "model").eval()
        self.tok = AutoTokenizer.from_pretrained(run_dir / "model" / "encoder")
        labels = [str(x).lower() for x in self.model.spec.labels]
        self.columns = [labels.index(n) for n in ("negative", "neutral", "positive")]
        self.batch_size, self.max_length = batch_size, self.model.spec.max_length

    def score(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 3), dtype=np.float32)
        with self.torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s:s + self.batch_size]
                enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
                logits = self.model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
                out[idx] = self.torch.softmax(logits, dim=-1).numpy()[:, self.columns]
        return out


def time_monitor(scorer, stream: Path, batch: int, chunk: int) -> tuple[float, dict]:
    from tuneforge.plugins.finance.config import MonitorConfig
    from tuneforge.plugins.finance.monitor import Monitor

    with tempfile.TemporaryDirectory(prefix="fin-bench-") as tmp:
        cfg_path = Path(tmp) / "monitor.toml"
        cfg_path.write_text(CONFIG.format(stream=stream, batch=batch, chunk=chunk))
        cfg = MonitorConfig.load(cfg_path)
        t = time.perf_counter()
        with Monitor(cfg, scorer=scorer) as mon:
            stats = mon.run()
            elapsed = time.perf_counter() - t
            status = mon.status()
        alerts = sum(1 for _ in open(Path(tmp) / "alerts.jsonl")) if (Path(tmp) / "alerts.jsonl").exists() else 0
    return elapsed, {"items": stats.scored, "alerts": alerts, "score_s": round(stats.score_s, 3),
                     "suppressed": status["suppressed"]}


def cpu_flags() -> dict:
    info = {"model": "", "avx2": False, "avx512f": False, "avx512_vnni": False, "avx_vnni": False}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and not info["model"]:
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni"):
                    info[k] = k in flags
                break
    except OSError:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="finance-sentiment bundle (exports/finance-sentiment/vN)")
    parser.add_argument("--run", help="the training run the bundle came from (for PyTorch eager); "
                                      "default: skip the PyTorch pipeline")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CSV with a text column")
    parser.add_argument("--n", type=int, default=4000, help="items")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=1024, help="records the monitor reads and scores together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--save", action="store_true", help="also write bench/results/finance_throughput.json")
    args = parser.parse_args()

    import onnxruntime as ort

    from tuneforge.plugins.finance.scoring import BundleScorer
    from tuneforge.runtime import Predictor

    texts = read_texts(Path(args.data), args.n)
    work = Path(tempfile.mkdtemp(prefix="fin-bench-stream-"))
    stream = write_stream(texts, work / "stream.jsonl")
    predictor = Predictor.load(args.bundle, variant=args.variant, threads=args.threads)
    scorer = BundleScorer(predictor, batch_size=args.batch_size)
    torch_scorer = TorchScorer(Path(args.run), args.batch_size, args.threads) if args.run else None
    predictor.predict_raw(texts[:64], batch_size=args.batch_size)          # warm-up
    if torch_scorer is not None:
        torch_scorer.score(texts[:64])

    times: dict[str, list[float]] = {"bare": [], "monitor": [], "torch": []}
    detail: dict[str, dict] = {}
    for r in range(args.rounds):
        t = time.perf_counter()
        predictor.predict_raw(texts, batch_size=args.batch_size)
        times["bare"].append(time.perf_counter() - t)
        elapsed, detail["monitor"] = time_monitor(scorer, stream, args.batch_size, args.chunk)
        times["monitor"].append(elapsed)
        if torch_scorer is not None:
            elapsed, detail["torch"] = time_monitor(torch_scorer, stream, args.batch_size, args.chunk)
            times["torch"].append(elapsed)
        print(f"round {r + 1}: " + ", ".join(f"{k} {len(texts) / v[-1]:.0f}/s" for k, v in times.items() if v),
              file=sys.stderr)

    rate = {k: len(texts) / statistics.median(v) for k, v in times.items() if v}
    result = {
        "items": len(texts), "batch_size": args.batch_size, "chunk": args.chunk, "threads": args.threads,
        "variant": predictor.variant, "bundle": str(predictor.root), "rounds": args.rounds,
        "items_per_s": {k: round(v, 1) for k, v in rate.items()},
        "monitor_vs_bare": round(rate["monitor"] / rate["bare"], 3),
        "monitor_vs_torch": round(rate["monitor"] / rate["torch"], 2) if "torch" in rate else None,
        "targets": {"monitor_vs_bare": 0.85, "monitor_vs_torch": 2.0},
        "detail": detail, "cpu": cpu_flags(), "onnxruntime": ort.__version__,
        "command": " ".join(sys.argv),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.save:
        sys.path.insert(0, str(ROOT / "bench"))
        from common import save

        save("finance_throughput", result)


if __name__ == "__main__":
    main()
