"""Training modes: which parameters learn, and the frozen-prefix cache.

``full``      every parameter learns; ``train_word_embeddings=False`` keeps the
              vocab x hidden word-embedding table (half of MiniLM's weights, of which
              a batch touches a few hundred rows) frozen, saving its dense gradient
              and optimizer update (~5% per step on CPU, slightly lower accuracy).
``lora``      low-rank adapters (peft) on the attention/FFN projections + the head;
              merged into the encoder before the model is saved or exported.
``top-k``     only the top ``k`` encoder layers and the head learn.
``head``      only the head learns (linear probe).
``few-shot``  SetFit-style: contrastive pair tuning of the encoder, then a head
              (see :mod:`tuneforge.train.fewshot`).

When the bottom of the encoder is frozen (``top-k``, ``head``), its output for
a given input never changes, so :func:`frozen_prefix` computes it once and the
training loop runs only the trainable top -- a large saving on CPU.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError
from ..modeling import TaskModel


def encoder_layers(encoder: nn.Module) -> nn.ModuleList | None:
    """The list of transformer blocks of a BERT-style encoder, or None if unknown."""
    inner = getattr(encoder, "encoder", None)
    layers = getattr(inner, "layer", None)
    return layers if isinstance(layers, nn.ModuleList) and hasattr(encoder, "embeddings") else None


def num_layers(encoder: nn.Module) -> int:
    return int(getattr(encoder.config, "num_hidden_layers", 0))


def apply_mode(model: TaskModel, mode: str, *, top_k: int = 2, lora: dict | None = None,
               train_word_embeddings: bool = True) -> dict:
    """Freeze / wrap ``model`` for ``mode``; returns a summary (trainable counts, prefix depth).

    ``train_word_embeddings=False`` (mode ``full``) leaves the token-embedding table frozen.
    """
    enc = model.encoder
    depth = num_layers(enc)
    prefix = 0
    if mode in ("full", "few-shot"):
        for p in model.parameters():
            p.requires_grad_(True)
        words = enc.get_input_embeddings() if hasattr(enc, "get_input_embeddings") else None
        if not train_word_embeddings and words is not None:
            words.weight.requires_grad_(False)
    elif mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora = lora or {}
        present = {n.rsplit(".", 1)[-1] for n, m in enc.named_modules() if isinstance(m, nn.Linear)}
        targets = [t for t in lora.get("targets", ["query", "value"]) if t in present]
        if not targets:
            raise ConfigError(f"lora_targets {lora.get('targets')} match no linear layer of the encoder",
                              hint="available: " + ", ".join(sorted(present)))
        config = LoraConfig(r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16),
                            lora_dropout=lora.get("dropout", 0.1), target_modules=targets)
        model.encoder = get_peft_model(enc, config)
    elif mode in ("top-k", "head"):
        k = 0 if mode == "head" else top_k
        if k > depth:
            raise ConfigError(f"top_k={k} is larger than the encoder's {depth} layers",
                              hint=f"use --top-k between 1 and {depth} (or --mode full)")
        for p in enc.parameters():
            p.requires_grad_(False)
        layers = encoder_layers(enc)
        if k and layers is None:
            raise ConfigError("mode top-k needs a BERT-style encoder (embeddings + encoder.layer)",
                              hint="use --mode lora or full for this model")
        for layer in list(layers)[depth - k:] if k else []:
            for p in layer.parameters():
                p.requires_grad_(True)
        prefix = depth - k
    else:  # pragma: no cover - TrainConfig validates modes
        raise ConfigError(f"unknown mode {mode!r}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"mode": mode, "trainable_params": trainable, "total_params": total,
            "frozen_layers": prefix if mode in ("top-k", "head") else 0}


def merge_lora(model: TaskModel) -> TaskModel:
    """Fold LoRA adapters into the encoder weights (no-op for other modes)."""
    if hasattr(model.encoder, "merge_and_unload"):
        model.encoder = model.encoder.merge_and_unload()
    return model


class _Passthrough(nn.Module):
    """Stands in for the embeddings: hands cached hidden states to the top layers."""

    def forward(self, *args, inputs_embeds=None, **kwargs):
        return inputs_embeds


@contextmanager
def _swapped(encoder: nn.Module, layers: list[nn.Module], passthrough: bool):
    layers_attr = encoder.encoder
    saved_layers, saved_emb = layers_attr.layer, encoder.embeddings
    layers_attr.layer = nn.ModuleList(layers)
    if passthrough:
        encoder.embeddings = _Passthrough()
    try:
        yield encoder
    finally:
        layers_attr.layer, encoder.embeddings = saved_layers, saved_emb


def can_cache_prefix(model: TaskModel, summary: dict) -> bool:
    """True when the bottom of the encoder is frozen and we know how to split it off."""
    return summary["frozen_layers"] > 0 and encoder_layers(model.encoder) is not None


@torch.no_grad()  # not inference_mode: the cached tensors feed autograd-tracked layers
def frozen_prefix(model: TaskModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  depth: int, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Hidden states after the first ``depth`` blocks (eval mode: no dropout)."""
    enc = model.encoder
    was_training = enc.training
    enc.eval()
    kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    with _swapped(enc, list(encoder_layers(enc))[:depth], passthrough=False):
        hidden = enc(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
    enc.train(was_training)
    return hidden


def forward_from_prefix(model: TaskModel, hidden: torch.Tensor, attention_mask: torch.Tensor,
                        depth: int) -> torch.Tensor:
    """Run the top blocks on cached hidden states, then the head."""
    enc = model.encoder
    top = list(encoder_layers(enc))[depth:]
    if top:
        with _swapped(enc, top, passthrough=True):
            hidden = enc(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state
    return model.head_forward(hidden, attention_mask)
