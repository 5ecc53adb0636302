"""Build small training-run folders (as the trainer writes them) for export tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

TEXTS = [
    "where is my card", "I still have not received my new card, I ordered over a week ago",
    "how do I top up", "my transfer failed", "can I change my PIN at an ATM please",
    "the exchange rate looks wrong on my statement", "cancel that payment now",
    "why was I charged a fee for withdrawing cash", "is there a limit", "hello",
    "I need to verify my identity but the app keeps crashing when I take the photo",
    "refund not showing up", "what currencies do you support", "card declined at the shop",
    "lost my phone, freeze the account", "apple pay is not working",
]
LABELS = {"classification": ["card", "payment", "account"],
          "multilabel": ["card", "payment", "account", "fee"],
          "token": ["O", "B-THING", "I-THING"],
          "pair": [], "embedding": []}


def rows_for(kind: str, n: int, seed: int = 0, labels=None) -> list[dict]:
    rng = random.Random(seed)
    labels = labels if labels is not None else LABELS[kind]
    rows = []
    for i in range(n):
        text = TEXTS[i % len(TEXTS)] + ("" if i < len(TEXTS) else f" {i}")
        # pair: the model's second input; embedding: the positive the trainer learns from
        pair = TEXTS[(i * 7 + 3) % len(TEXTS)] if kind in ("pair", "embedding") else None
        extra = {}
        if kind == "classification":
            label = rng.choice(labels)
        elif kind == "multilabel":
            label = sorted(rng.sample(labels, rng.randint(0, 2)))
        elif kind == "pair":
            label = round(rng.random(), 3)
        elif kind == "token":  # as the trainer writes token rows: text = " ".join(tokens)
            label, words = None, text.split()
            extra = {"tokens": words, "tags": [rng.choice(labels) for _ in words]}
        else:
            label = None
        rows.append({"text": text, "text_pair": pair, "label": label, **extra})
    return rows


def make_run(root: Path, encoder_dir: str, kind: str = "classification", *, n_rows: int = 48,
             run_id: str = "run-1", task: str | None = None, labels=None, seed: int = 0,
             rows: list[dict] | None = None) -> Path:
    """``root/<run_id>/`` with model/, config.json, labels.json, metrics.json, run.json, splits/."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneforge.modeling import ModelSpec, TaskModel

    labels = labels if labels is not None else LABELS[kind]
    run = Path(root) / run_id
    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(encoder_dir, attn_implementation="eager")
    model = TaskModel(encoder, ModelSpec(kind=kind, labels=list(labels), base_model=encoder_dir))
    model.save(run / "model", AutoTokenizer.from_pretrained(encoder_dir))
    task = task or f"tiny-{kind}"
    (run / "config.json").write_text(json.dumps({"task": task, "mode": "full", "kind": kind}))
    (run / "labels.json").write_text(json.dumps({"labels": list(labels)}))
    (run / "metrics.json").write_text(json.dumps(
        {"validation": {"accuracy": 0.5, "macro_f1": 0.4}, "test": {"accuracy": 0.45}}))
    (run / "run.json").write_text(json.dumps(
        {"id": run_id, "task": task, "created": "2026-01-01T00:00:00Z", "versions": {},
         "data_sha256": {"train": "0" * 64}, "wall_time_s": 1.0}))
    (run / "splits").mkdir()
    rows = rows if rows is not None else rows_for(kind, n_rows, seed, labels)
    (run / "splits" / "validation.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    return run


def torch_outputs(run: Path, texts: list[str], pairs: list[str] | None = None):
    """The PyTorch TaskModel's outputs for ``texts`` (tokenised by the HF tokenizer)."""
    import torch
    from transformers import AutoTokenizer

    from tuneforge.modeling import TaskModel

    model = TaskModel.load(run / "model")
    tok = AutoTokenizer.from_pretrained(run / "model" / "encoder")
    enc = tok(texts, pairs, padding=True, truncation=True, max_length=model.spec.max_length,
              return_tensors="pt")
    with torch.inference_mode():
        out = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    return out.numpy(), enc["attention_mask"].numpy()


def rewrite_output(path, how: str, value: float = 0.01) -> None:
    """Change an ONNX graph's output in place: ``"add"`` a constant or ``"neg"``ate it.

    Used to fake a broken export step (FP32 parity failure, a lossy variant that
    ruins the predictions) without depending on initializer names.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{out}__pre" if o == out else o for o in node.output]
    if how == "add":
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32),
                                                         f"{out}__delta"))
        graph.node.append(helper.make_node("Add", [f"{out}__pre", f"{out}__delta"], [out]))
    else:
        graph.node.append(helper.make_node("Neg", [f"{out}__pre"], [out]))
    onnx.save(model, str(path))
