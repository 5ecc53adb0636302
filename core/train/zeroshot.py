"""Zero-shot classification baseline: the label whose name is most similar to the text."""

from __future__ import annotations

import numpy as np
import torch

from ..config import TrainConfig
from ..data import Dataset
from ..metrics import classification_metrics
from ..modeling import ModelSpec, load_encoder, mean_pool


def label_prompt(label: str) -> str:
    return label.replace("_", " ").replace("-", " ")


@torch.inference_mode()
def embed_texts(encoder, tokenizer, texts: list[str], max_length: int, batch_size: int = 128) -> np.ndarray:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        b = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
        v = mean_pool(encoder(**b).last_hidden_state, b["attention_mask"])
        out[idx] = torch.nn.functional.normalize(v, dim=-1).numpy()
    return out


def zero_shot_metrics(spec: ModelSpec, ds: Dataset, label_ids: dict[str, int], config: TrainConfig,
                      descriptions: dict[str, str] | None = None) -> dict:
    """Accuracy etc. of picking the label (or its description) nearest to each text."""
    encoder, tokenizer = load_encoder(spec.base_model)
    encoder.eval()
    names = [(descriptions or {}).get(lab, label_prompt(lab)) for lab in spec.labels]
    label_vecs = embed_texts(encoder, tokenizer, names, config.max_length)
    text_vecs = embed_texts(encoder, tokenizer, ds.texts(), config.max_length)
    logits = text_vecs @ label_vecs.T * 20.0
    y = np.array([label_ids[e.label] for e in ds.examples])
    return classification_metrics(logits, y, spec.labels)
