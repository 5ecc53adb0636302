"""The conversation layer's router: is a message small talk, off-topic, or a bank question?

Every message is embedded once with the bot's retrieval encoder (the same vector the knowledge
search uses) and compared with three labelled reference sets:

* **bank**: the intent model's own training questions (BANKING77 train) and the knowledge-base
  passages -- no out-of-scope examples needed: a message that resembles no bank question is
  open-world by construction (nearest-neighbour similarity, the open-set score);
* **small talk**: greetings, thanks, goodbyes, "are you a bot", "let me talk to a person", ...
  (``data/conversation/small_talk_train.csv``, one act per row);
* **off-topic**: everyday requests of twenty-three non-bank domains (``off_domain_train.csv``),
  an explicit out-of-domain class on top of the open-set score.

A group's score is the mean cosine of its three nearest references.  The message goes to a
non-bank group only when that group beats the bank score by ``margin``; a would-be hand-off
whose bank score is under ``ood`` is declined instead of ticketed (it resembles nothing a
customer of this bank asks).  Both thresholds are calibrated on the calibration halves of the
bundled sets (``calibrate_router``); reports use the evaluation halves only.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tuneforge.errors import ConfigError, UsageError
from tuneforge.storage import replace_dir, staging_dir, write_json

from .datasets import BANK_PHRASINGS

DATA = Path(__file__).parent / "data"
SMALL_TALK_TRAIN = DATA / "conversation" / "small_talk_train.csv"
OFF_DOMAIN_TRAIN = DATA / "conversation" / "off_domain_train.csv"
BANK_TRAIN = BANK_PHRASINGS
RESPONSES = DATA / "conversation" / "responses.yaml"
EVAL = DATA / "eval"
BANK, PASSAGES, OFF_TOPIC = "bank", "kb", "off_topic"
IN_DOMAIN = (BANK, PASSAGES)
ACTS = ("greeting", "thanks", "goodbye", "bot_identity", "human_request", "help", "yes", "no",
        "how_are_you", "chitchat", "frustration", "meta")
TOP = 3          # neighbours averaged per group
Embedder = Callable[[list[str]], np.ndarray]


@dataclass
class RouterThresholds:
    """``margin``: how much a non-bank group must beat the bank score; ``ood``: bank score under which
    a hand-off is declined.  ``details``: what calibration measured."""

    margin: float = 0.05
    ood: float = 0.45
    kb_margin: float = 0.1        # a bank question closer to a passage than to any training question by this: retrieval
    min_score: float = 0.0        # a non-bank group must also reach this similarity (nonsense resembles nothing)
    details: dict | None = None

    def __post_init__(self):
        if not -1 <= self.margin <= 1 or not -1 <= self.ood <= 1:
            raise ConfigError(f"router thresholds out of range: margin {self.margin}, ood {self.ood}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Route:
    group: str           # bank | off_topic | one of ACTS
    score: float         # the chosen group's score
    bank: float          # the bank score (open-set similarity): max of questions and passages
    margin: float        # best non-bank score minus bank score
    questions: float = -1.0   # similarity to the intent model's training questions
    passages: float = -1.0    # similarity to the knowledge-base passages

    @property
    def is_bank(self) -> bool:
        return self.group == BANK

    @property
    def prefers_passages(self) -> float:
        return self.passages - self.questions


_BLAS = None


def one_blas_thread():
    """A context in which numpy's BLAS uses one thread (threadpoolctl; created once)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def read_labelled(path: Path, column: str) -> list[tuple[str, str]]:
    """(text, label) rows of a bundled CSV; a bad row names file and line."""
    from tuneforge.errors import DataError

    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            text, label = (row.get("text") or "").strip(), (row.get(column) or "").strip()
            if not text or not label:
                raise DataError(f"needs text and {column}", path=path, line=line)
            rows.append((text, label))
    return rows


def eval_rows(name: str, column: str | None, half: str | None) -> list[tuple[str, str]]:
    """An evaluation set's (text, label) rows of one half (``calibration`` / ``evaluation``)."""
    rows = []
    with open(EVAL / f"{name}.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if half is None or row["split"] == half:
                rows.append((row["text"], row[column] if column else ""))
    return rows


class Router:
    """Reference vectors with their groups; a text's score per group is the mean cosine of its nearest few."""

    def __init__(self, vectors: np.ndarray, groups: list[str], thresholds: RouterThresholds | None = None):
        if len(vectors) != len(groups):
            raise ValueError("one group per reference vector")
        self.names = sorted(set(groups))
        # references sorted by group, so each group is one contiguous block of columns: one matrix
        # product, then the top few of each block (a view, no copy) -- exact, and at batch 1 cheaper
        # than FAISS's thread-pool start-up
        code = {name: i for i, name in enumerate(self.names)}
        codes = np.array([code[g] for g in groups], dtype=np.int64)
        order = np.argsort(codes, kind="stable")
        self.vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[order])
        self.groups = [groups[i] for i in order]
        counts = np.bincount(codes, minlength=len(self.names))
        self._blocks = [(int(e - n), int(e)) for e, n in zip(np.cumsum(counts), counts)]
        self.thresholds = thresholds or RouterThresholds()

    @classmethod
    def build(cls, embed: Embedder, bank_texts: list[str], *, passages: list[str] = (), small_talk=None,
              off_domain=None) -> "Router":
        small_talk = read_labelled(SMALL_TALK_TRAIN, "act") if small_talk is None else small_talk
        off_domain = read_labelled(OFF_DOMAIN_TRAIN, "domain") if off_domain is None else off_domain
        texts = list(bank_texts) + list(passages) + [t for t, _ in small_talk] + [t for t, _ in off_domain]
        groups = [BANK] * len(bank_texts) + [PASSAGES] * len(passages) + [a for _, a in small_talk] \
            + [OFF_TOPIC] * len(off_domain)
        unknown = {a for _, a in small_talk} - set(ACTS)
        if unknown:
            raise ConfigError(f"small-talk acts {sorted(unknown)} are not known", hint=f"use {', '.join(ACTS)}")
        vectors = np.concatenate([embed(texts[i:i + 256]) for i in range(0, len(texts), 256)])
        return cls(vectors, groups)

    def group_scores(self, vectors: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """``[N, G]`` group scores (mean cosine of the ``TOP`` nearest references of each group)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        out = np.empty((len(vectors), len(self.names)), dtype=np.float32)
        for start in range(0, len(vectors), 256):
            with one_blas_thread():    # a few MFLOP: BLAS's spinning helper thread would take the
                sims = vectors[start:start + 256] @ self.vectors.T      # core the intent model runs on
            for g, (lo, hi) in enumerate(self._blocks):
                k = min(TOP, hi - lo)
                top = np.partition(sims[:, lo:hi], hi - lo - k, axis=1)[:, -k:]
                out[start:start + 256, g] = top.mean(axis=1)
        return out, self.names

    def routes(self, vectors: np.ndarray, thresholds: RouterThresholds | None = None) -> list[Route]:
        th = thresholds or self.thresholds
        scores, names = self.group_scores(vectors)
        cols = [names.index(g) for g in IN_DOMAIN if g in names]
        q_col = names.index(BANK)
        kb_col = names.index(PASSAGES) if PASSAGES in names else None
        out = []
        for row in scores:
            bank = float(row[cols].max())
            other = row.copy()
            other[cols] = -np.inf
            best = int(np.argmax(other))
            margin = float(other[best]) - bank
            group = names[best] if margin > th.margin and other[best] >= th.min_score else BANK
            out.append(Route(group, bank if group == BANK else float(row[best]), bank, margin,
                             questions=float(row[q_col]), passages=float(row[kb_col]) if kb_col is not None else -1.0))
        return out

    # -- a folder beside the bot ----------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        tmp = staging_dir(folder)
        np.save(tmp / "vectors.npy", self.vectors)
        write_json(tmp / "router.json", {"groups": self.groups, "thresholds": self.thresholds.to_dict()})
        replace_dir(tmp, folder)

    @classmethod
    def load(cls, folder: str | Path) -> "Router":
        folder = Path(folder)
        if not (folder / "router.json").is_file():
            raise UsageError(f"{folder.parent} has no conversation router",
                             hint="rebuild the bot: tuneforge support-bot build --intent-bundle ...")
        meta = json.loads((folder / "router.json").read_text())
        return cls(np.load(folder / "vectors.npy"), meta["groups"], RouterThresholds(**meta["thresholds"]))


def calibrate_router(router: Router, embed: Embedder, *, in_domain: list[str], small_talk: list[str],
                     off_domain: list[str], unanswerable: list[str], max_diverted: float = 0.01,
                     intent_questions: list[str] = (), kb_questions: list[str] = ()) -> RouterThresholds:
    """Thresholds from calibration data only.

    ``margin``: the smallest margin that diverts at most ``max_diverted`` of in-domain questions
    away from the bank (those would lose their answer); ``ood``: the bank score that keeps at
    least 98 % of in-domain and unanswerable-bank questions as bank while declining as many
    off-domain requests as possible.
    """
    def margins(texts):
        return np.array([r.margin for r in router.routes(embed(texts), RouterThresholds(margin=1.0))])

    def banks(texts):
        return np.array([r.bank for r in router.routes(embed(texts), RouterThresholds(margin=1.0))])

    m_in = margins(in_domain)
    margin = float(np.quantile(m_in, 1 - max_diverted)) if len(m_in) else 0.05
    th = RouterThresholds(margin=round(margin, 4))
    talk = list(small_talk) + list(off_domain)
    if talk:   # the similarity 98 % of real small talk / off-topic requests reach to their nearest group
        scores, names = router.group_scores(embed(talk))
        scores[:, [names.index(g) for g in IN_DOMAIN if g in names]] = -np.inf
        th.min_score = round(float(np.quantile(scores.max(axis=1), 0.02)), 4)
    b_bank = banks(list(in_domain) + list(unanswerable))
    ood = float(np.quantile(b_bank, 0.02)) if len(b_bank) else 0.45
    th.ood = round(ood, 4)
    if intent_questions and kb_questions:
        # the passage-vs-question preference that moves at most 1 % of intent questions off their templates
        pref = np.array([r.prefers_passages for r in router.routes(embed(list(intent_questions)), th)])
        th.kb_margin = round(float(np.quantile(pref, 0.99)), 4)
        kb_pref = np.array([r.prefers_passages for r in router.routes(embed(list(kb_questions)), th)])
        kb_share = float(np.mean(kb_pref > th.kb_margin))
    else:
        kb_share = None
    diverted = lambda texts: float(np.mean([not r.is_bank for r in router.routes(embed(texts), th)]))  # noqa: E731
    th.details = {"in_domain_diverted": round(diverted(in_domain), 4) if in_domain else None,
                  "small_talk_caught": round(diverted(small_talk), 4) if small_talk else None,
                  "off_domain_caught": round(diverted(off_domain), 4) if off_domain else None,
                  "off_domain_under_ood": round(float(np.mean(banks(off_domain) < th.ood)), 4) if off_domain else None,
                  "kb_questions_to_passages": None if kb_share is None else round(kb_share, 4),
                  "calibrated_on": {"in_domain": len(in_domain), "small_talk": len(small_talk),
                                    "off_domain": len(off_domain), "unanswerable": len(unanswerable)}}
    return th
