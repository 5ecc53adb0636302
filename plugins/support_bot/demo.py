"""`make demo`: fine-tune the support-bot intent model, export it, score it, then talk to the bot.

    tuneforge support-bot demo [--mode top-k] [--epochs 3] [--runs runs] [--exports exports] [--bot-dir DIR]
    python -m tuneforge.apps.demo        (the same)

Every step goes through the public Python API -- the same calls a user script makes.
"""

from __future__ import annotations

import time

from rich.console import Console

# A scripted customer: a greeting (small talk), two questions an intent answers (templates), two the
# policy pages answer (retrieval, with the source), an off-topic request (a polite decline, no ticket),
# one a human must handle (hand-off + ticket), thanks, then /quit.
CONVERSATION = [
    "hi there",
    "I still haven't received my new card, it's been two weeks",
    "How do I top up with Apple Pay?",
    "how much is the premium plan per month",
    "how long after a purchase can I still raise a chargeback",
    "what's the weather like in london tomorrow",
    "I want to talk to a real person about my mortgage application",
    "thanks!",
    "/quit",
]


def run_demo(args) -> int:
    """The demo's steps; ``args`` has mode, top_k, epochs, runs, exports, bot_dir."""
    console = Console()
    timings = {}

    from tuneforge.data import ColumnMap, load_dataset  # noqa: F401 - warm import
    from tuneforge.evaluate import evaluate_bundle
    from tuneforge.export import export_run
    from tuneforge.plugins.support_bot import DATA, TASK
    from tuneforge.plugins.support_bot.build import build_bot
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

    console.rule("4/4 build the support bot (retrieval index, calibrated thresholds) and talk to it")
    t = time.perf_counter()
    build_bot(args.bot_dir, bundle, exports=args.exports, encoder_variants=["fp32", "int8"], measure=False,
              progress=lambda line: console.print(line))
    timings["bot"] = time.perf_counter() - t
    talk(console, args.bot_dir)
    console.print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    console.print(f"next: tuneforge chat --debug   |   tuneforge serve support-bot   |   "
                  f"tuneforge predict {bundle} --text \"where is my card?\"")
    return 0


def talk(console: Console, bot_dir: str) -> None:
    """The scripted conversation, shown as the terminal chat shows it (with --debug details)."""
    from tuneforge.plugins.support_bot.service import load_conversation

    conversation, _ = load_conversation(bot_dir)
    session = conversation.new_session()
    console.print(f"[bold]bot>[/] {conversation.greeting()}")
    for text in CONVERSATION:
        console.print(f"[bold cyan]you>[/] {text}")
        answer = conversation.turn(session, text)
        console.print(f"[bold]bot>[/] {answer.text}", highlight=False)
        if answer.kind != "quit":
            where = f" intent={answer.intent}" if answer.intent else ""
            console.print(f"     [dim]kind={answer.kind}{where} confidence={answer.confidence:.2f} "
                          f"({answer.timings_ms.get('total', 0.0):.1f} ms)[/]")
    conversation.store.close()

