"""Few-shot and zero-shot on BANKING77: tuneforge beside the simple baseline and the setfit library.

    python bench/few_shot.py                                   # k = 4, 8, 16 x seeds 0-4, every method
    python bench/few_shot.py --k 8 --seeds 0,1 --methods tuneforge,frozen-lr
    python bench/few_shot.py --methods setfit --setfit-python .venv-setfit/bin/python   # make venv-setfit
    python bench/few_shot.py --methods zero-shot
    python bench/few_shot.py --k 8 --seeds 0 --methods tuneforge --int8    # + the exported INT8 bundle

Samples: for each (k, seed), k questions per intent drawn from the official BANKING77 training
file with ``random.Random(seed)`` (``sample_k``), written once to ``bench/results/few-shot-work/``
so every method -- in this process or in setfit's own venv -- trains on exactly the same rows.
Test: the official 3,080-question test file, never seen by any method.  Base model: the
packaged all-MiniLM-L6-v2 for all.

Methods:
- ``tuneforge``: ``tuneforge train --mode few-shot`` (supervised contrastive stage with class-
  balanced and hard batches, label anchors, head on the tuned encoder), its library defaults, plus
  the intents' descriptions (``plugins/support_bot/data/intent_descriptions.yaml``) as anchors
  unless ``--no-descriptions``.  No validation set is used for any choice (the run's reported
  validation rows are 1,000 *other* training questions, scored after training only).
- ``frozen-lr``: the frozen base model's mean-pooled, normalised embeddings + scikit-learn's
  ``LogisticRegression(max_iter=100)`` (MTEB's classification protocol).
- ``setfit``: the setfit library (``SetFitModel`` + ``Trainer``, 20 iterations, 1 epoch, its
  defaults otherwise), run in its own venv (``--setfit-python``; it needs transformers 4.x).
- ``zero-shot``: ``tuneforge train --mode zero-shot`` from the names, + descriptions, + self-training
  on the official training questions *without their labels* (``--unlabelled``); once, not per k or
  seed.

Each row: accuracy and macro-F1 on the test file and the training wall time.  The summary gives
per (method, k) the mean over seeds ± the 95 % t-interval.  Results: ``bench/results/few_shot.json``
(rows are appended as they finish, so an interrupted run keeps what it measured and a rerun
skips them).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import BANKING, RESULTS, ROOT  # noqa: E402

WORK = RESULTS / "few-shot-work"
OUT = RESULTS / "few_shot.json"
DESCRIPTIONS = ROOT / "plugins" / "support_bot" / "data" / "intent_descriptions.yaml"
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def read_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def sample_k(rows: list[tuple[str, str]], k: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """k rows per label (seeded) and 1,000 of the others (validation rows, reported only)."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(i)
    keep = []
    for label in sorted(by_label):
        idx = by_label[label][:]
        rng.shuffle(idx)
        keep += idx[:k]
    chosen = set(keep)
    rest = [i for i in range(len(rows)) if i not in chosen]
    rng.shuffle(rest)
    return [rows[i] for i in sorted(keep)], [rows[i] for i in sorted(rest[:1000])]


def write_csv(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        w.writerows(rows)
    tmp.replace(path)
    return path


def sample_files(k: int, seed: int) -> tuple[Path, Path]:
    train = WORK / f"k{k}-seed{seed}-train.csv"
    val = WORK / f"k{k}-seed{seed}-validation.csv"
    if not train.is_file() or not val.is_file():
        picked, others = sample_k(read_rows(BANKING / "train.csv"), k, seed)
        write_csv(val, others)
        write_csv(train, picked)
    return train, val


def macro_f1(pred: list[str], gold: list[str]) -> float:
    labels = sorted(set(gold))
    f1s = []
    for lab in labels:
        tp = sum(p == lab and g == lab for p, g in zip(pred, gold))
        fp = sum(p == lab and g != lab for p, g in zip(pred, gold))
        fn = sum(p != lab and g == lab for p, g in zip(pred, gold))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


# -- methods ---------------------------------------------------------------------------------------
def run_tuneforge(k: int, seed: int, args) -> dict:
    from tuneforge.train import config_for_task, train

    train_csv, val_csv = sample_files(k, seed)
    out = Path(tempfile.mkdtemp(prefix="tf-fewshot-"))
    settings = dict(data=str(train_csv), validation=str(val_csv), test=str(BANKING / "test.csv"),
                    columns={"text": "text", "label": "category"}, mode="few-shot", few_shot_per_class=k,
                    seed=seed, output_dir=str(out), run_name=f"k{k}-seed{seed}", max_length=64)
    if not args.no_descriptions:
        settings["label_descriptions"] = str(DESCRIPTIONS)
    settings.update(args.set)
    t0 = time.perf_counter()
    result = train(config_for_task("text-classification", **settings), progress=False)
    seconds = time.perf_counter() - t0
    m = result.metrics["test"]
    row = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "train_seconds": round(seconds, 1),
           "run_dir": str(result.run_dir), "settings": {k_: v for k_, v in settings.items()
                                                       if k_ not in ("data", "validation", "test", "output_dir")}}
    if args.int8:
        from tuneforge.evaluate import evaluate_bundle
        from tuneforge.export import export_run

        bundle = export_run(result.run_dir, out_dir=str(out / "exports"), variants=["fp32", "int8"],
                            measure=False)
        ev = evaluate_bundle(bundle, BANKING / "test.csv", columns={"text": "text", "label": "category"},
                             variant="int8")
        row["int8_accuracy"] = ev["metrics"]["accuracy"]
        row["int8_delta_points"] = round(100 * (row["int8_accuracy"] - row["accuracy"]), 3)
    return row


_ENCODER = {}


def _frozen_embed(texts: list[str]):
    import numpy as np

    from tuneforge.modeling import load_encoder
    from tuneforge.models import resolve_model_path
    from tuneforge.train.zeroshot import embed_texts

    if "m" not in _ENCODER:
        enc, tok = load_encoder(str(resolve_model_path("all-MiniLM-L6-v2")))
        _ENCODER["m"] = (enc.eval(), tok)
    enc, tok = _ENCODER["m"]
    return np.asarray(embed_texts(enc, tok, texts, 64))


def run_frozen_lr(k: int, seed: int, args) -> dict:
    from sklearn.linear_model import LogisticRegression

    train_csv, _ = sample_files(k, seed)
    rows, test = read_rows(train_csv), read_rows(BANKING / "test.csv")
    t0 = time.perf_counter()
    x = _frozen_embed([t for t, _ in rows])
    clf = LogisticRegression(max_iter=100).fit(x, [y for _, y in rows])
    seconds = time.perf_counter() - t0
    pred = list(clf.predict(_frozen_embed([t for t, _ in test])))
    gold = [y for _, y in test]
    return {"accuracy": sum(p == g for p, g in zip(pred, gold)) / len(gold), "macro_f1": macro_f1(pred, gold),
            "train_seconds": round(seconds, 1)}


def run_setfit(k: int, seed: int, args) -> dict:
    from tuneforge.models import resolve_model_path

    train_csv, _ = sample_files(k, seed)
    spec = {"train": str(train_csv), "test": str(BANKING / "test.csv"), "seed": seed,
            "model": str(resolve_model_path("all-MiniLM-L6-v2")), "iterations": args.setfit_iterations}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([args.setfit_python, str(Path(__file__).resolve()), "--setfit-worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"setfit worker failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def setfit_worker(spec: dict) -> None:
    """Runs in setfit's venv: train on the sample, score the test file."""
    import datasets
    from setfit import SetFitModel, Trainer, TrainingArguments

    train, test = read_rows(Path(spec["train"])), read_rows(Path(spec["test"]))
    labels = sorted({y for _, y in train})
    ids = {lab: i for i, lab in enumerate(labels)}
    ds = datasets.Dataset.from_dict({"text": [t for t, _ in train], "label": [ids[y] for _, y in train]})
    model = SetFitModel.from_pretrained(spec["model"], labels=labels)
    t0 = time.perf_counter()
    trainer = Trainer(model=model, train_dataset=ds,
                      args=TrainingArguments(num_iterations=spec["iterations"], num_epochs=1, seed=spec["seed"],
                                             batch_size=16, report_to="none",
                                             output_dir=str(WORK / "setfit-checkpoints")))
    trainer.train()
    seconds = time.perf_counter() - t0
    pred = [labels[int(i)] if not isinstance(i, str) else i
            for i in model.predict([t for t, _ in test], batch_size=128)]
    gold = [y for _, y in test]
    print(json.dumps({"accuracy": sum(p == g for p, g in zip(pred, gold)) / len(gold),
                      "macro_f1": macro_f1(pred, gold), "train_seconds": round(seconds, 1),
                      "settings": {"num_iterations": spec["iterations"], "num_epochs": 1, "batch_size": 16}}))


def unlabelled_pool() -> Path:
    """The official training questions without their labels: the texts a bank has in its logs."""
    path = WORK / "unlabelled-train-texts.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(t for t, _ in read_rows(BANKING / "train.csv")) + "\n", encoding="utf-8")
    return path


def run_zero_shot(args, descriptions: bool, self_train: bool = False) -> dict:
    from tuneforge.train import config_for_task, train

    train_csv, val_csv = sample_files(8, 0)   # only the label set is read from it
    out = Path(tempfile.mkdtemp(prefix="tf-zeroshot-"))
    settings = dict(data=str(train_csv), validation=str(val_csv), test=str(BANKING / "test.csv"),
                    columns={"text": "text", "label": "category"}, mode="zero-shot", output_dir=str(out),
                    max_length=64)
    if descriptions:
        settings["label_descriptions"] = str(DESCRIPTIONS)
    if self_train:
        settings["unlabelled"] = str(unlabelled_pool())
    t0 = time.perf_counter()
    result = train(config_for_task("text-classification", **settings), progress=False)
    m = result.metrics["test"]
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "train_seconds": round(time.perf_counter() - t0, 1), "descriptions": descriptions,
            "self_training": self_train}


def run_cv(k: int, seed: int, setting: dict, args) -> dict:
    """Validation folds of the k examples: train on half of each class's k (the other half is the
    validation fold), both ways; the mean fold accuracy.  The test file is never read."""
    from tuneforge.train import config_for_task, train

    train_csv, _ = sample_files(k, seed)
    rows = read_rows(train_csv)
    by_label: dict[str, list] = {}
    for r in rows:
        by_label.setdefault(r[1], []).append(r)
    folds = ([], [])
    for label in sorted(by_label):
        for i, r in enumerate(by_label[label]):
            folds[i % 2].append(r)
    accs, seconds = [], 0.0
    for f in (0, 1):
        fit_csv = write_csv(WORK / f"cv-k{k}-seed{seed}-fold{f}-train.csv", folds[f])
        val_csv = write_csv(WORK / f"cv-k{k}-seed{seed}-fold{f}-val.csv", folds[1 - f])
        out = Path(tempfile.mkdtemp(prefix="tf-fewshot-cv-"))
        settings = dict(data=str(fit_csv), validation=str(val_csv), test=str(val_csv),
                        columns={"text": "text", "label": "category"}, mode="few-shot",
                        few_shot_per_class=max(1, k // 2), seed=seed, output_dir=str(out), max_length=64)
        if not args.no_descriptions:
            settings["label_descriptions"] = str(DESCRIPTIONS)
        settings.update(setting)
        t0 = time.perf_counter()
        result = train(config_for_task("text-classification", **settings), progress=False)
        seconds += time.perf_counter() - t0
        accs.append(result.metrics["test"]["accuracy"])
    return {"fold_accuracy": accs, "accuracy": statistics.fmean(accs), "macro_f1": float("nan"),
            "train_seconds": round(seconds, 1), "setting": setting}


# -- bookkeeping -----------------------------------------------------------------------------------
def load_results() -> dict:
    if OUT.is_file():
        return json.loads(OUT.read_text())
    return {"rows": []}


def save_results(data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(OUT)


def interval(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, half


def summary(data: dict) -> str:
    lines = ["| method | k | seeds | accuracy (mean ± 95 % CI) | macro-F1 | train time (s, mean) |",
             "|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in data["rows"]:
        groups.setdefault((r["method"], r.get("k")), []).append(r)
    for (method, k), rows in sorted(groups.items(), key=lambda x: (str(x[0][1]), x[0][0])):
        acc, half = interval([r["accuracy"] for r in rows])
        f1 = statistics.fmean(r["macro_f1"] for r in rows)
        t = statistics.fmean(r["train_seconds"] for r in rows)
        ci = "" if math.isnan(half) else f" ± {half:.4f}"
        lines.append(f"| {method} | {k if k is not None else '-'} | {len(rows)} | {acc:.4f}{ci} | {f1:.4f} | {t:.0f} |")
    return "\n".join(lines)


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setfit-worker", help=argparse.SUPPRESS)
    ap.add_argument("--k", default="4,8,16", help="examples per class (comma list)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="sample seeds (comma list)")
    ap.add_argument("--methods", default="frozen-lr,tuneforge,setfit,zero-shot")
    ap.add_argument("--setfit-python", default=str(ROOT / ".venv-setfit" / "bin" / "python"))
    ap.add_argument("--setfit-iterations", type=int, default=20)
    ap.add_argument("--no-descriptions", action="store_true", help="tuneforge: label names only as anchors")
    ap.add_argument("--int8", action="store_true", help="tuneforge: also export and score the INT8 bundle")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="tuneforge: TrainConfig overrides")
    ap.add_argument("--tag", default="", help="suffix for the method name (e.g. a settings variant)")
    ap.add_argument("--summary", action="store_true", help="print the table of what is saved and stop")
    ap.add_argument("--results", type=Path, default=None,
                    help="results file (default bench/results/few_shot.json; another one for runs in parallel)")
    ap.add_argument("--cv", nargs="*", metavar="SETTINGS",
                    help="choose tuneforge settings on validation folds of the k examples instead of testing: "
                         "each SETTINGS is KEY=VALUE[,KEY=VALUE] (e.g. few_shot_epochs=5 few_shot_epochs=20)")
    args = ap.parse_args()
    if args.setfit_worker:
        setfit_worker(json.loads(args.setfit_worker))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT = args.results or RESULTS / "few_shot.json"
    data = load_results()
    if args.summary:
        print(summary(data))
        return
    from tuneforge.cli.common import parse_set

    args.set = parse_set(args.set)
    ks = [int(x) for x in args.k.split(",") if x]
    seeds = [int(x) for x in args.seeds.split(",") if x]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.cv is not None:
        cv = data.setdefault("cv", [])
        for spec in args.cv or [""]:
            setting = parse_set([x for x in spec.split(",") if x])
            for k in ks:
                for seed in seeds:
                    if any(r["k"] == k and r["seed"] == seed and r["setting"] == setting for r in cv):
                        continue
                    row = {"k": k, "seed": seed, **run_cv(k, seed, setting, args)}
                    cv.append(row)
                    save_results(data)
                    print(f"cv k={k} seed={seed} {setting}: folds {row['fold_accuracy']} -> {row['accuracy']:.4f} "
                          f"({row['train_seconds']} s)", file=sys.stderr, flush=True)
        return
    done = {(r["method"], r.get("k"), r.get("seed")) for r in data["rows"]}
    data.setdefault("machine", {})
    from common import machine

    data["machine"] = machine()
    for method in methods:
        name = method + (f"[{args.tag}]" if args.tag else "")
        if method == "zero-shot":
            for desc, self_train in ((False, False), (True, False), (True, True)):
                zname = name + ("+descriptions" if desc else "") + ("+self-training" if self_train else "")
                if (zname, None, None) in done:
                    continue
                row = {"method": zname, "k": None, "seed": None, **run_zero_shot(args, desc, self_train)}
                data["rows"].append(row)
                save_results(data)
                print(f"{zname}: {row['accuracy']:.4f}", file=sys.stderr, flush=True)
            continue
        run = {"tuneforge": run_tuneforge, "frozen-lr": run_frozen_lr, "setfit": run_setfit}[method]
        for k in ks:
            for seed in seeds:
                if (name, k, seed) in done:
                    continue
                t0 = time.perf_counter()
                row = {"method": name, "k": k, "seed": seed, **run(k, seed, args),
                       "wall_seconds": round(time.perf_counter() - t0, 1),
                       "load_average": os.getloadavg()[0]}
                data["rows"].append(row)
                save_results(data)
                print(f"{name} k={k} seed={seed}: {row['accuracy']:.4f} ({row['train_seconds']} s)",
                      file=sys.stderr, flush=True)
    print(summary(data))


if __name__ == "__main__":
    main()
