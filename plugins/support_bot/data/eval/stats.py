"""Count tables and consistency checks for the support bot's conversation and evaluation data.

Stdlib only.  ``python3 stats.py`` prints the Markdown tables pasted into README.md;
``python3 stats.py --check`` also verifies labels, duplicates and overlap (exit status 1 on a problem);
``--near`` adds the slower near-copy checks (token-set Jaccard >= 0.8) against BANKING77, and of
bank_train.csv against the evaluation rows.
"""
from __future__ import annotations

import csv
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

EVAL = Path(__file__).resolve().parent
DATA = EVAL.parent
CONV = DATA / "conversation"
KB = DATA.parent / "kb"
SPLITS = ("calibration", "evaluation")


def norm(text: str) -> str:
    """Lowercase, drop punctuation and collapse whitespace: the key for duplicate checks."""
    text = re.sub(r"[^\w\s]", " ", unicodedata.normalize("NFKC", text).lower())
    return " ".join(text.split())


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def kind(expected: str) -> str:
    return "kb" if expected.startswith("kb:") else "handoff" if expected == "handoff" else "intent"


def split_table(title: str, data: list[dict[str, str]], key) -> str:
    counts = Counter((key(r), r["split"]) for r in data)
    groups = sorted({g for g, _ in counts})
    out = [f"**{title}** ({len(data)} rows)", "",
           "| group | calibration | evaluation | total |", "|---|---:|---:|---:|"]
    for g in groups:
        c, e = counts[(g, "calibration")], counts[(g, "evaluation")]
        out.append(f"| {g} | {c} | {e} | {c + e} |")
    c = sum(v for (_, s), v in counts.items() if s == "calibration")
    out.append(f"| **total** | {c} | {len(data) - c} | {len(data)} |")
    return "\n".join(out)


def count_table(title: str, data: list[dict[str, str]], col: str) -> str:
    counts = Counter(r[col] for r in data)
    out = [f"**{title}** ({len(data)} rows)", "", f"| {col} | rows |", "|---|---:|"]
    out += [f"| {g} | {n} |" for g, n in sorted(counts.items())]
    return "\n".join(out)


def bank_train_table(data: list[dict[str, str]]) -> str:
    counts = Counter(r["expected"] for r in data)
    out = [f"**conversation/bank_train.csv by expected answer** ({len(data)} rows)", ""]
    for k in ("intent", "kb"):
        n = {e: c for e, c in counts.items() if kind(e) == k}
        out.append(f"* {k}: {sum(n.values())} rows, {len(n)} distinct, {min(n.values())}-{max(n.values())} rows each"
                   if n else f"* {k}: 0 rows")
    out += ["", "| expected | rows |", "|---|---:|"]
    out += [f"| {g} | {n} |" for g, n in sorted(counts.items(), key=lambda x: (kind(x[0]), x[0].lower()))]
    return "\n".join(out)


def tables() -> str:
    bank = rows(EVAL / "bank_paraphrases.csv")
    parts = [
        split_table("eval/off_domain.csv by domain", rows(EVAL / "off_domain.csv"), lambda r: r["domain"]),
        split_table("eval/small_talk.csv by act", rows(EVAL / "small_talk.csv"), lambda r: r["act"]),
        split_table("eval/bank_paraphrases.csv by kind of expected answer", bank, lambda r: kind(r["expected"])),
        split_table("eval/bank_paraphrases.csv, kb rows by page", [r for r in bank if kind(r["expected"]) == "kb"],
                    lambda r: r["expected"]),
        split_table("eval/bank_unanswerable.csv", rows(EVAL / "bank_unanswerable.csv"), lambda r: "handoff"),
        count_table("conversation/small_talk_train.csv by act", rows(CONV / "small_talk_train.csv"), "act"),
        count_table("conversation/off_domain_train.csv by domain", rows(CONV / "off_domain_train.csv"), "domain"),
        bank_train_table(rows(CONV / "bank_train.csv")),
    ]
    n_intents = len({r["expected"] for r in bank if kind(r["expected"]) == "intent"})
    parts.append(f"bank_paraphrases.csv covers {n_intents} distinct BANKING77 intents.")
    return "\n\n".join(parts)


def check(near: bool = False) -> list[str]:
    problems: list[str] = []
    intents = set(json.loads((DATA / "categories.json").read_text(encoding="utf-8")))
    pages = {p.name for p in KB.glob("*.md")}
    files = {
        "eval/off_domain.csv": ("domain", True), "eval/small_talk.csv": ("act", True),
        "eval/bank_paraphrases.csv": ("expected", True), "eval/bank_unanswerable.csv": (None, True),
        "conversation/small_talk_train.csv": ("act", False), "conversation/off_domain_train.csv": ("domain", False),
        "conversation/bank_train.csv": ("expected", False),
    }
    seen: dict[str, str] = {}
    handoff = {norm(r["text"]): r["split"] for r in rows(EVAL / "bank_paraphrases.csv") if r["expected"] == "handoff"}
    for name, (col, has_split) in files.items():
        for r in rows(DATA / name):
            key = norm(r["text"])
            if not key:
                problems.append(f"{name}: empty text {r['text']!r}")
            if has_split and r.get("split") not in SPLITS:
                problems.append(f"{name}: bad split {r.get('split')!r}")
            if col == "expected":
                e = r["expected"]
                if kind(e) == "kb" and e[3:] not in pages:
                    problems.append(f"{name}: no kb page {e}")
                if kind(e) == "intent" and e not in intents:
                    problems.append(f"{name}: unknown intent {e!r}")
            if name == "eval/bank_unanswerable.csv" and key in handoff:
                if handoff[key] != r["split"]:
                    problems.append(f"{name}: {r['text']!r} has another split than in bank_paraphrases.csv")
                continue              # the handoff rows of bank_paraphrases.csv are repeated here on purpose
            if key in seen:
                problems.append(f"duplicate {r['text']!r} in {seen[key]} and {name}")
            seen.setdefault(key, name)
    reference = {norm(r["text"]): f"BANKING77 {p}" for p in ("train.csv", "test.csv") for r in rows(DATA / p)}
    bundled = {norm(r["question"]): "kb_questions.csv" for r in rows(DATA / "kb_questions.csv")}
    bundled.update((norm(line), "out_of_scope.txt") for line in
                   (DATA / "out_of_scope.txt").read_text(encoding="utf-8").splitlines()
                   if line.strip() and not line.startswith("#"))
    for key, name in seen.items():
        if key in reference or key in bundled:
            problems.append(f"{name}: {key!r} is a {reference.get(key) or bundled[key]} sentence")
    if near:
        train_names = {n for n, (_, has_split) in files.items() if not has_split}
        eval_sets = [(set(k.split()), k) for k, n in seen.items() if n not in train_names]
        for key, name in seen.items():
            a = set(key.split())
            if name == "conversation/bank_train.csv" and len(a) >= 3:
                problems += [f"{name}: {key!r} nearly copies eval row {k!r}"
                             for b, k in eval_sets if len(a & b) / len(a | b) >= 0.8]
        ref_sets = [(set(k.split()), k) for k in reference if len(k.split()) >= 4]
        for key, name in seen.items():
            a = set(key.split())
            if len(a) >= 4:
                problems += [f"{name}: {key!r} nearly copies BANKING77 {k!r}"
                             for b, k in ref_sets if len(a & b) / len(a | b) >= 0.8]
    return problems


def main(argv: list[str]) -> int:
    print(tables())
    if "--check" in argv or "--near" in argv:
        problems = check(near="--near" in argv)
        ok = "\ncheck: ok (labels, kb pages, splits, duplicates, overlap with BANKING77 and the bundled question files)"
        print("\n".join(problems) if problems else ok)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
