"""Financial sentiment (Twitter financial news, MIT licence, see NOTICE.md).

Plugin for entry point ``finance_sentiment``; the monitor app lives in
``tuneforge.apps.finance_monitor``.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge import hookimpl
from tuneforge.tasks import TaskSpec

DATA = Path(__file__).parent / "data"
TASK = "finance-sentiment"
LABELS = {"0": "negative", "1": "positive", "2": "neutral"}


@hookimpl
def tuneforge_register_tasks(register):
    register(TaskSpec(
        name=TASK,
        kind="classification",
        description="Sentiment of financial news: negative / neutral / positive.",
        labels=["negative", "neutral", "positive"],
        data_files={"train": str(DATA / "train.csv"), "validation": str(DATA / "valid.csv")},
        columns={"text": "text", "label": "label"},
        train_defaults={"mode": "full", "epochs": 3, "max_length": 64, "learning_rate": 5e-5},
    ))


@hookimpl
def tuneforge_load_data(task, path, split):
    """The bundled file labels sentiment 0/1/2; map to names (other files load as usual)."""
    if task.name != TASK or not path.startswith(str(DATA)):
        return None
    from tuneforge.data import ColumnMap, load_dataset

    ds = load_dataset(path, ColumnMap(text="text", label="label"), label_kind="single")
    for example in ds.examples:
        example.label = LABELS[example.label]
    return ds
