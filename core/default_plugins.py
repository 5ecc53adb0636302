"""The engine's own hook implementations, loaded like any plugin (entry point ``core``).

Generic tasks, one per task kind, for users who bring their own data file, and
overridable defaults (``trylast``) that domain plugins replace.
"""

from __future__ import annotations

from .hookspecs import hookimpl
from .tasks import TaskSpec

GENERIC_TASKS = {
    "text-classification": ("classification", "Single-label text classification of your own data."),
    "multilabel-classification": ("multilabel", "Multi-label text classification (labels joined by '|')."),
    "pair-scoring": ("pair", "Cross-encoder: (text, text_pair) -> relevance score in [0, 1]."),
    "embedding": ("embedding", "Bi-encoder trained with in-batch negatives on (text, text_pair) pairs."),
    "token-classification": ("token", "BIO tagging of tokens (JSONL with tokens and tags)."),
}


@hookimpl
def tuneforge_register_tasks(register):
    for name, (kind, description) in GENERIC_TASKS.items():
        register(TaskSpec(name=name, kind=kind, description=description))


@hookimpl(trylast=True)
def tuneforge_postprocess(task, texts, predictions):
    return [p.to_dict() for p in predictions]
