"""Support bot: per-turn latency on CPU, in process, warm, transcript write included.

    python bench/support_bot_latency.py [--bot-dir bots/support-bot] [--passages 10000] [--turns 600] [--sequential]

Two knowledge bases, measured in one run with the same bot folder's bundles:

* ``bundled``: the bot's own knowledge base (15 policy pages, a few dozen passages);
* ``10k``: the same pages plus filler passages up to ``--passages`` (Twitter financial news
  headlines, MIT licence, one passage each), so retrieval searches a 10k-passage FAISS index.

Each turn goes through :meth:`Conversation.turn` (intent model -> template / retrieval / clarify /
hand-off -> SQLite transcript row), with questions drawn from the BANKING77 test set, the
paraphrased knowledge-base questions and the out-of-scope set.  Latency is grouped by the kind
of answer the turn got.  By default a turn runs the encoder and the intent model at the same
time, one thread each (see ``Bot.load``); ``--sequential`` also measures the bundled bot with the
two one after the other, two threads each, in the same run.  Results:
bench/results/support_bot_latency.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, TWITTER, save

from tuneforge.runinfo import cpu_description
from tuneforge.runtime import available_cpus


def filler_passages(n: int) -> list[str]:
    with open(TWITTER / "train.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"].replace("\n", " ").strip() for r in csv.DictReader(f)]
    with open(TWITTER / "valid.csv", newline="", encoding="utf-8") as f:
        texts += [r["text"].replace("\n", " ").strip() for r in csv.DictReader(f)]
    texts = list(dict.fromkeys(t for t in texts if len(t) > 20))
    return texts[:n]


def make_bot(src: Path, work: Path, passages: int) -> Path:
    """A copy of ``src`` (bot.json, thresholds) whose knowledge base holds ``passages`` chunks."""
    from tuneforge.plugins.support_bot.bot import BotConfig, artefacts, resolve
    from tuneforge.plugins.support_bot.knowledge import load_documents

    config = BotConfig.load(src)
    src_parts = artefacts(src)
    dest = work / f"bot-{passages or 'bundled'}"
    dest.mkdir(parents=True)
    shutil.copy(src_parts / "thresholds.json", dest / "thresholds.json")
    if (src_parts / "router").is_dir():
        shutil.copytree(src_parts / "router", dest / "router")      # the conversation layer's references
    kb = dest / "kb"
    shutil.copytree(resolve(src, config.kb_dir), kb)
    if passages:
        have = sum(len(d.chunks) for d in load_documents(kb))
        # one Markdown section per headline: one passage each (plain paragraphs this short get glued)
        sections = [f"## Headline {i}\n\n{t}\n" for i, t in enumerate(filler_passages(passages - have))]
        (kb / "filler.md").write_text("# Market headlines\n\n" + "\n".join(sections), encoding="utf-8")
    for field in ("intent_bundle", "encoder_bundle", "answers"):
        setattr(config, field, str(resolve(src, getattr(config, field))))
    config.kb_dir = str(kb)
    config.save(dest)
    return dest


def questions(turns: int, seed: int) -> list[str]:
    from tuneforge.plugins.support_bot.datasets import kb_questions, labelled_questions, out_of_scope
    from tuneforge.plugins.support_bot.router import eval_rows

    rng = random.Random(seed)
    intents = [q for q, _ in labelled_questions(half="evaluation")]
    kbq = [q for q, _ in kb_questions()]
    oos = out_of_scope(half="evaluation")
    talk = [t for t, _ in eval_rows("small_talk", "act", "evaluation")]
    off = [t for t, _ in eval_rows("off_domain", "domain", "evaluation")]
    mix = rng.sample(intents, min(len(intents), turns // 2)) + kbq + oos + rng.sample(talk, 40) + rng.sample(off, 40)
    rng.shuffle(mix)
    return mix[:turns] if len(mix) > turns else mix


def measure(bot_dir: Path, texts: list[str], warmup: int = 30, threads: int | None = None) -> dict:
    from tuneforge.plugins.support_bot.service import load_conversation

    t = time.perf_counter()
    conversation, bot = load_conversation(bot_dir, threads=threads)
    load_s = time.perf_counter() - t
    for text in texts[:warmup]:
        conversation.turn("warmup", text)
    by_kind: dict[str, list[float]] = {}
    session = conversation.new_session()
    for i, text in enumerate(texts):
        start = time.perf_counter()
        answer = conversation.turn(f"{session}-{i % 50}", text)
        by_kind.setdefault(answer.kind, []).append((time.perf_counter() - start) * 1000)
    rows = len(conversation.store.turns(limit=10**9))
    conversation.store.close()
    bot.close()
    out = {"chunks": len(bot.index), "index": bot.index.kind, "load_seconds": round(load_s, 2),
           "turns": len(texts), "transcript_rows": rows - warmup, "kinds": {}}
    for kind, values in sorted(by_kind.items()):
        v = np.asarray(values)
        out["kinds"][kind] = {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 2),
                              "p95_ms": round(float(np.percentile(v, 95)), 2),
                              "mean_ms": round(float(v.mean()), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot-dir", default=ROOT / "bots" / "support-bot", type=Path)
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequential", action="store_true",
                        help="also measure the bundled bot with its two models run one after the other")
    args = parser.parse_args()
    texts = questions(args.turns, args.seed)
    results = {"cpu": cpu_description(), "bot_dir": str(args.bot_dir), "kb": {}}
    with tempfile.TemporaryDirectory(prefix="tf-botlat-") as work:
        for name, n in (("bundled", 0), (f"{args.passages // 1000}k", args.passages)):
            bot_dir = make_bot(args.bot_dir.resolve(), Path(work), n)
            if args.sequential and n == 0:
                # the same turns with the two models one after the other, two threads each (the
                # pre-parallel way), measured in this run beside the default
                r = measure(bot_dir, texts, threads=available_cpus())
                results["kb"]["bundled-sequential"] = r
                print(f"bundled, models one after the other ({available_cpus()} threads each):", flush=True)
                for kind, k in r["kinds"].items():
                    print(f"   {kind:10} n={k['n']:4}  p50 {k['p50_ms']:6.2f} ms  p95 {k['p95_ms']:6.2f} ms",
                          flush=True)
            r = measure(bot_dir, texts)
            results["kb"][name] = r
            print(f"{name:8} {r['chunks']:6} chunks ({r['index']}), {r['turns']} turns, "
                  f"{r['transcript_rows']} transcript rows, load {r['load_seconds']} s", flush=True)
            for kind, k in r["kinds"].items():
                print(f"   {kind:10} n={k['n']:4}  p50 {k['p50_ms']:6.2f} ms  p95 {k['p95_ms']:6.2f} ms", flush=True)
    save("support_bot_latency", results)
    print(json.dumps({n: {k: v["p95_ms"] for k, v in r["kinds"].items()} for n, r in results["kb"].items()}))


if __name__ == "__main__":
    main()
