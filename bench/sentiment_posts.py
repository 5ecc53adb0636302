"""Finance sentiment bundles on text they were not trained on, graded like the issue's unseen sets
(issue 16): cosine of the served score p(pos) - p(neg) to a continuous gold score, and sign
agreement where |gold| >= 0.1.

    python bench/sentiment_posts.py --bundle exports/finance-sentiment/v1 --variant int8
    python bench/sentiment_posts.py --bundle A --bundle B --data plugins/finance/data/eval/investor-posts.csv
    python bench/sentiment_posts.py --bundle A --data plugins/finance/data/eval/company-headlines.csv
    python bench/sentiment_posts.py --bundle A --data plugins/finance/data/valid.csv   # labels only: also accuracy
    python bench/sentiment_posts.py --bundle A --data pball            # Financial PhraseBank all-agree (or pb50)
    python bench/sentiment_posts.py --bundle A --data plugins/finance/data/valid.csv --stream-form tagged

Default set: ``plugins/finance/data/eval/investor-posts.csv`` (300 investor forum posts written for
the project, with the author's stance on the named stock as a score in [-1, 1]; provenance in its
README).  ``data/eval/company-headlines.csv`` is the same for company news (252 graded
headlines).  Both are small authored proxies for measuring only: nothing is trained or tuned on them.
Texts are scored as the monitor would score them (cashtags kept).

``--data pball`` / ``pb50``: Financial PhraseBank (all-agree / 50 %-agree) read from
``../shared/data`` (CC BY-NC-SA: read there, never copied), duplicates dropped as
``sentiment_cross.py`` drops them.  ``--stream-form bare|tagged``: the texts the way the backtest
stream shows them (``bench/finance_backtest_stream.py``: links and cashtags removed, under 20
characters left out; ``tagged`` puts the stream's ``$ENTITY - `` in front), to see how much a feed's
ticker tag moves the model.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import _tf_path  # noqa: E402,F401

from sentiment_cross import polarity_metrics  # noqa: E402

from tuneforge.plugins.finance import LABELS as NAMES  # noqa: E402  (the Twitter set's 0 / 1 / 2)

POSTS = ROOT / "plugins" / "finance" / "data" / "eval" / "investor-posts.csv"
SCORE = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


def read_scored(path: Path) -> tuple[list[str], np.ndarray, list[str] | None]:
    """Texts, gold scores and labels: a ``score`` column, or only a ``label`` one (names or the
    Twitter set's 0 / 1 / 2), whose score is then -1 / 0 / +1."""
    texts, gold, labels = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                texts.append(row["text"])
                label = NAMES.get(row.get("label") or "", row.get("label"))
                labels.append(label)
                gold.append(float(row["score"]) if row.get("score") not in (None, "") else SCORE[label])
            except (KeyError, TypeError, ValueError):
                raise SystemExit(f"{path}:{line}: expected a text column and a score (a number in [-1, 1]) "
                                 f"or a label (negative / neutral / positive) column") from None
    return texts, np.asarray(gold), (labels if all(labels) else None)


PHRASEBANK = {"pball": "Sentences_AllAgree.txt", "pb50": "Sentences_50Agree.txt"}


def read_phrasebank(name: str) -> tuple[list[str], np.ndarray, list[str]]:
    from sentiment_cross import SHARED, _key, phrasebank

    rows = list(dict((_key(t), (t, lab)) for t, lab in phrasebank(SHARED / "financial_phrasebank" / PHRASEBANK[name])).values())
    return [t for t, _ in rows], np.asarray([SCORE[lab] for _, lab in rows]), [lab for _, lab in rows]


def as_stream(texts, gold, labels, *, tagged: bool):
    """The texts as the backtest stream shows them: cleaned, short ones left out, tagged or not."""
    from finance_backtest_stream import ENTITIES, clean_headline

    keep = [(i, c) for i, c in enumerate(clean_headline(t) for t in texts) if len(c) >= 20]
    out = [f"${ENTITIES[k % len(ENTITIES)]} - {c}" if tagged else c for k, (_, c) in enumerate(keep)]
    idx = [i for i, _ in keep]
    return out, gold[idx], (None if labels is None else [labels[i] for i in idx])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", required=True, help="an exported finance-sentiment bundle (repeat)")
    p.add_argument("--variant", default="int8")
    p.add_argument("--data", default=str(POSTS),
                   help="a CSV with text and a score or label column, or pball / pb50 (Financial PhraseBank)")
    p.add_argument("--stream-form", choices=["bare", "tagged"],
                   help="score the texts as the backtest stream shows them, without or with its ticker tag")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the JSON result here")
    args = p.parse_args()
    from tuneforge.runtime import Predictor

    texts, gold, gold_labels = (read_phrasebank(args.data) if args.data in PHRASEBANK
                                else read_scored(Path(args.data)))
    if args.stream_form:
        texts, gold, gold_labels = as_stream(texts, gold, gold_labels, tagged=args.stream_form == "tagged")
    rows = []
    for bundle in args.bundle:
        pred = Predictor.load(bundle, variant=args.variant, threads=args.threads)
        labels = list(pred.manifest.labels)
        probs = pred.probabilities(texts)
        score = probs[:, labels.index("positive")] - probs[:, labels.index("negative")]
        m = polarity_metrics(score, gold, min_abs=0.1)
        polar = np.abs(gold) >= 0.1
        m.update(bundle=str(bundle), variant=args.variant, rows=len(texts), polar_rows=int(polar.sum()),
                 predicted_neutral=round(float((probs.argmax(1) == labels.index("neutral")).mean()), 4),
                 bearish_sign_recall=round(float((score[gold <= -0.1] < 0).mean()), 4),
                 bullish_sign_recall=round(float((score[gold >= 0.1] > 0).mean()), 4))
        if gold_labels is not None:
            top = np.asarray(labels)[probs.argmax(1)]
            y = np.asarray(gold_labels)
            m.update(accuracy=round(float((top == y).mean()), 4),
                     negative_recall=round(float((top[y == "negative"] == "negative").mean()), 4))
        rows.append(m)
    print(f"| bundle | rows (\\|gold\\| ≥ 0.1) | accuracy / negative recall | score cosine | sign agreement "
          f"| bearish / bullish sign recall | top label neutral |\n|---|---|---|---|---|---|---|")
    for m in rows:
        acc = f"{m['accuracy']:.4f} / {m['negative_recall']:.3f}" if "accuracy" in m else "—"
        print(f"| {m['bundle']} ({m['variant']}) | {m['rows']} ({m['polar_rows']}) | {acc} | {m['score_cosine']:.3f} | "
              f"{m['sign_agreement']:.3f} | {m['bearish_sign_recall']:.3f} / {m['bullish_sign_recall']:.3f} | "
              f"{m['predicted_neutral']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.data, "results": rows, "command": " ".join(sys.argv)},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
