"""The bundled question sets and how they are split between calibration and evaluation.

A question goes to the ``calibration`` or the ``evaluation`` half by a hash of its
text -- stable across runs and machines, so thresholds are never chosen on the
questions they are evaluated on.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from tuneforge.errors import DataError

DATA = Path(__file__).parent / "data"
KB_DIR = Path(__file__).parent / "kb"
ANSWERS = DATA / "answers.yaml"
OUT_OF_SCOPE = DATA / "out_of_scope.txt"
KB_QUESTIONS = DATA / "kb_questions.csv"
INTENT_TEST = DATA / "test.csv"
INTENT_TRAIN = DATA / "train.csv"
HALVES = ("calibration", "evaluation")


def half_of(text: str, calibration_share: float = 0.35) -> str:
    h = int(hashlib.md5(text.strip().lower().encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "calibration" if h < calibration_share else "evaluation"


def _pick(items: list, key, half: str | None) -> list:
    if half is None:
        return items
    if half not in HALVES:
        raise DataError(f"unknown half {half!r}; use calibration or evaluation")
    return [x for x in items if half_of(key(x)) == half]


def _csv(path: Path, columns: tuple[str, str]) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(columns) - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"missing column(s) {sorted(missing)}", path=path)
            return [(r[columns[0]].strip(), r[columns[1]].strip()) for r in reader if r[columns[0]].strip()]
    except OSError as e:
        raise DataError(f"cannot read: {e}", path=path) from None


def labelled_questions(path: str | Path = INTENT_TEST, half: str | None = None) -> list[tuple[str, str]]:
    """(question, intent) pairs from a CSV with ``text`` and ``category`` (or ``label``) columns."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        fields = next(csv.reader(f), [])
    label = "category" if "category" in fields else "label"
    return _pick(_csv(path, ("text", label)), lambda x: x[0], half)


def out_of_scope(path: str | Path = OUT_OF_SCOPE, half: str | None = None) -> list[str]:
    """Questions no banking intent covers (one per line, '#' comments)."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    return _pick([ln for ln in lines if ln and not ln.startswith("#")], lambda x: x, half)


def kb_questions(path: str | Path = KB_QUESTIONS, half: str | None = None) -> list[tuple[str, str]]:
    """(paraphrased question, knowledge-base file that answers it)."""
    return _pick(_csv(Path(path), ("question", "source")), lambda x: x[0], half)


BANK_PHRASINGS = DATA / "conversation" / "bank_train.csv"   # also the router's bank references


def intent_training_rows(path: str | Path = INTENT_TRAIN) -> list[tuple[str, str]]:
    """The support-intents task's training rows: (text, label).

    For the bundled file (BANKING77 train) the task trains on more than BANKING77: the bank
    questions in other phrasings written for tuneforge (``data/conversation/bank_train.csv``;
    their intent, or -- for the ones the help pages answer -- the label ``knowledge_base``),
    the calibration half of the knowledge-base questions and the knowledge-base passages
    themselves (also ``knowledge_base``).  Any other file is read as it is.
    """
    from .cascade import KB_INTENT

    rows = labelled_questions(path)
    if Path(path).resolve() != INTENT_TRAIN.resolve():
        return rows
    labels = {y for _, y in rows}
    for text, expected in _csv(BANK_PHRASINGS, ("text", "expected")):
        if expected in labels:
            rows.append((text, expected))
        elif expected.startswith("kb:"):
            rows.append((text, KB_INTENT))
    rows += [(q, KB_INTENT) for q, _ in kb_questions(half="calibration")]
    from .knowledge import load_documents

    rows += [(" ".join(c.text.split())[:300], KB_INTENT) for d in load_documents(KB_DIR) for c in d.chunks]
    return rows
