"""TaskModel -> FP32 ONNX graph with dynamic batch and sequence axes.

``torch.onnx.export(dynamo=False)`` (the TorchScript exporter) at opset 17: its
graphs are the ones the ORT transformer optimizer knows how to fuse.  Inputs are
int64 ``input_ids``, ``attention_mask`` and - only when the encoder takes them -
``token_type_ids``.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np

OPSET = 17
OUTPUT_NAMES = {"classification": "logits", "multilabel": "logits", "token": "logits",
                "pair": "score", "embedding": "embedding"}


def uses_token_type_ids(encoder) -> bool:
    """True when the encoder's forward takes token types and has more than one type."""
    try:
        params = inspect.signature(encoder.forward).parameters
    except (TypeError, ValueError):
        return False
    return "token_type_ids" in params and getattr(encoder.config, "type_vocab_size", 0) > 1


def input_names(encoder) -> list[str]:
    names = ["input_ids", "attention_mask"]
    return names + ["token_type_ids"] if uses_token_type_ids(encoder) else names


def output_spec(model) -> dict:
    """Name and symbolic shape of the single output, from the task kind."""
    kind = model.spec.kind
    cfg = model.encoder.config
    shape = {"classification": ["batch", len(model.spec.labels)],
             "multilabel": ["batch", len(model.spec.labels)],
             "token": ["batch", "sequence", len(model.spec.labels)],
             "pair": ["batch"],
             "embedding": ["batch", int(cfg.hidden_size)]}[kind]
    return {"name": OUTPUT_NAMES[kind], "shape": shape, "dtype": "float32"}


def export_onnx(model, path: str | Path, sample: dict[str, np.ndarray], *, opset: int = OPSET) -> dict:
    """Write ``model`` (eval mode) to ``path``; ``sample`` is a padded batch of real rows.

    Returns ``{"inputs": [...], "output": {...}, "opset": ...}``.
    """
    import onnx
    import torch

    model = model.eval()
    names = input_names(model.encoder)
    out = output_spec(model)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[out["name"]] = {i: a for i, a in enumerate(out["shape"]) if isinstance(a, str)}
    args = tuple(torch.as_tensor(sample[n], dtype=torch.int64) for n in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                          input_names=names, output_names=[out["name"]], dynamic_axes=axes,
                          do_constant_folding=True)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    got = [i.name for i in graph.graph.input]
    if got != names:  # the exporter drops inputs the graph does not use
        raise RuntimeError(f"exported graph takes {got}, expected {names}")
    return {"inputs": names, "output": out, "opset": opset}


def sample_batch(tokenizer, rows: list[dict], inputs: list[str], pairs: bool) -> dict:
    """A 2-row padded batch of real rows (different lengths) to trace with."""
    rows = (rows * 2)[:2] if len(rows) < 2 else sorted(rows[:16], key=lambda r: len(r["text"]))
    chosen = [rows[0], rows[-1]]
    texts = [r["text"] or "hello" for r in chosen]
    text_pairs = [r.get("text_pair") or "" for r in chosen] if pairs else None
    encodings = tokenizer.encode(texts, text_pairs)
    return tokenizer.pad(encodings, inputs)
