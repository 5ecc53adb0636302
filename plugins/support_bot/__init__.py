"""Support bot: banking intents (BANKING77, CC BY 4.0, see NOTICE.md), answer templates,
a knowledge base searched with FAISS, calibrated hand-off to humans, feedback and retraining.

This module is the plugin (entry point ``support_bot``) and stays import-light: it is
loaded for every CLI call.  The pieces, one job each:

==================  =============================================================
``knowledge``       answer templates (YAML) and knowledge-base chunking
``retrieval``       FAISS index over chunk embeddings, incremental rebuild
``calibrate``       thresholds for a target precision; ``thresholds.json``
``cascade``         template -> retrieval -> clarify -> hand-off
``conversation``    sessions, memory, /help /reset /quit, turns recorded
``store``           SQLite transcripts, feedback, tickets (masked by ``pii``)
``bot`` / ``build`` a bot folder: load it / build it
``feedback``        marking turns, labelling tickets, folding them into data
``retrain`` / ``evaluate`` / ``routes`` / ``commands``
==================  =============================================================

The terminal app is ``tuneforge.apps.support_bot`` (``tuneforge chat``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge import hookimpl
from tuneforge.tasks import AppTemplate, TaskSpec

DATA = Path(__file__).parent / "data"
KB = Path(__file__).parent / "kb"
TEMPLATES = Path(__file__).parent / "templates"
TASK = "support-intents"


@hookimpl
def tuneforge_register_tasks(register):
    register(TaskSpec(
        name=TASK,
        kind="classification",
        description="Banking customer-service intents (BANKING77: 77 intents, 10k train / 3k test; "
                    "plus knowledge_base: questions the help pages answer).",
        labels=[*json.loads((DATA / "categories.json").read_text()), "knowledge_base"],
        data_files={"train": str(DATA / "train.csv"), "test": str(DATA / "test.csv")},
        columns={"text": "text", "label": "category"},
        train_defaults={"mode": "full", "epochs": 3, "max_length": 64, "batch_size": 32,
                        "learning_rate": 1e-4},
    ))


@hookimpl
def tuneforge_load_data(task, path, split):
    """support-intents, given its bundled training file, trains on more than BANKING77: the bank
    questions in other phrasings written for tuneforge and, as ``knowledge_base``, what the help
    pages answer (:func:`.datasets.intent_training_rows`).  Other files go to core's loader."""
    if task.name != TASK or split != "train":
        return None
    from .datasets import INTENT_TRAIN, intent_training_rows

    if Path(path).resolve() != INTENT_TRAIN.resolve():
        return None
    import hashlib

    from tuneforge.data import Dataset, Example

    rows = intent_training_rows(path)
    digest = hashlib.sha256("\n".join(f"{t}\t{y}" for t, y in rows).encode("utf-8")).hexdigest()
    return Dataset([Example(text=t, label=y, line=i + 2) for i, (t, y) in enumerate(rows)], str(path), digest)


@hookimpl
def tuneforge_register_templates(register):
    register(AppTemplate(name="support-bot", path=str(TEMPLATES / "support-bot"),
                         description="A support bot for your own intents: train, export, answer or hand off."))


@hookimpl
def tuneforge_register_commands(cli):
    from .commands import register

    register(cli)


@hookimpl
def tuneforge_register_apps(register):
    from tuneforge.application import AppSpec

    from .app import load
    from .bot import DEFAULT_BOT_DIR

    register(AppSpec(name="support-bot", load=load, default_path=DEFAULT_BOT_DIR,
                     path_help="the bot folder written by `tuneforge support-bot build`",
                     description="Customer-service bot: POST /v1/chat, POST /v1/feedback."))
