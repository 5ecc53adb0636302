"""Build a bot folder: export the retrieval encoder, index the knowledge base, calibrate the thresholds.

Training and export are core's (``tuneforge.train.encoder_run``, ``tuneforge.export.export_run``);
this module only says what to build.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from tuneforge.errors import UsageError

from .bot import Bot, BotConfig, bundle_identity, next_generation, portable, resolve
from .calibrate import Calibration, Thresholds, threshold_for_precision
from .cascade import KB_INTENT
from .datasets import (
    ANSWERS,
    INTENT_TEST,
    INTENT_TRAIN,
    KB_DIR,
    KB_QUESTIONS,
    OUT_OF_SCOPE,
    kb_questions,
    labelled_questions,
)
from .datasets import out_of_scope as load_oos
from .knowledge import load_documents
from .retrieval import build_index

ENCODER_NAME = "support-encoder"
OOS_SHARE = 0.2   # assumed share of out-of-scope messages in real traffic (a stated assumption)


def _weights(n_in: int, n_oos: int, oos_share: float) -> list[float]:
    """Weights giving the ``n_oos`` out-of-scope items ``oos_share`` of the total."""
    if not 0 <= oos_share < 1:
        raise UsageError(f"oos_share must be in [0, 1), got {oos_share}")
    w_oos = oos_share / (1 - oos_share) * n_in / n_oos if n_oos and n_in else 1.0
    return [1.0] * n_in + [w_oos] * n_oos


def build_encoder(base_model: str, sample_texts: list[str], *, out_dir: str | Path = "exports",
                  variants: list[str] | None = None, measure: bool = True,
                  progress: Callable[[str], None] | None = None) -> Path:
    """Export ``base_model`` (untrained) as an embedding bundle through core's export path."""
    from tuneforge.export import export_run
    from tuneforge.train import encoder_run

    with tempfile.TemporaryDirectory(prefix="tuneforge-encoder-") as runs:
        run = encoder_run(base_model, sample_texts[:256], output_dir=runs)
        return export_run(run, out_dir=out_dir, name=ENCODER_NAME, variants=variants,
                          measure=measure, progress=progress)


def calibrate(bot: Bot, *, target: float = 0.9, questions: list[tuple[str, str]],
              oos: list[str], kb: list[tuple[str, str]], min_accepted: int = 5,
              oos_share: float = OOS_SHARE) -> Thresholds:
    """Thresholds for ``target`` precision on held-out data (see :mod:`.calibrate`).

    Out-of-scope questions are weighted to be ``oos_share`` of the traffic (the held-out sets
    have far fewer of them than in-scope questions; unweighted, precision would barely notice them).

    intent: correct = the top intent is the labelled one (out-of-scope: never correct);
    clarify: correct = the labelled intent is one of the top two;
    retrieval: correct = the best passage comes from the expected file (out-of-scope: never).
    """
    if not questions or not oos:
        raise UsageError("calibration needs labelled in-scope questions and out-of-scope questions")
    if KB_INTENT in bot.intent_predictor.manifest.labels:
        # the intent model knows help-page questions as one label: its threshold is calibrated on them too
        questions = list(questions) + [(q, KB_INTENT) for q, _ in kb]
    texts = [q for q, _ in questions] + oos
    gold = [y for _, y in questions] + [None] * len(oos)
    probs = bot.score_intents(texts)
    top = [sorted(p.items(), key=lambda kv: -kv[1])[:2] for p in probs]
    p1 = [t[0][1] for t in top]
    weights = _weights(len(questions), len(oos), oos_share)
    intent = threshold_for_precision(p1, [t[0][0] == y for t, y in zip(top, gold)], target,
                                     min_accepted=min_accepted, weights=weights)
    # clarify only matters below the intent threshold: calibrate on those items
    below = [i for i, p in enumerate(p1) if p < intent.threshold]
    clarify = threshold_for_precision([sum(p for _, p in top[i]) for i in below],
                                      [gold[i] in {lab for lab, _ in top[i]} for i in below], target,
                                      min_accepted=min_accepted, weights=[weights[i] for i in below]) \
        if below else None
    r_texts = [q for q, _ in kb] + oos
    r_gold = [s for _, s in kb] + [None] * len(oos)
    hits = bot.retrieve(r_texts, 1)
    retrieval = threshold_for_precision([h[0].score if h else -1.0 for h in hits],
                                        [bool(h) and h[0].chunk.source == s for h, s in zip(hits, r_gold)],
                                        target, min_accepted=min_accepted,
                                        weights=_weights(len(kb), len(oos), oos_share))
    handoff = _calibrate_handoff(bot, questions, kb, oos, top, p1, intent.threshold, retrieval.threshold,
                                 clarify.threshold if clarify else float("inf"), target, min_accepted)
    details = {"intent": intent.to_dict(), "retrieval": retrieval.to_dict(),
               "clarify": clarify.to_dict() if clarify else None,
               "handoff": {**handoff.to_dict(), "threshold": -handoff.threshold if handoff.reached else None},
               "data": {"in_scope": len(questions), "out_of_scope": len(oos), "kb_questions": len(kb),
                        "oos_share": oos_share}}
    return Thresholds(intent=intent.threshold, retrieval=retrieval.threshold,
                      clarify=clarify.threshold if clarify else float("inf"),
                      handoff=-handoff.threshold if handoff.reached else float("inf"),
                      target_precision=target, details=details)


def _calibrate_handoff(bot: Bot, questions, kb, oos, top, p1, t_intent, t_retrieval, t_clarify,
                       target, min_accepted) -> Calibration:
    """Among questions the cascade would not answer, the similarity below which a hand-off is
    right (out-of-scope) with ``target`` precision -- in the natural mix, unweighted: this is
    the share of tickets that deserve a human.  Scores are negated similarities (lower = more
    out-of-scope), so the returned threshold is ``-similarity``."""
    kb_texts = [q for q, _ in kb]
    kb_top = [sorted(p.items(), key=lambda kv: -kv[1])[:2] for p in bot.score_intents(kb_texts)] if kb else []
    texts = [q for q, _ in questions] + oos + kb_texts
    tops = top + kb_top
    firsts = p1 + [t[0][1] for t in kb_top]
    is_oos = [False] * len(questions) + [True] * len(oos) + [False] * len(kb)
    best = [h[0].score if h else -1.0 for h in bot.retrieve(texts, 1)]
    ratio = Thresholds(intent=t_intent, retrieval=t_retrieval).clarify_ratio
    unanswered = [i for i in range(len(texts)) if firsts[i] < t_intent and best[i] < t_retrieval
                  and not (len(tops[i]) > 1 and tops[i][0][1] + tops[i][1][1] >= t_clarify
                           and tops[i][1][1] >= ratio * tops[i][0][1])]
    if not unanswered:
        return Calibration(float("inf"), target, 0.0, 0.0, 0, 0, False)
    return threshold_for_precision([-best[i] for i in unanswered], [is_oos[i] for i in unanswered], target,
                                   min_accepted=min_accepted)


def calibrate_bot(bot_dir: str | Path, *, target: float = 0.9, questions_file: str | Path = INTENT_TEST,
                  oos_file: str | Path = OUT_OF_SCOPE, kb_questions_file: str | Path = KB_QUESTIONS,
                  half: str | None = "calibration", oos_share: float = OOS_SHARE) -> Thresholds:
    """Calibrate a built bot on the calibration half of the question sets; saves thresholds.json."""
    placeholder = Thresholds(intent=2.0, retrieval=2.0)
    bot = Bot.load(bot_dir, thresholds=placeholder)
    questions = labelled_questions(questions_file, half)
    oos, kb = load_oos(oos_file, half), kb_questions(kb_questions_file, half)
    if bot.router is not None and half == "calibration":
        # the cascade sees what the conversation layer lets through: calibrate on that traffic, in its
        # natural mix -- bank paraphrases as in-scope, and whatever off-domain or small talk reaches the
        # cascade, plus in-domain questions only a person can answer, as never-correct
        from .router import eval_rows

        paraphrases = eval_rows("bank_paraphrases", "expected", half)
        questions = questions + [(t, e) for t, e in paraphrases if not e.startswith("kb:") and e != "handoff"]
        kb = kb + [(t, e[3:]) for t, e in paraphrases if e.startswith("kb:")]
        others = oos + [t for t, _ in eval_rows("off_domain", "domain", half)] + \
            [t for t, _ in eval_rows("small_talk", "act", half)]
        routes = bot.router.routes(bot.embed(others)) if others else []
        oos = [t for t, r in zip(others, routes) if r.is_bank] + \
            [t for t, _ in eval_rows("bank_unanswerable", None, half)]
        oos_share = len(oos) / (len(oos) + len(questions) + len(kb))
    th = calibrate(bot, target=target, questions=questions, oos=oos, kb=kb, oos_share=oos_share)
    th.calibrated_for = bundle_identity(bot.intent_predictor)
    th.save(Path(bot_dir) / "thresholds.json")
    return th


def build_router(bot_dir: str | Path, encoder, *, bank_file=INTENT_TRAIN, half: str | None = "calibration"):
    """The conversation router over the encoder: references, then thresholds from calibration halves."""
    from tuneforge.runtime.postprocess import l2_normalize

    from .datasets import labelled_questions
    from .knowledge import load_documents
    from .retrieval import chunk_input
    from .router import BANK_TRAIN, Router, calibrate_router, eval_rows, read_labelled

    def embed(texts):
        return l2_normalize(np.asarray(encoder.predict_raw(list(texts), batch_size=64), dtype=np.float32))

    config = BotConfig.load(bot_dir)
    bank = [q for q, _ in labelled_questions(bank_file)]
    if BANK_TRAIN.is_file():                 # bank questions in other phrasings, written for tuneforge
        bank += [t for t, _ in read_labelled(BANK_TRAIN, "expected")]
    passages = [chunk_input(c) for d in load_documents(resolve(bot_dir, config.kb_dir)) for c in d.chunks]
    router = Router.build(embed, bank, passages=passages)
    part = half or "calibration"
    intent_questions = [q for q, _ in labelled_questions(INTENT_TEST, part)]
    paraphrases = eval_rows("bank_paraphrases", "expected", part)
    router.thresholds = calibrate_router(
        router, embed, in_domain=intent_questions + [t for t, _ in paraphrases],
        small_talk=[t for t, _ in eval_rows("small_talk", "act", part)],
        off_domain=[t for t, _ in eval_rows("off_domain", "domain", part)],
        unanswerable=[t for t, _ in eval_rows("bank_unanswerable", None, part)],
        intent_questions=intent_questions + [t for t, e in paraphrases if not e.startswith("kb:") and e != "handoff"],
        kb_questions=[q for q, _ in kb_questions(KB_QUESTIONS, part)]
        + [t for t, e in paraphrases if e.startswith("kb:")])
    router.save(Path(bot_dir) / "router")
    return router


def build_bot(bot_dir: str | Path, intent_bundle: str | Path, *, encoder_bundle: str | Path | None = None,
              base_model: str = "all-MiniLM-L6-v2", kb_dir: str | Path = KB_DIR,
              answers: str | Path = ANSWERS, target: float = 0.9, exports: str | Path = "exports",
              encoder_variants: list[str] | None = None, measure: bool = True,
              calibration: dict | None = None, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Create or refresh ``bot_dir``; returns what was done (index stats, thresholds)."""
    from tuneforge.export.bundle import resolve_bundle_dir

    bot_dir = Path(bot_dir)
    intent_bundle = resolve_bundle_dir(intent_bundle)
    if encoder_bundle is None:
        progress(f"exporting {base_model} as the retrieval encoder")
        samples = [c.text for d in load_documents(kb_dir) for c in d.chunks]
        encoder_bundle = build_encoder(base_model, samples, out_dir=exports, variants=encoder_variants,
                                       measure=measure)
    encoder_bundle = resolve_bundle_dir(encoder_bundle)
    from tuneforge.runtime import Predictor

    encoder = Predictor.load(encoder_bundle)
    calibration = dict(calibration or {})
    bank_file = calibration.pop("bank_questions_file", INTENT_TRAIN)
    with_router = calibration.pop("router", True)
    # everything is built in a new generation and switched to in one step at the end: an
    # interrupted rebuild leaves the bot on its previous bundle, thresholds, index and router
    with next_generation(bot_dir, seed=("index",)) as gen:
        config = BotConfig(intent_bundle=portable(intent_bundle, gen), encoder_bundle=portable(encoder_bundle, gen),
                           kb_dir=portable(kb_dir, gen), answers=portable(answers, gen))
        config.save(gen)
        progress("indexing the knowledge base")
        _, stats = build_index(resolve(gen, config.kb_dir), gen / "index",
                               lambda t: np.asarray(encoder.predict_raw(t), dtype=np.float32),
                               encoder_id=encoder.manifest.model_id, hnsw_above=config.hnsw_above)
        if with_router:
            progress("building the conversation router (small talk, off-topic, bank)")
            build_router(gen, encoder, bank_file=bank_file, half=calibration.get("half", "calibration"))
        progress("calibrating thresholds")
        th = calibrate_bot(gen, target=target, **calibration)
    return {"bot_dir": str(bot_dir), "config": config.to_dict(), "index": stats.to_dict(),
            "thresholds": th.to_dict()}
