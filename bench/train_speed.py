"""Training speed against the usual way, same data, model, epochs, batch size and machine, one run.

    python bench/train_speed.py [--epochs 3] [--limit 0] [--only tuneforge,trainer,trainer-pad128]

Three contenders fine-tune all-MiniLM-L6-v2 (all layers) on BANKING77:

* tuneforge  ``--mode full`` (length-grouped batches, dynamic padding, mean pooling head, fused AdamW;
             ``precision=auto``: bf16 autocast for training steps on CPUs with AMX/AVX512-BF16)
* tuneforge-fp32  the same with ``precision=fp32``
* tuneforge-frozen-words  the same with ``train_word_embeddings=false`` (the word-embedding table frozen)
* trainer    transformers ``Trainer``, best practice: ``DataCollatorWithPadding`` + length-grouped sampling
             (``group_by_length=True``; in transformers 5 ``train_sampling_strategy="group_by_length"``)
* trainer-pad128  ``Trainer`` with every batch padded to ``max_length=128``
* trainer-bf16  the best-practice ``Trainer`` with ``bf16=True`` (for context: not its default)

Throughput = training examples / optimisation seconds (evaluation excluded). Each run also
records when validation accuracy first reached 0.92 ("time-to-0.92", evaluated 4x per epoch).
Results: bench/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from common import BANKING, machine, save

LR, BATCH, SEED, MAXLEN, TARGET = 1e-4, 32, 42, 64, 0.92


def read(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def run_tuneforge(epochs: float, limit: int | None, **overrides) -> dict:
    from tuneforge.train import config_for_task, train

    cfg = config_for_task("support-intents", data=str(BANKING / "train.csv"), test=str(BANKING / "test.csv"),
                          columns={"label": "category"}, mode="full", epochs=epochs, learning_rate=LR,
                          batch_size=BATCH, max_length=MAXLEN, seed=SEED, evals_per_epoch=4,
                          early_stopping_patience=0, limit_train=limit, warmup_ratio=0.06,
                          checkpoint=False,  # like the Trainers' save_strategy="no"
                          **overrides,
                          output_dir=tempfile.mkdtemp(prefix="tf-speed-"))
    r = train(cfg, progress=False)
    reach = next((h["seconds"] for h in r.fit["history"] if h["accuracy"] >= TARGET), None)
    return {"examples": r.fit["train_examples_seen"], "train_seconds": r.fit["train_seconds"],
            "test_accuracy": r.metrics["test"]["accuracy"], "seconds_to_target": reach,
            "history": [{k: h[k] for k in ("epoch", "seconds", "accuracy")} for h in r.fit["history"]]}


def run_trainer(epochs: float, limit: int | None, pad128: bool, bf16: bool = False) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tuneforge.data import ColumnMap, load_dataset, stratified_split
    from tuneforge.models import resolve_model_path

    torch.manual_seed(SEED)
    path = resolve_model_path("all-MiniLM-L6-v2")
    # the same train/validation split tuneforge makes (seeded, stratified 8:1)
    full = load_dataset(BANKING / "train.csv", ColumnMap(text="text", label="category"))
    train_ds, val_ds = stratified_split(full, (0.8 / 0.9, 0.1 / 0.9), seed=SEED)
    if limit:
        train_ds = stratified_split(train_ds, (limit / len(train_ds), 1 - limit / len(train_ds)), seed=SEED)[0]
    test_texts, test_labels = read(BANKING / "test.csv")
    labels = sorted(set(full.labels()))
    ids = {lab: i for i, lab in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    length = 128 if pad128 else MAXLEN

    def encode(texts, ys):
        enc = tok(texts, truncation=True, max_length=length, padding="max_length" if pad128 else False)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "token_type_ids": enc["token_type_ids"][i], "labels": ids[ys[i]]} for i in range(len(texts))]

    train_rows = encode(train_ds.texts(), train_ds.labels())
    val_rows = encode(val_ds.texts(), val_ds.labels())
    test_rows = encode(test_texts, test_labels)

    class Clock(TrainerCallback):
        """Records optimisation time, excluding evaluation."""

        def __init__(self):
            self.t0, self.eval_s, self.history = None, 0.0, []

        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

    clock = Clock()

    def metrics(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    out = tempfile.mkdtemp(prefix="hf-speed-")
    steps_per_epoch = -(-len(train_rows) // BATCH)
    args = TrainingArguments(out, per_device_train_batch_size=BATCH, per_device_eval_batch_size=128,
                             learning_rate=LR, num_train_epochs=epochs, warmup_steps=0.06, weight_decay=0.01,
                             lr_scheduler_type="linear", seed=SEED,
                             train_sampling_strategy="random" if pad128 else "group_by_length",
                             eval_strategy="steps", eval_steps=max(1, steps_per_epoch // 4), save_strategy="no",
                             logging_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True, bf16=bf16,
                             disable_tqdm=True)
    collator = DataCollatorWithPadding(tok) if not pad128 else None

    class TimedTrainer(Trainer):
        def evaluate(self, *a, **k):
            t = time.perf_counter()
            result = super().evaluate(*a, **k)
            clock.eval_s += time.perf_counter() - t
            clock.history.append({"seconds": round(time.perf_counter() - clock.t0 - clock.eval_s, 2),
                                  "accuracy": result.get("eval_accuracy")})
            return result

    trainer = TimedTrainer(model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows,
                           data_collator=collator, compute_metrics=metrics, callbacks=[clock])
    t = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t - clock.eval_s
    test = trainer.predict(test_rows)
    reach = next((h["seconds"] for h in clock.history if (h["accuracy"] or 0) >= TARGET), None)
    return {"examples": len(train_rows) * epochs, "train_seconds": train_seconds,
            "test_accuracy": metrics(test)["accuracy"], "seconds_to_target": reach, "history": clock.history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--limit", type=int, default=0, help="train on a stratified subset (0 = all)")
    parser.add_argument("--only", default="tuneforge,tuneforge-fp32,trainer,trainer-bf16,trainer-pad128")
    args = parser.parse_args()
    limit = args.limit or None
    results = {}
    for name in args.only.split(","):
        t = time.perf_counter()
        if name == "tuneforge":
            r = run_tuneforge(args.epochs, limit)
        elif name == "tuneforge-frozen-words":
            r = run_tuneforge(args.epochs, limit, train_word_embeddings=False)
        elif name == "tuneforge-fp32":
            r = run_tuneforge(args.epochs, limit, precision="fp32")
        else:
            r = run_trainer(args.epochs, limit, pad128=name == "trainer-pad128", bf16=name == "trainer-bf16")
        r["throughput"] = r["examples"] / r["train_seconds"]
        r["wall_seconds"] = time.perf_counter() - t
        results[name] = r
        print(f"{name:15} {r['throughput']:7.1f} ex/s  test acc {r['test_accuracy']:.4f}  "
              f"to {TARGET}: {r['seconds_to_target']} s", flush=True)
    if "tuneforge" in results:
        for name, r in results.items():
            if name != "tuneforge":
                print(f"tuneforge / {name}: {results['tuneforge']['throughput'] / r['throughput']:.2f}x")
    save("train_speed", {"machine": machine(), "epochs": args.epochs, "limit": limit, "lr": LR,
                         "batch_size": BATCH, "results": results})


if __name__ == "__main__":
    main()
