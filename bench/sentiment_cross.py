"""Financial sentiment across sources (issue 16): train on one source, test on every source.

    nice -n 10 python bench/sentiment_cross.py                       # top-k, 1 epoch, max_length 64
    python bench/sentiment_cross.py --mode full --epochs 1 --sources twitter,pball
    python bench/sentiment_cross.py --extra-run runs/finance-sentiment-full-...   # also score a finished run

Sources (label maps aligned to negative / neutral / positive):

* ``twitter``: Twitter financial news (MIT; ../shared/data/twitter_financial_news_sentiment, the same
  files the plugin bundles): 0 bearish -> negative, 1 bullish -> positive, 2 neutral.  train.csv split
  90/10 (seeded, stratified) into train / validation; **test = valid.csv** (the project's
  "Twitter validation set", 2,388 rows).
* ``pb50`` / ``pball``: Financial PhraseBank, sentences with >= 50 % / 100 % annotator agreement
  (CC BY-NC-SA 3.0: benchmark only, read from ../shared/data, never copied).  One seeded stratified
  80/10/10 split of the 50 %-agree sentences; an all-agree sentence (all are also 50 %-agree)
  takes the split of its 50 %-agree copy, so no test sentence of either set is in either training
  set.

Every run: ``tuneforge train --task finance-sentiment --data <src>-train.csv --validation
<src>-valid.csv --test <src>-test.csv`` (the CLI, niced; the task's defaults apply, so since the
eleventh session a ticker-tagged copy of half the rows too: ``--set text_augment=0`` gives the
earlier sessions' tables), then its model (PyTorch, in process)
scores every test set: accuracy, macro-F1, and the probabilities behind the continuous score
p(pos) - p(neg): NLL and expected calibration error (ECE, 10 bins, of the top label) before and after
a temperature fitted on the run's own validation split (``tuneforge.temperature``,
the same fit as ``tuneforge finance calibrate``).  Written to ``--out`` (JSON) with a
Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
ORDER = ("negative", "neutral", "positive")
TWITTER_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}


def _read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return raw.decode("latin-1").splitlines()


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def phrasebank(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in _read_lines(path):
        text, _, label = line.strip().rpartition("@")
        if text and label in ORDER:
            rows.append((text.strip(), label))
    return rows


def stratified(rows, fractions, seed):
    rng = random.Random(seed)
    parts = [[] for _ in fractions]
    for label in ORDER:
        group = [r for r in rows if r[1] == label]
        rng.shuffle(group)
        cuts = np.cumsum([round(f * len(group)) for f in fractions[:-1]])
        for i, chunk in enumerate(np.split(np.arange(len(group)), cuts)):
            parts[i] += [group[j] for j in chunk]
    for p in parts:
        rng.shuffle(p)
    return parts


def build_sources(seed: int) -> dict[str, dict[str, list[tuple[str, str]]]]:
    tw = SHARED / "twitter_financial_news_sentiment"

    def twitter(path):
        with open(path, encoding="utf-8") as f:
            return [(r["text"], TWITTER_LABELS[r["label"]]) for r in csv.DictReader(f)]

    tw_train, tw_valid = stratified(twitter(tw / "train.csv"), (0.9, 0.1), seed)
    pb = SHARED / "financial_phrasebank"
    p50 = list(dict((_key(t), (t, lab)) for t, lab in phrasebank(pb / "Sentences_50Agree.txt")).values())
    pall = list(dict((_key(t), (t, lab)) for t, lab in phrasebank(pb / "Sentences_AllAgree.txt")).values())
    parts = stratified(p50, (0.8, 0.1, 0.1), seed)
    where = {_key(t): name for name, part in zip(("train", "valid", "test"), parts) for t, _ in part}
    pall_parts = {name: [r for r in pall if where.get(_key(r[0]), "train") == name] for name in ("train", "valid",
                                                                                                   "test")}
    return {"twitter": {"train": tw_train, "valid": tw_valid, "test": twitter(tw / "valid.csv")},
            "pb50": dict(zip(("train", "valid", "test"), parts)), "pball": pall_parts}


def write_csv(rows, path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


class TorchModel:
    """A run's model in PyTorch; ``alpha`` < 1: its encoder weights interpolated towards the base
    model's (``tuneforge.train.wise.interpolate``, WiSE-FT), the head kept."""

    def __init__(self, run_dir: Path, alpha: float = 1.0):
        import torch
        from transformers import AutoTokenizer

        from tuneforge.modeling import TaskModel

        self.torch = torch
        self.model = TaskModel.load(run_dir / "model").eval()
        if alpha != 1.0:
            from tuneforge.train.wise import interpolate

            interpolate(self.model, alpha)
        self.tok = AutoTokenizer.from_pretrained(run_dir / "model" / "encoder")
        labels = [str(x).lower() for x in self.model.spec.labels]
        self.columns = [labels.index(n) for n in ORDER]
        self.max_length = self.model.spec.max_length

    def logits(self, texts: list[str], batch: int = 64) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 3), dtype=np.float64)
        with self.torch.inference_mode():
            for s in range(0, len(order), batch):
                idx = order[s:s + batch]
                enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
                lg = self.model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
                out[idx] = lg.float().numpy()[:, self.columns]
        return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def macro_f1(y, pred) -> float:
    f1s = []
    for k in range(3):
        tp = np.sum((pred == k) & (y == k))
        p = tp / max(np.sum(pred == k), 1)
        r = tp / max(np.sum(y == k), 1)
        f1s.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(f1s))


def polarity_metrics(score: np.ndarray, gold: np.ndarray, min_abs: float = 0.0) -> dict:
    """How the issue's unseen sets grade a continuous score: cosine to the gold score, and sign
    agreement on the rows with ``|gold| > min_abs`` (``>=`` when ``min_abs`` > 0)."""
    gold = gold.astype(np.float64)
    polar = np.abs(gold) >= min_abs if min_abs > 0 else gold != 0
    cos = float(score @ gold / max(np.linalg.norm(score) * np.linalg.norm(gold), 1e-12))
    sign = float((np.sign(score[polar]) == np.sign(gold[polar])).mean()) if polar.any() else float("nan")
    return {"score_cosine": round(cos, 4), "sign_agreement": round(sign, 4)}


def score_metrics(p: np.ndarray, y: np.ndarray) -> dict:
    """The served score p(pos) - p(neg) against gold -1 / 0 / +1 from the label."""
    return polarity_metrics(p[:, 2] - p[:, 0], y.astype(np.float64) - 1.0)


def score_run(run_dir: Path, sources, valid_of: str | None, alpha: float = 1.0) -> dict:
    from tuneforge.temperature import apply_temperature, ece, fit_temperature, nll

    model = TorchModel(run_dir, alpha)
    out = {"run": str(run_dir), **({"wise_alpha": alpha} if alpha != 1.0 else {})}

    def probs(rows):
        return softmax(model.logits([t for t, _ in rows])), np.array([ORDER.index(lab) for _, lab in rows])

    valid = {name: probs(splits["valid"]) for name, splits in sources.items()}   # what a recipe may be chosen on
    temp = 1.0
    if valid_of is not None:
        pv, yv = valid[valid_of]
        temp = fit_temperature(pv, yv)
        out["valid"] = {"source": valid_of, "accuracy": round(float((pv.argmax(1) == yv).mean()), 4)}
    out["temperature"] = round(temp, 3)
    for name, splits in sources.items():
        rows = splits["test"]
        p, y = probs(rows)
        pt = apply_temperature(p, temp)
        pred = p.argmax(1)
        pvv, yvv = valid[name][0].argmax(1), valid[name][1]
        out[name] = {"n": len(rows), "accuracy": round(float((pred == y).mean()), 4),
                     "valid_accuracy": round(float((pvv == yvv).mean()), 4),
                     "macro_f1": round(macro_f1(y, pred), 4),
                     "nll": round(nll(p, y), 4), "nll_T": round(nll(pt, y), 4),
                     "ece": round(ece(p, y), 4), "ece_T": round(ece(pt, y), 4),
                     **score_metrics(pt, y)}   # with T: the score the bundle serves
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", default="twitter,pb50,pball", help="train on each of these")
    ap.add_argument("--mode", default="top-k")
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--limit-train", type=int)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="any other TrainConfig field for every run (e.g. label_smoothing=0.1), repeatable")
    ap.add_argument("--tag", default="", help="suffix of the run names, to keep recipes apart")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", default="/tmp/tuneforge-sentiment-cross")
    ap.add_argument("--extra-run", action="append", default=[],
                    help="a finished finance-sentiment run folder to score too (SRC=PATH: its validation source)")
    ap.add_argument("--wise", default="1",
                    help="comma list of WiSE-FT alphas to score every run at (its encoder interpolated towards the "
                         "base model; 1 = as trained), e.g. 1,0.9,0.8,0.7")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sentiment_cross.json"))
    args = ap.parse_args()
    work = Path(args.work)
    (work / "data").mkdir(parents=True, exist_ok=True)
    sources = build_sources(args.seed)
    sizes = {n: {k: len(v) for k, v in s.items()} for n, s in sources.items()}
    print(json.dumps({"sizes": sizes}), file=sys.stderr)
    files = {n: {k: write_csv(v, work / "data" / f"{n}-{k}.csv") for k, v in s.items()} for n, s in sources.items()}
    results = []
    alphas = [float(a) for a in args.wise.split(",") if a.strip()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for src in [s for s in args.sources.split(",") if s]:
        name = f"cross-{src}-{args.mode}-{args.epochs:g}ep" + (f"-{args.tag}" if args.tag else "")
        cmd = [str(Path(sys.executable).parent / "tuneforge"), "train",   # run the bench itself with nice
               "--task", "finance-sentiment",
               "--data", str(files[src]["train"]), "--validation", str(files[src]["valid"]),
               "--test", str(files[src]["test"]), "--mode", args.mode, "--epochs", str(args.epochs),
               "--max-length", str(args.max_length), "--seed", str(args.seed), "--output-dir", str(work / "runs"),
               "--run-name", name, "--no-progress", "--json"]
        if args.mode == "top-k":
            cmd += ["--top-k", str(args.top_k)]
        if args.limit_train:
            cmd += ["--limit-train", str(args.limit_train)]
        for setting in args.settings:
            cmd += ["--set", setting]
        t = time.perf_counter()
        if not (work / "runs" / name / "model").is_dir():
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        train_s = time.perf_counter() - t
        recipe = f"{args.mode} {args.epochs:g} ep, max_length {args.max_length}" + "".join(
            f", {setting}" for setting in args.settings)
        for alpha in alphas:
            row = {"train": src, "recipe": recipe + (f", wise_alpha={alpha:g}" if alpha != 1.0 else ""),
                   "train_s": round(train_s, 1), **score_run(work / "runs" / name, sources, src, alpha)}
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    for spec in args.extra_run:
        src, _, path = spec.rpartition("=")
        for alpha in alphas:
            row = {"train": src or "twitter",
                   "recipe": f"extra: {path}" + (f", wise_alpha={alpha:g}" if alpha != 1.0 else ""),
                   **score_run(Path(path), sources, src or "twitter", alpha)}
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    names = list(sources)
    print("| trained on | recipe | T | " + " | ".join(f"{n} acc / F1 / score cosine / sign" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for r in results:
        cells = [f"{r[n]['accuracy']:.4f} / {r[n]['macro_f1']:.3f} / {r[n]['score_cosine']:.3f} / "
                 f"{r[n]['sign_agreement']:.3f}" for n in names]
        print(f"| {r['train']} | {r['recipe']} | {r['temperature']:g} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "sizes": sizes, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
