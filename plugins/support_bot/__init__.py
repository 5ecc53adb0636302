"""Support bot: banking intent classification (BANKING77, CC BY 4.0, see NOTICE.md).

This module is the plugin (entry point ``support_bot``); the chat app lives in
``tuneforge.apps.support_bot``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge import hookimpl
from tuneforge.tasks import TaskSpec

DATA = Path(__file__).parent / "data"
TASK = "support-intents"


@hookimpl
def tuneforge_register_tasks(register):
    register(TaskSpec(
        name=TASK,
        kind="classification",
        description="Banking customer-service intents (BANKING77: 77 intents, 10k train / 3k test).",
        labels=json.loads((DATA / "categories.json").read_text()),
        data_files={"train": str(DATA / "train.csv"), "test": str(DATA / "test.csv")},
        columns={"text": "text", "label": "category"},
        train_defaults={"mode": "full", "epochs": 3, "max_length": 64, "batch_size": 32,
                        "learning_rate": 1e-4},
    ))
