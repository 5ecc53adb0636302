"""From examples to tensors: tokenisation once, length-grouped batches, dynamic padding.

Nothing is padded to ``max_length``: each batch is padded to its own longest
row, and batches are built from rows of similar length (``length_grouped``),
which is where most of the CPU time of a naive loop goes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import encode_targets

IGNORE = -100


@dataclass
class Features:
    """Token ids for every example (unpadded) and the encoded targets."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    targets: np.ndarray
    pair_ids: list[list[int]] | None = None   # embedding kind: the positive side
    soft_targets: np.ndarray | None = None    # distillation: the teacher's logits [N, C]

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        if self.pair_ids is None:
            return [len(x) for x in self.input_ids]
        return [max(len(a), len(b)) for a, b in zip(self.input_ids, self.pair_ids)]


def encode(tokenizer, examples, kind: str, label_ids: dict[str, int], max_length: int) -> Features:
    """Tokenise a list of :class:`tuneforge.data.Example` for ``kind``."""
    texts = [e.text for e in examples]
    if kind == "token":
        enc = tokenizer([e.tokens for e in examples], is_split_into_words=True,
                        truncation=True, max_length=max_length)
        targets = []
        for i, e in enumerate(examples):
            prev, row = None, []
            for w in enc.word_ids(i):
                row.append(IGNORE if w is None or w == prev else label_ids[e.tags[w]])
                prev = w
            targets.append(row)
        rows = np.empty(len(targets), dtype=object)
        for i, row in enumerate(targets):
            rows[i] = row
        return Features(enc["input_ids"], None, rows)
    if kind == "pair":
        enc = tokenizer(texts, [e.text_pair for e in examples], truncation=True, max_length=max_length)
    else:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
    pair_ids = None
    if kind == "embedding":
        pair_ids = tokenizer([e.text_pair or e.text for e in examples], truncation=True,
                             max_length=max_length)["input_ids"]
    targets = encode_targets(kind, [e.label for e in examples], label_ids)
    return Features(enc["input_ids"], enc.get("token_type_ids") if kind == "pair" else None,
                    targets, pair_ids)


def concat_features(a: Features, b: Features) -> Features:
    """Rows of ``a`` then ``b`` (same kind; soft targets and pairs are not carried)."""
    tt = None if a.token_type_ids is None or b.token_type_ids is None else a.token_type_ids + b.token_type_ids
    return Features(list(a.input_ids) + list(b.input_ids), tt,
                    np.concatenate([np.asarray(a.targets), np.asarray(b.targets)]))


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random | None,
                           mega: int = 64) -> list[list[int]]:
    """Indices in batches of similar length.

    Training (``rng`` given): shuffle, sort within windows of ``mega`` batches,
    then shuffle the batches -- random enough to train well, little padding.
    Evaluation (``rng`` None): globally sorted, longest first.
    """
    idx = list(range(len(lengths)))
    if rng is None:
        idx.sort(key=lambda i: -lengths[i])
        return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    rng.shuffle(idx)
    window = batch_size * mega
    batches = []
    for start in range(0, len(idx), window):
        chunk = sorted(idx[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad(rows: list[list[int]], value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def collate(features: Features, batch: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """One padded batch: ``input_ids``, ``attention_mask`` (+ ``token_type_ids``,
    ``pair_*`` for embeddings) and ``targets``."""
    ids, mask = pad([features.input_ids[i] for i in batch], pad_id)
    out = {"input_ids": ids, "attention_mask": mask}
    if features.token_type_ids is not None:
        out["token_type_ids"], _ = pad([features.token_type_ids[i] for i in batch], 0)
    if features.pair_ids is not None:
        out["pair_input_ids"], out["pair_attention_mask"] = pad([features.pair_ids[i] for i in batch], pad_id)
    if features.soft_targets is not None:
        out["soft_targets"] = torch.from_numpy(np.ascontiguousarray(features.soft_targets[batch]))
    t = features.targets
    if t.dtype == object:  # token tags: pad with IGNORE
        out["targets"], _ = pad([t[i] for i in batch], IGNORE)
    else:
        out["targets"] = torch.from_numpy(t[batch])
    return out


def augment_ids(ids: list[int], p: float, rng: random.Random, special: set[int]) -> list[int]:
    """Random token deletion and adjacent swap (never touching special tokens)."""
    body = [t for t in ids if t not in special]
    if len(body) < 3 or p <= 0:
        return ids
    body = [t for t in body if rng.random() >= p] or body[:1]
    if len(body) > 1 and rng.random() < p * 2:
        j = rng.randrange(len(body) - 1)
        body[j], body[j + 1] = body[j + 1], body[j]
    head = [t for t in ids[:1] if t in special]
    tail = [t for t in ids[-1:] if t in special]
    return head + body + tail
