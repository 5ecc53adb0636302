"""The few-shot stage: contrastive tuning of the encoder on the k labelled examples per class.

Two losses (``TrainConfig.few_shot_loss``):

``supcon`` (default)  supervised contrastive loss (Khosla et al. 2020) over class-balanced
                      batches: each batch holds ``few_shot_classes_per_batch`` classes with up to
                      4 examples each, every same-class row a positive, every other row a
                      negative.  Half the batches are *hard*: a class and its nearest classes by
                      prototype similarity under the current encoder (recomputed every 2 passes), so
                      the intents that get confused meet each other far more often than chance.
                      Label anchors (the label's name in a few templates, its description when
                      given) are members of their class like any example.
``pairs``             the SetFit-style pair regression of earlier versions (cosine of a pair
                      towards 1 for same class, 0 otherwise), kept for comparison.

The head is then fitted on the tuned, frozen encoder by the ordinary loop (mode ``head``) on the
examples and the anchors, for a fixed number of epochs: a few-shot user has no large validation
set to pick an epoch on, so none is used (defaults were chosen on validation folds of the k
examples, see docs/training.md).
"""

from __future__ import annotations

import contextlib
import math
import random

import numpy as np
import torch
from torch.nn import functional as F

from ..config import TrainConfig
from ..modeling import TaskModel, mean_pool
from .features import Features, augment_ids, pad
from .loop import adamw, cpu_has_native_bf16
from .progress import TrainProgress

# prompt templates for label anchors ("a question about card arrival"); the label text is the
# label name with separators turned into spaces
TEMPLATES = ("{label}", "a question about {label}", "i need help with {label}")
NEIGHBOUR_REFRESH = 2   # epochs between recomputing each class's nearest classes (hard batches)


def label_prompt(label: str) -> str:
    """``card_not_working`` -> ``card not working``."""
    return " ".join(str(label).replace("_", " ").replace("-", " ").replace("?", " ").split())


def anchor_texts(label: str, description: str | None = None, templates=TEMPLATES) -> list[str]:
    """The label's name in each template, then its description (when there is one)."""
    name = label_prompt(label)
    out = [t.format(label=name) for t in templates]
    if description:
        out.append(str(description))
    return out


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


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss of L2-normalised rows ``z`` [B, H] with labels ``y`` [B]:
    the mean over rows with a positive of -mean log p(positive | row)."""
    sim = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_row = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]
    return per_row.mean()


def class_batches(targets, classes_per_batch: int, per_class: int, rng: random.Random,
                  neighbours: dict[int, list[int]] | None = None, hard_share: float = 0.5) -> list[list[int]]:
    """One epoch of class-balanced batches: every row once, in chunks of up to ``per_class`` rows
    of one class, ``classes_per_batch`` distinct classes per batch.  With ``neighbours``
    (class -> classes by decreasing similarity), ``hard_share`` of the batches are built around
    a random class and its nearest classes that still have chunks left."""
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(targets):
        by_label.setdefault(int(y), []).append(i)
    chunks: dict[int, list[list[int]]] = {}
    for y, rows in by_label.items():
        rows = rows[:]
        rng.shuffle(rows)
        chunks[y] = [rows[s:s + per_class] for s in range(0, len(rows), per_class)]
    batches = []
    while any(chunks.values()):
        open_classes = [y for y, c in chunks.items() if c]
        if neighbours and rng.random() < hard_share:
            seed = rng.choice(open_classes)
            chosen = [seed] + [y for y in neighbours.get(seed, []) if chunks.get(y)][:classes_per_batch - 1]
            if len(chosen) < classes_per_batch:
                rest = [y for y in open_classes if y not in chosen]
                chosen += rng.sample(rest, min(len(rest), classes_per_batch - len(chosen)))
        else:
            chosen = rng.sample(open_classes, min(len(open_classes), classes_per_batch))
        batch = []
        for y in chosen:
            batch += chunks[y].pop()
        batches.append(batch)
    return batches


@torch.no_grad()
def _neighbours(embed, feats: Features, k: int) -> dict[int, list[int]]:
    """Each class's nearest other classes by the cosine of their mean embeddings."""
    vecs = []
    for s in range(0, len(feats), 128):
        vecs.append(F.normalize(embed(feats.input_ids[s:s + 128]), dim=-1))
    z = torch.cat(vecs)
    y = torch.as_tensor(np.asarray(feats.targets, dtype=np.int64))
    classes = sorted(set(y.tolist()))
    protos = F.normalize(torch.stack([z[y == c].mean(0) for c in classes]), dim=-1)
    sim = protos @ protos.T
    sim.fill_diagonal_(-2.0)
    order = sim.argsort(dim=1, descending=True)[:, :k]
    return {classes[i]: [classes[j] for j in order[i].tolist()] for i in range(len(classes))}


def contrastive_pretrain(model: TaskModel, feats: Features, config: TrainConfig, pad_id: int,
                         *, batch_size: int = 16, progress: bool = True, special_ids=()) -> dict:
    """Tune ``model.encoder`` on ``feats`` (examples + anchors) with ``config.few_shot_loss``;
    returns what was done (loss, steps, rows seen) for the run's report."""
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    enc = model.encoder
    frozen = [p for p in enc.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    optimizer = adamw(list(enc.parameters()), lr=config.learning_rate, weight_decay=config.weight_decay)

    device = next(enc.parameters()).device
    bf16 = config.precision == "bf16" or (config.precision == "auto" and (
        cpu_has_native_bf16() if device.type == "cpu" else device.type == "cuda"))
    # training steps in bf16 where the hardware has it (the engine's own policy, see loop.py)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def embed(rows):
        ids, mask = pad(rows, pad_id)
        ids, mask = ids.to(device), mask.to(device)
        with autocast():
            hidden = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        return mean_pool(hidden.float(), mask)

    try:
        if config.few_shot_loss == "pairs":
            info = _pairs(enc, embed, feats, config, optimizer, rng, batch_size, progress)
        else:
            info = _supcon(enc, embed, feats, config, optimizer, rng, progress, bf16, set(special_ids))
    finally:
        for p in frozen:
            p.requires_grad_(False)
        enc.eval()
    return info


def _pairs(enc, embed, feats, config, optimizer, rng, batch_size, progress) -> dict:
    pairs = make_pairs(feats.targets, config.few_shot_pairs, rng)
    steps = math.ceil(len(pairs) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    enc.train()
    with TrainProgress(steps, enabled=progress, description="few-shot pairs") as bar:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            a = embed([feats.input_ids[i] for i, _, _ in chunk])
            b = embed([feats.input_ids[j] for _, j, _ in chunk])
            target = torch.tensor([y for _, _, y in chunk], device=a.device)
            loss = F.mse_loss(F.cosine_similarity(a, b), target)
            _step(loss, enc, config, optimizer, schedule)
            bar.advance(loss.item(), len(chunk))
    return {"loss": "pairs", "pairs": len(pairs), "steps": steps}


def _supcon(enc, embed, feats, config, optimizer, rng, progress, bf16, special=frozenset()) -> dict:
    classes = len(set(np.asarray(feats.targets).tolist()))
    per_batch = max(2, min(config.few_shot_classes_per_batch, classes))
    per_class = 4
    epochs = max(1, math.ceil(config.few_shot_epochs))
    plan = class_batches(feats.targets, per_batch, per_class, random.Random(config.seed))
    steps = epochs * len(plan)
    warmup = max(1, int(0.1 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    targets = torch.as_tensor(np.asarray(feats.targets, dtype=np.int64))
    losses = []
    near = None
    with TrainProgress(steps, enabled=progress, description="few-shot contrastive") as bar:
        for epoch in range(epochs):
            if epoch % NEIGHBOUR_REFRESH == 0:  # a forward pass over every row: not every epoch
                enc.eval()
                near = _neighbours(embed, feats, per_batch - 1)
            enc.train()
            for batch in class_batches(feats.targets, per_batch, per_class, rng, near):
                rows = [feats.input_ids[i] for i in batch]
                if config.augment > 0:  # token deletion / swap, a new view of each row every pass
                    rows = [augment_ids(r, config.augment, rng, special) for r in rows]
                z = F.normalize(embed(rows), dim=-1)
                loss = supcon_loss(z, targets[batch].to(z.device), config.few_shot_temperature)
                _step(loss, enc, config, optimizer, schedule)
                losses.append(loss.item())
                bar.advance(losses[-1], len(batch))
    return {"loss": "supcon", "epochs": epochs, "steps": len(losses), "classes_per_batch": per_batch,
            "autocast": "bf16" if bf16 else "fp32",
            "temperature": config.few_shot_temperature, "rows": len(feats),
            "final_loss": float(np.mean(losses[-max(1, len(plan)):])) if losses else None}


def _step(loss, enc, config, optimizer, schedule) -> None:
    loss.backward()
    torch.nn.utils.clip_grad_norm_(enc.parameters(), config.max_grad_norm)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
