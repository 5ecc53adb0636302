"""Zero-shot classification from what the user gives: label names, descriptions, unlabelled texts.

Each label becomes a vector: the normalised mean of its name's embeddings in a few templates
("a question about {label}", ...; :func:`tuneforge.train.fewshot.anchor_texts`), averaged with equal
weight with its description's embedding when there is one, normalised.  A text goes to the label whose vector
is nearest (cosine).  Mode ``zero-shot`` writes that classifier as an ordinary run (the head's
rows are the label vectors), so it exports, serves and evaluates like any other.

With unlabelled texts (``TrainConfig.unlabelled``), the zero-shot classifier labels them and the
``self_train_per_class`` most confident texts per label (by the margin between the two best
labels) become pseudo-labelled examples for the few-shot procedure (contrastive stage + head):
self-training, with no human label anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data import Dataset
from ..errors import DataError
from ..metrics import classification_metrics
from ..modeling import ModelSpec, load_encoder, mean_pool
from .fewshot import anchor_texts, label_prompt

__all__ = ["label_prompt", "load_label_descriptions", "label_vectors", "embed_texts", "zero_shot_metrics",
           "read_unlabelled", "pseudo_label", "set_head_to_vectors"]

SCALE = 20.0   # cosine -> logit (the softmax temperature of 0.05 the contrastive stage uses)


def load_label_descriptions(path: str | Path | None, labels: list[str]) -> dict[str, str]:
    """``{label: description}`` from a YAML or JSON mapping; labels it does not mention keep their
    name only.  A label the task does not have is an error naming it (a typo would otherwise be
    silently ignored)."""
    if not path:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read the label descriptions: {e.strerror or e}",
                        hint="pass a YAML or JSON file mapping each label to a description") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml/json errors carry the line
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        line = (line + 1) if line is not None else getattr(e, "lineno", None)
        raise DataError(f"{path}" + (f", line {line}" if line else "") + f": not a valid mapping ({e})".split("\n")[0],
                        hint="write one `label: description` per line") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise DataError(f"{path}: expected a mapping of label -> non-empty description text",
                        hint="write one `label: description` per line")
    data = {str(k): v.strip() for k, v in data.items()}
    unknown = sorted(set(data) - set(labels))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], labels, n=1)
        raise DataError(f"{path}: {len(unknown)} label(s) the task does not have: {', '.join(unknown[:5])}"
                        + (" ..." if len(unknown) > 5 else ""),
                        hint=f"did you mean {close[0]!r}?" if close else "use the task's label names")
    return data


@torch.inference_mode()
def embed_texts(encoder, tokenizer, texts: list[str], max_length: int, batch_size: int = 128) -> np.ndarray:
    """L2-normalised mean-pooled embeddings [N, H], batches sorted by length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        b = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
        v = mean_pool(encoder(**{k: b[k] for k in ("input_ids", "attention_mask")}).last_hidden_state,
                      b["attention_mask"])
        out[idx] = torch.nn.functional.normalize(v, dim=-1).numpy()
    return out


def label_vectors(encoder, tokenizer, labels: list[str], descriptions: dict[str, str] | None,
                  max_length: int) -> np.ndarray:
    """[C, H]: per label, the mean of its name in the templates and -- with equal weight -- its
    description, normalised.  (Equal weight, not a mean over all anchors, chosen on 4,000 BANKING77
    *training* questions: 0.696 against 0.667 for the plain mean; descriptions alone 0.677, names
    alone 0.621.)"""
    texts, owner, is_desc = [], [], []
    for i, lab in enumerate(labels):
        desc = (descriptions or {}).get(lab)
        for t in anchor_texts(lab, None):
            texts.append(t)
            owner.append(i)
            is_desc.append(False)
        if desc:
            texts.append(desc)
            owner.append(i)
            is_desc.append(True)
    vecs = embed_texts(encoder, tokenizer, texts, max_length)
    owner, is_desc = np.asarray(owner), np.asarray(is_desc)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-9)

    out = []
    for i in range(len(labels)):
        names = unit(vecs[(owner == i) & ~is_desc].mean(0))
        desc = vecs[(owner == i) & is_desc]
        out.append(unit(names + unit(desc[0])) if len(desc) else names)
    return np.stack(out)


@torch.no_grad()
def set_head_to_vectors(model, tokenizer, label_vecs: np.ndarray, sample_texts: list[str], max_length: int) -> None:
    """Make ``model``'s linear head the nearest-label-vector classifier: logits ~ SCALE x cosine.
    The head sees un-normalised mean-pooled vectors, so the rows are divided by their typical
    norm (measured on ``sample_texts``)."""
    enc = model.encoder
    b = tokenizer(sample_texts[:256], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    pooled = mean_pool(enc(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state,
                       b["attention_mask"])
    norm = float(pooled.norm(dim=-1).mean().clamp(min=1e-6))
    w = torch.as_tensor(label_vecs, dtype=model.head.weight.dtype) * (SCALE / norm)
    model.head.weight.copy_(w)
    model.head.bias.zero_()


def zero_shot_metrics(spec: ModelSpec, ds: Dataset, label_ids: dict[str, int], config: TrainConfig,
                      descriptions: dict[str, str] | None = None) -> dict:
    """Accuracy etc. of picking the label nearest to each text (names, templates, descriptions)."""
    encoder, tokenizer = load_encoder(spec.base_model)
    encoder.eval()
    label_vecs = label_vectors(encoder, tokenizer, list(spec.labels), descriptions, config.max_length)
    text_vecs = embed_texts(encoder, tokenizer, ds.texts(), config.max_length)
    logits = text_vecs @ label_vecs.T * SCALE
    y = np.array([label_ids[e.label] for e in ds.examples])
    return classification_metrics(logits, y, spec.labels)


def read_unlabelled(path: str | Path, columns=None) -> list[str]:
    """Texts from a ``.txt`` file (one per non-blank line) or any data file with a text column."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read the unlabelled texts: {e}",
                            hint="a UTF-8 text file with one text per line") from None
        texts = [ln.strip() for ln in lines if ln.strip()]
    else:
        from ..data import ColumnMap, load_dataset

        cols = ColumnMap(**{k: v for k, v in (columns or {}).items() if k == "text"})
        texts = load_dataset(path, cols, label_kind="none").texts()
    if not texts:
        raise DataError(f"{path}: no texts", hint="one text per line (.txt) or a text column")
    return list(dict.fromkeys(texts))


def pseudo_label(text_vecs: np.ndarray, label_vecs: np.ndarray, per_class: int) -> list[tuple[int, int]]:
    """(text index, label index) for the ``per_class`` most confident texts of each label, by the
    margin between the best and second-best cosine; each text at most once."""
    sims = text_vecs @ label_vecs.T
    top2 = np.sort(sims, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    best = sims.argmax(1)
    chosen = []
    for c in range(label_vecs.shape[0]):
        idx = np.flatnonzero(best == c)
        idx = idx[np.argsort(-margin[idx], kind="stable")][:per_class]
        chosen += [(int(i), c) for i in idx]
    return sorted(chosen)
