"""`make demo`: fine-tune the support-bot intent model, export it, score it, ask it questions.

    python -m tuneforge.apps.demo [--mode top-k] [--epochs 3] [--runs runs] [--exports exports]

Every step goes through the public Python API -- the same calls a user script makes.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

QUESTIONS = [
    "I still haven't received my new card, it's been two weeks",
    "How do I top up with Apple Pay?",
    "Why was I charged an extra fee for withdrawing cash?",
    "I think someone stole my phone and is using my account",
    "What exchange rate will I get if I pay in euros?",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="top-k", help="training mode (default top-k: fast on CPU)")
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--exports", default="exports")
    args = parser.parse_args(argv)
    console = Console()
    timings = {}

    from tuneforge.data import ColumnMap, load_dataset  # noqa: F401 - warm import
    from tuneforge.evaluate import evaluate_bundle
    from tuneforge.export import export_run
    from tuneforge.plugins.support_bot import DATA, TASK
    from tuneforge.runtime import Predictor
    from tuneforge.train import config_for_task, train

    console.rule(f"1/4 fine-tune {TASK} (BANKING77, mode {args.mode})")
    t = time.perf_counter()
    config = config_for_task(TASK, mode=args.mode, top_k=args.top_k, epochs=args.epochs,
                             output_dir=args.runs, learning_rate=1e-4)
    run = train(config)
    timings["train"] = time.perf_counter() - t
    console.print(f"run folder: {run.run_dir}  (test accuracy, PyTorch: "
                  f"{run.metrics['test']['accuracy']:.4f})")

    console.rule("2/4 export to ONNX (fp32, fused, int8) behind the parity gate")
    t = time.perf_counter()
    bundle = export_run(run.run_dir, out_dir=args.exports, name=TASK, progress=lambda line: console.print(line))
    timings["export"] = time.perf_counter() - t
    console.print(f"bundle: {bundle}")

    console.rule("3/4 score the served model on the BANKING77 test set (onnxruntime, no torch)")
    t = time.perf_counter()
    result = evaluate_bundle(bundle, DATA / "test.csv", columns={"label": "category"})
    timings["evaluate"] = time.perf_counter() - t
    console.print(f"variant {result['variant']} on {result['provider']}: "
                  f"accuracy {result['metrics']['accuracy']:.4f}, macro-F1 {result['metrics']['macro_f1']:.4f} "
                  f"on {result['metrics']['n']} questions")

    console.rule("4/4 ask it questions")
    predictor = Predictor.load(bundle)
    table = Table("question", "intent", "confidence")
    for question, pred in zip(QUESTIONS, predictor.predict(QUESTIONS)):
        table.add_row(question, pred.label, f"{pred.score:.2f}")
    console.print(table)
    console.print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    console.print(f"next: tuneforge predict {bundle} --text \"where is my card?\"   |   "
                  f"tuneforge serve {bundle}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
