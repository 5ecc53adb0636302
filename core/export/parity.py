"""Parity gate: every exported variant against the PyTorch model on the validation rows.

FP32 graphs (plain and fused) must match PyTorch within ``atol`` (max |delta output|);
anything else is a :class:`ParityError` - the export is broken, nothing ships.
Lossy variants (INT8, FP16) get label agreement and the task metric against the
PyTorch model's; a variant losing more than ``max_metric_drop`` points is rejected
with the numbers recorded, never shipped silently.

========================  ==================================  ===========================
kind                      metric (with gold labels)           agreement with PyTorch
========================  ==================================  ===========================
classification            accuracy                            same argmax
multilabel                micro-F1                            same label set
pair                      Spearman vs gold (MSE reported)     Spearman vs PyTorch scores
embedding                 (none: cosine to PyTorch is used)   mean cosine
token                     word accuracy (first sub-token)     same argmax per real token
========================  ==================================  ===========================

Without gold labels the drop is ``100 * (1 - agreement)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ParityError
from ..runtime.postprocess import Postprocessor, sigmoid, word_labels

FP32_ATOL = 1e-4


@dataclass
class ParityData:
    kind: str
    rows: list[dict]
    batches: list                      # runtime.tokenization.Batch, sorted by length
    post: dict                         # postprocess.json
    encodings: list = field(default_factory=list)   # original row order
    reference: list = field(default_factory=list)   # torch output per batch
    ref_metric: tuple[str, float | None] = ("", None)

    def __post_init__(self):
        self.encodings = [None] * len(self.rows)
        for b in self.batches:
            for j, i in enumerate(b.index):
                self.encodings[i] = b.encodings[j]

    def ordered(self, outs: list[np.ndarray]):
        """Per-batch outputs -> original row order (token kind: list trimmed to real tokens)."""
        if self.kind == "token":
            flat = [None] * len(self.rows)
            for b, o in zip(self.batches, outs):
                for j, i in enumerate(b.index):
                    flat[i] = o[j, :len(b.encodings[j].ids)]
            return flat
        full = np.zeros((len(self.rows), *outs[0].shape[1:]), dtype=np.float64)
        for b, o in zip(self.batches, outs):
            full[b.index] = o
        return full


def prepare(tokenizer, rows, inputs, *, kind: str, post: dict, pairs: bool,
            batch_size: int = 32) -> ParityData:
    texts = [r["text"] for r in rows]
    text_pairs = [r.get("text_pair") or "" for r in rows] if pairs else None
    batches = tokenizer.batches(texts, text_pairs, inputs=inputs, batch_size=batch_size)
    return ParityData(kind, rows, batches, post)


def torch_reference(model, data: ParityData) -> None:
    import torch

    model = model.eval()
    outs = []
    with torch.inference_mode():
        for b in data.batches:
            args = [torch.from_numpy(b.feed[n]) for n in ("input_ids", "attention_mask")]
            tt = b.feed.get("token_type_ids")
            outs.append(model(*args, torch.from_numpy(tt) if tt is not None else None)
                        .float().numpy())
    data.reference = outs
    data.ref_metric = task_metric(data, data.ordered(outs))


def ort_outputs(path, data: ParityData, threads: int, runner=None, disabled_optimizers=()) -> list[np.ndarray]:
    """The graph's outputs on every parity batch, on CPU (onnxruntime, or OpenVINO for an ``.xml``
    IR); ``runner``: one already opened; ``disabled_optimizers``: onnxruntime optimizers to leave out."""
    from ..runtime.session import open_runner

    run = runner if runner is not None else open_runner(path, threads, disabled_optimizers=disabled_optimizers)
    return [np.asarray(run(b.feed), dtype=np.float32) for b in data.batches]


def _diffs(data: ParityData, outs) -> tuple[float, float]:
    worst, total, count = 0.0, 0.0, 0
    for b, ref, out in zip(data.batches, data.reference, outs):
        d = np.abs(ref.astype(np.float64) - out.astype(np.float64))
        if data.kind == "token":  # padding positions are not outputs anyone reads
            d = d[b.feed["attention_mask"].astype(bool)]
        if d.size:
            worst, total, count = max(worst, float(d.max())), total + float(d.sum()), count + d.size
    return worst, total / max(count, 1)


def check_fp32(variant: str, data: ParityData, outs, *, atol: float = FP32_ATOL) -> dict:
    worst, mean = _diffs(data, outs)
    result = {"variant": variant, "rows": len(data.rows), "max_abs_diff": worst,
              "mean_abs_diff": mean, "atol": atol, "passed": bool(worst <= atol)}
    if not result["passed"]:
        raise ParityError(f"{variant}: max |delta output| vs PyTorch is {worst:.3g} > {atol:g} "
                          f"(mean {mean:.3g}) on {len(data.rows)} validation rows",
                          results={variant: result},
                          hint="this graph does not reproduce the model; report it with the "
                               "model type, or export fewer variants (variants=['fp32', ...])")
    return result


def check_lossy(variant: str, data: ParityData, outs, *, max_metric_drop: float) -> dict:
    worst, mean = _diffs(data, outs)
    ordered, ref = data.ordered(outs), data.ordered(data.reference)
    agree_name, agree = agreement(data, ref, ordered)
    metric_name, ref_value = data.ref_metric
    _, value = task_metric(data, ordered)
    if ref_value is not None and value is not None:
        drop, basis = 100.0 * (ref_value - value), "gold"
    else:
        metric_name, ref_value, value = agree_name, 1.0, agree
        drop, basis = 100.0 * (1.0 - agree), "reference"
    result = {"variant": variant, "rows": len(data.rows), "max_abs_diff": worst,
              "mean_abs_diff": mean, "agreement": agree, "agreement_metric": agree_name,
              "metric": metric_name, "reference_value": ref_value, "value": value,
              "drop_points": drop, "basis": basis, "max_metric_drop": max_metric_drop,
              "passed": bool(drop <= max_metric_drop)}
    if not result["passed"]:
        result["reason"] = (f"{metric_name} drops {drop:.2f} points vs PyTorch "
                            f"({ref_value:.4f} -> {value:.4f}, {basis} labels) > allowed "
                            f"{max_metric_drop:g}; {agree_name} {agree:.4f}")
    return result


# -- metrics -----------------------------------------------------------------------
def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    return np.bincount(inv, weights=ranks)[inv] / counts[inv]


def spearman(a, b) -> float | None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return None
    ra, rb = _rank(a), _rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(data: ParityData, ref, out) -> tuple[str, float]:
    kind, thr = data.kind, float(data.post.get("threshold", 0.5))
    if kind == "classification":
        return "label_agreement", float(np.mean(ref.argmax(-1) == out.argmax(-1)))
    if kind == "multilabel":
        same = np.all((sigmoid(ref) >= thr) == (sigmoid(out) >= thr), axis=-1)
        return "labelset_agreement", float(np.mean(same))
    if kind == "pair":
        rho = spearman(ref.reshape(-1), out.reshape(-1))
        exact = float(np.allclose(ref, out, atol=1e-3))
        return "rank_agreement", rho if rho is not None else exact
    if kind == "embedding":
        cos = np.sum(ref * out, -1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(out, axis=-1)
                                       + 1e-12)
        return "mean_cosine", float(np.mean(cos))
    same = [np.argmax(r, -1) == np.argmax(o, -1) for r, o in zip(ref, out)]
    return "token_agreement", float(np.mean(np.concatenate(same))) if same else 1.0


def task_metric(data: ParityData, out) -> tuple[str, float | None]:
    """The task metric against gold labels (``None`` when the rows have none usable)."""
    kind, labels, rows = data.kind, list(data.post.get("labels") or []), data.rows
    if kind == "classification":
        gold = [labels.index(str(r["label"])) if str(r.get("label")) in labels else -1 for r in rows]
        keep = np.array(gold) >= 0
        ok = out.argmax(-1)[keep] == np.array(gold)[keep]
        return "accuracy", float(ok.mean()) if keep.any() else None
    if kind == "multilabel":
        return "micro_f1", _micro_f1(out, rows, labels, float(data.post.get("threshold", 0.5)))
    if kind == "pair":
        pairs = [(s, float(r["label"])) for s, r in
                 zip(Postprocessor(data.post).pair_scores(out.reshape(-1)), rows)
                 if isinstance(r.get("label"), (int, float)) and not isinstance(r["label"], bool)]
        return "spearman", spearman(*zip(*pairs)) if len(pairs) >= 3 else None
    if kind == "embedding":
        return "mean_cosine", None
    hits = total = 0
    for logits, row, enc in zip(out, rows, data.encodings):
        gold = row.get("tags") if isinstance(row.get("tags"), list) else row.get("label")
        if not isinstance(gold, list):
            continue
        pred = word_labels(np.asarray(logits), row["text"], enc)
        if len(pred) != len(gold):
            continue  # labels not aligned with whitespace words
        for p, g in zip(pred, gold):
            if p is not None and str(g) in labels:
                hits, total = hits + (p == labels.index(str(g))), total + 1
    return "token_accuracy", hits / total if total else None


def _micro_f1(out, rows, labels, thr) -> float | None:
    tp = fp = fn = 0
    seen = False
    for p, row in zip(sigmoid(out) >= thr, rows):
        gold = row.get("label")
        if gold is None:
            continue
        gold = {str(g) for g in ([gold] if isinstance(gold, str) else gold)}
        pred = {lab for lab, on in zip(labels, p) if on}
        tp, fp, fn, seen = tp + len(pred & gold), fp + len(pred - gold), fn + len(gold - pred), True
    if not seen:
        return None
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
