"""The one model shape every task kind trains and exports: encoder + pooling + head.

A :class:`TaskModel` wraps any Hugging Face encoder (``AutoModel``) and adds what
the task kind needs on top of its last hidden state:

========================  =========================  ==========================
kind                      head                       output of ``forward``
========================  =========================  ==========================
``classification``        dropout + linear           logits ``[B, C]``
``multilabel``            dropout + linear           logits ``[B, C]`` (sigmoid)
``pair``                  dropout + linear (1)       score ``[B]``
``embedding``             none                       L2-normalised ``[B, H]``
``token``                 dropout + linear           logits ``[B, T, C]``
========================  =========================  ==========================

Saved as a folder: ``encoder/`` (``save_pretrained`` + tokenizer files),
``head.safetensors`` and ``task_model.json`` (a :class:`ModelSpec`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, UsageError
from .tasks import TASK_KINDS

POOLINGS = ("mean", "cls")


@dataclass
class ModelSpec:
    """What sits on top of the encoder; saved as ``task_model.json``."""

    kind: str
    labels: list[str] = field(default_factory=list)
    pooling: str = "mean"
    base_model: str = ""
    max_length: int = 128

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"unknown task kind {self.kind!r}",
                              hint="use one of " + ", ".join(TASK_KINDS))
        if self.pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}", hint="use mean or cls")
        if self.kind in ("classification", "multilabel", "token") and not self.labels:
            raise ConfigError(f"a {self.kind} task needs at least one label, got an empty label set",
                              hint="check the label column of your data")
        if self.kind == "classification" and len(self.labels) < 2:
            raise ConfigError("a classification task needs at least two labels, got "
                              f"{self.labels}", hint="check the label column of your data")

    @property
    def num_outputs(self) -> int:
        if self.kind == "pair":
            return 1
        if self.kind == "embedding":
            return 0
        return len(self.labels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(**d)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class TaskModel(nn.Module):
    """Encoder + pooling + task head.  ``forward`` returns one tensor (see module doc)."""

    def __init__(self, encoder: nn.Module, spec: ModelSpec, dropout: float | None = None):
        super().__init__()
        self.encoder = encoder
        self.spec = spec
        cfg = encoder.config
        p = dropout if dropout is not None else getattr(cfg, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(p)
        self.head = nn.Linear(cfg.hidden_size, spec.num_outputs) if spec.num_outputs else None

    # -- forward -----------------------------------------------------------
    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        return self.head_forward(hidden, attention_mask)

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)

    def head_forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Outputs from the encoder's last hidden state (also used with cached features)."""
        kind = self.spec.kind
        if kind == "token":
            return self.head(self.dropout(hidden))
        pooled = self.pooled(hidden, attention_mask)
        if kind == "embedding":
            return nn.functional.normalize(pooled, dim=-1)
        out = self.head(self.dropout(pooled))
        return out.squeeze(-1) if kind == "pair" else out

    # -- persistence ---------------------------------------------------------
    def save(self, path: str | Path, tokenizer=None) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path / "encoder")
        if tokenizer is not None:
            tokenizer.save_pretrained(path / "encoder")
        if self.head is not None:
            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()},
                      str(path / "head.safetensors"))
        (path / "task_model.json").write_text(json.dumps(self.spec.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TaskModel":
        from safetensors.torch import load_file
        from transformers import AutoModel

        path = Path(path)
        meta = path / "task_model.json"
        if not meta.is_file():
            raise UsageError(f"{path} is not a saved tuneforge model (no task_model.json)",
                             hint="pass a run folder's model/ directory")
        spec = ModelSpec.from_dict(json.loads(meta.read_text()))
        encoder = AutoModel.from_pretrained(path / "encoder", attn_implementation="eager")
        model = cls(encoder, spec)
        if model.head is not None:
            model.head.load_state_dict(load_file(str(path / "head.safetensors")))
        return model.eval()


def load_encoder(name_or_path: str, *, attn_implementation: str = "eager"):
    """Load a local Hugging Face encoder and its tokenizer (offline)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .models import resolve_model_path

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path, attn_implementation=attn_implementation)
    return encoder, tokenizer


def build_task_model(spec: ModelSpec, *, dropout: float | None = None):
    """A fresh :class:`TaskModel` on top of ``spec.base_model`` and its tokenizer."""
    encoder, tokenizer = load_encoder(spec.base_model)
    return TaskModel(encoder, spec, dropout=dropout), tokenizer
