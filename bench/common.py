"""Shared bits of the benchmarks: where the data sets are, machine description, result files."""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TUNEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
BANKING = SHARED / "banking77"
TWITTER = SHARED / "twitter_financial_news_sentiment"
PHRASEBANK = SHARED / "financial_phrasebank"


def machine() -> dict:
    import platform

    import torch

    from tuneforge.runinfo import cpu_description

    return {"cpu": cpu_description(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"saved {path}", file=sys.stderr)
    return path


def phrasebank_split(workdir: Path, seed: int = 42) -> tuple[Path, Path]:
    """Financial PhraseBank all-agree as train/test CSVs (seeded, stratified 80/20).

    The data may not be redistributed: the CSVs are written to a scratch folder only.
    """
    rows = []
    with open(PHRASEBANK / "Sentences_AllAgree.txt", encoding="latin-1") as f:
        for line in f:
            text, _, label = line.rstrip("\n").rpartition("@")
            if text:
                rows.append((text.strip(), label.strip()))
    rng = random.Random(seed)
    by_label: dict[str, list] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    train, test = [], []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        cut = round(len(group) * 0.8)
        train += group[:cut]
        test += group[cut:]
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in (("train", train), ("test", test)):
        path = workdir / f"phrasebank_{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(part)
        paths.append(path)
    return paths[0], paths[1]
