"""SetFit-style few-shot stage: contrastive pair tuning of the encoder.

Pairs of the few labelled examples -- same class = similar (1), different
class = dissimilar (0) -- tune the encoder with a cosine-similarity loss on
mean-pooled embeddings.  The head is then trained on the tuned, frozen encoder
by the ordinary loop (mode ``head``, frozen features cached).
"""

from __future__ import annotations

import math
import random

import torch
from torch.nn import functional as F

from ..config import TrainConfig
from ..modeling import TaskModel, mean_pool
from .features import Features, pad
from .loop import adamw
from .progress import TrainProgress


def make_pairs(targets, pairs_per_example: int, rng: random.Random) -> list[tuple[int, int, float]]:
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(targets):
        by_label.setdefault(int(y), []).append(i)
    everyone = list(range(len(targets)))
    pairs = []
    for i, y in enumerate(targets):
        same = [j for j in by_label[int(y)] if j != i]
        for n in range(pairs_per_example):
            if n % 2 == 0 and same:
                pairs.append((i, rng.choice(same), 1.0))
            else:
                j = rng.choice(everyone)
                while int(targets[j]) == int(y) and len(by_label) > 1:
                    j = rng.choice(everyone)
                pairs.append((i, j, 0.0))
    rng.shuffle(pairs)
    return pairs


def contrastive_pretrain(model: TaskModel, feats: Features, config: TrainConfig, pad_id: int,
                         *, batch_size: int = 16, progress: bool = True) -> int:
    """Tune ``model.encoder`` on pairs of ``feats``; returns the number of pairs seen."""
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    pairs = make_pairs(feats.targets, config.few_shot_pairs, rng)
    enc = model.encoder
    frozen = [p for p in enc.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    optimizer = adamw(list(enc.parameters()), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    steps = math.ceil(len(pairs) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))

    def embed(rows):
        ids, mask = pad(rows, pad_id)
        return mean_pool(enc(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    enc.train()
    with TrainProgress(steps, enabled=progress, description="few-shot pairs") as bar:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            a = embed([feats.input_ids[i] for i, _, _ in chunk])
            b = embed([feats.input_ids[j] for _, j, _ in chunk])
            target = torch.tensor([y for _, _, y in chunk])
            loss = F.mse_loss(F.cosine_similarity(a, b), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(enc.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            bar.advance(loss.item(), len(chunk))
    for p in frozen:
        p.requires_grad_(False)
    enc.eval()
    return len(pairs)
