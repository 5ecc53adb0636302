"""Feedback on turns and labels on hand-off tickets, and how they become training data."""

from __future__ import annotations

import csv
from pathlib import Path

from tuneforge.errors import UsageError

from .store import Store


def record_feedback(store: Store, labels: list[str], *, turn_id: int | None = None,
                    ticket_id: int | None = None, verdict: str | None = None,
                    intent: str | None = None) -> dict:
    """Mark a turn right/wrong (a wrong one may name the right intent) or label a ticket with an intent."""
    if (turn_id is None) == (ticket_id is None):
        raise UsageError("give exactly one of turn_id or ticket_id")
    if intent is not None and intent not in labels:
        import difflib

        close = difflib.get_close_matches(intent, labels, n=1)
        raise UsageError(f"unknown intent {intent!r}", hint=f"did you mean {close[0]!r}?" if close
                         else "see plugins/support_bot/data/categories.json")
    if ticket_id is not None:
        if intent is None:
            raise UsageError("labelling a ticket needs the intent it should have had")
        return {"ticket": store.label_ticket(ticket_id, intent)}
    if verdict is None:
        raise UsageError("feedback on a turn needs a verdict: right or wrong")
    if verdict == "right" and intent is not None:
        raise UsageError("name an intent only for a wrong answer")
    return {"turn": store.mark_turn(turn_id, verdict, intent)}


def fold_feedback(store: Store, base_train: str | Path, out: str | Path) -> dict:
    """Write ``out`` = the base training rows (text, category) + rows learned from feedback.

    Duplicates of base rows (same text, any case) are not added twice.  Returns counts.
    """
    from .datasets import intent_training_rows

    base_train, out = Path(base_train), Path(out)
    base = intent_training_rows(base_train)     # the bundled file: with the task's extra rows
    seen = {t.strip().lower() for t, _ in base}
    added, origins = [], []
    for text, intent, origin in store.training_rows():
        key = text.strip().lower()
        if key and key not in seen:
            seen.add(key)
            added.append((text, intent))
            origins.append(origin)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(base + added)
    return {"base_rows": len(base), "feedback_rows": len(added), "origins": origins, "file": str(out)}
