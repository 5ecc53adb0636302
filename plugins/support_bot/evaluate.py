"""Evaluate a built bot on the evaluation half of the bundled question sets.

Reports intent accuracy, out-of-scope precision/recall at the calibrated intent threshold
(out-of-scope = "not answered from a template"), template precision, retrieval recall@1/@5
on paraphrased knowledge-base questions, and -- running the whole cascade turn by turn --
the share of answers by kind per question set, the per-turn latency, and hand-off
precision/recall: of the turns that end with "I don't know" + a ticket, the share that were
out-of-scope questions (in the natural mix of the evaluation halves, no reweighting), and of
the out-of-scope questions, the share handed off.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .bot import Bot
from .cascade import Memory
from .datasets import INTENT_TEST, KB_QUESTIONS, OUT_OF_SCOPE, kb_questions, labelled_questions, out_of_scope


@dataclass
class EvalReport:
    intent_accuracy: float
    n_in_scope: int
    n_out_of_scope: int
    oos_precision: float
    oos_recall: float
    template_precision: float      # of in-scope + out-of-scope questions answered by a template
    template_coverage: float       # share of in-scope questions answered by a template
    retrieval_recall_at_1: float
    retrieval_recall_at_5: float
    n_kb_questions: int
    handoff_precision: float = 0.0  # of turns handed off (whole cascade), the out-of-scope share
    handoff_recall: float = 0.0     # of out-of-scope questions, the share handed off
    kinds: dict = field(default_factory=dict)        # set -> {kind: share}
    latency_ms: dict = field(default_factory=dict)   # p50 / p95 / mean per turn
    thresholds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def evaluate_bot(bot: Bot, *, half: str | None = "evaluation", questions_file=INTENT_TEST,
                 oos_file=OUT_OF_SCOPE, kb_file=KB_QUESTIONS, cascade_sample: int | None = None,
                 seed: int = 0) -> EvalReport:
    questions = labelled_questions(questions_file, half)
    oos = out_of_scope(oos_file, half)
    kbq = kb_questions(kb_file, None)          # recall@k needs no threshold: all paraphrases
    t = bot.thresholds.intent
    probs = bot.score_intents([q for q, _ in questions] + oos)
    top = [max(p.items(), key=lambda kv: kv[1]) for p in probs]
    gold = [y for _, y in questions] + [None] * len(oos)
    n_in = len(questions)
    correct = [lab == y for (lab, _), y in zip(top, gold)]
    flagged = [p < t for _, p in top]          # not answered from a template
    tp = sum(f for f, y in zip(flagged, gold) if y is None)
    answered = [i for i, f in enumerate(flagged) if not f]
    hits = bot.retrieve([q for q, _ in kbq], 5)
    sources = [[h.chunk.source for h in row] for row in hits]
    report = EvalReport(
        intent_accuracy=_ratio(sum(correct[:n_in]), n_in), n_in_scope=n_in, n_out_of_scope=len(oos),
        oos_precision=_ratio(tp, sum(flagged)), oos_recall=_ratio(tp, len(oos)),
        template_precision=_ratio(sum(correct[i] for i in answered), len(answered)),
        template_coverage=_ratio(sum(not f for f in flagged[:n_in]), n_in),
        retrieval_recall_at_1=_ratio(sum(s[:1] == [g] for s, (_, g) in zip(sources, kbq)), len(kbq)),
        retrieval_recall_at_5=_ratio(sum(g in s[:5] for s, (_, g) in zip(sources, kbq)), len(kbq)),
        n_kb_questions=len(kbq), thresholds=bot.thresholds.to_dict())
    rng = random.Random(seed)
    in_scope = [q for q, _ in questions]
    sets = {"in_scope": rng.sample(in_scope, min(cascade_sample, n_in)) if cascade_sample else in_scope,
            "out_of_scope": oos, "kb_questions": [q for q, _ in kb_questions(kb_file, half)]}
    latencies = []
    handoffs: dict[str, int] = {}
    for name, texts in sets.items():
        counts: dict[str, int] = {}
        for text in texts:
            start = time.perf_counter()
            kind = bot.cascade.answer(text, Memory()).kind
            latencies.append((time.perf_counter() - start) * 1000)
            counts[kind] = counts.get(kind, 0) + 1
        report.kinds[name] = {k: round(v / max(len(texts), 1), 4) for k, v in sorted(counts.items())}
        report.kinds[name]["n"] = len(texts)
        handoffs[name] = counts.get("handoff", 0)
    # in-scope sets count at their real size even when only a sample ran the cascade
    scale = n_in / max(len(sets["in_scope"]), 1)
    false_handoffs = handoffs["in_scope"] * scale + handoffs["kb_questions"]
    report.handoff_precision = _ratio(handoffs["out_of_scope"], handoffs["out_of_scope"] + false_handoffs)
    report.handoff_recall = _ratio(handoffs["out_of_scope"], len(oos))
    if latencies:
        lat = np.asarray(latencies)
        report.latency_ms = {"p50": round(float(np.percentile(lat, 50)), 2),
                             "p95": round(float(np.percentile(lat, 95)), 2),
                             "mean": round(float(lat.mean()), 2), "turns": len(lat)}
    return report


# -- the whole conversation, per evaluation set (issue: real customer traffic) ------------------
ANSWERED = ("template", "retrieval")


def conversation_sets(half: str = "evaluation") -> dict[str, list[tuple[str, str]]]:
    """(text, expected) per set: an intent, ``kb:<page>``, ``handoff``, ``decline`` or a small-talk act."""
    from .router import eval_rows

    paraphrases = eval_rows("bank_paraphrases", "expected", half)
    # a paraphrase written to need a person (expected "handoff") is an in-domain unanswerable
    # question: it is scored with those, so "paraphrases" holds only questions the bot can answer
    return {
        "in_scope": labelled_questions(INTENT_TEST, half),
        "paraphrases": [(t, e) for t, e in paraphrases if e != "handoff"],
        "unanswerable": [(t, "handoff") for t, _ in eval_rows("bank_unanswerable", None, half)]
        + [(t, e) for t, e in paraphrases if e == "handoff"],
        "kb_questions": [(q, "kb:" + s) for q, s in kb_questions(KB_QUESTIONS, half)],
        "off_domain": [(t, "decline") for t, _ in eval_rows("off_domain", "domain", half)],
        "small_talk": eval_rows("small_talk", "act", half),
    }


def _right(answer, expected: str) -> bool | None:
    """Was a template/retrieval answer right?  None when the answer gave no content."""
    if answer.kind == "template":
        return answer.intent == expected
    if answer.kind == "retrieval":
        return expected.startswith("kb:") and any(s.get("source") == expected[3:] for s in answer.sources)
    return None


def evaluate_conversation(conversation, *, half: str = "evaluation", plot: str | None = None) -> dict:
    """Answer kinds, confident-wrong rate, tickets per 1,000 turns per set; an out-of-scope recall
    vs in-scope coverage curve (PNG) with its AUROC; the intents most often answered wrongly."""
    from .cascade import Memory

    report: dict = {"half": half, "sets": {}}
    wrong_intents: dict[str, int] = {}
    margins: dict[str, list[float]] = {"in": [], "out": []}
    router = getattr(conversation.bot, "router", None)
    for name, rows in conversation_sets(half).items():
        kinds: dict[str, int] = {}
        confident_wrong = right = answered = 0
        for text, expected in rows:
            answer = conversation.respond(text, Memory())
            kinds[answer.kind] = kinds.get(answer.kind, 0) + 1
            ok = _right(answer, expected)
            if ok is not None:
                answered += 1
                right += bool(ok)
                confident_wrong += not ok
                if not ok and name == "in_scope":
                    wrong_intents[expected] = wrong_intents.get(expected, 0) + 1
            if router is not None and name in ("in_scope", "paraphrases", "off_domain"):
                route = router.routes(conversation.bot.embed([text]))[0]
                margins["out" if name == "off_domain" else "in"].append(route.margin)
        n = max(len(rows), 1)
        entry = {"n": len(rows), "kinds": {k: round(v / n, 4) for k, v in sorted(kinds.items())},
                 "answered": round(answered / n, 4), "confident_wrong": round(confident_wrong / n, 4),
                 "tickets_per_1000": round(1000 * kinds.get("handoff", 0) / n, 1)}
        if answered:
            entry["answer_precision"] = round(right / answered, 4)
        if name == "small_talk":
            handled = sum(1 for t, act in rows if act)  # every row is small talk
            entry["handled_by_conversation_layer"] = round(
                (kinds.get("smalltalk", 0) + kinds.get("decline", 0)
                 + min(kinds.get("handoff", 0), sum(a == "human_request" for _, a in rows))) / max(handled, 1), 4)
            entry["unasked_tickets"] = max(0, kinds.get("handoff", 0) - sum(a == "human_request" for _, a in rows))
        report["sets"][name] = entry
    report["most_wrong_intents"] = sorted(wrong_intents.items(), key=lambda kv: -kv[1])[:10]
    if margins["in"] and margins["out"]:
        report["oos_auroc"] = round(_auroc(np.array(margins["out"]), np.array(margins["in"])), 4)
        if plot:
            report["curve_png"] = _plot_curve(np.array(margins["out"]), np.array(margins["in"]), plot,
                                              router.thresholds.margin)
    return report


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of an out-of-scope message > score of an in-scope one), ties half (Mann-Whitney)."""
    scores = np.concatenate([positive, negative])
    ranks = np.argsort(np.argsort(scores, kind="mergesort"), kind="mergesort") + 1.0
    for value in np.unique(scores):          # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    r_pos = ranks[:len(positive)].sum()
    return float((r_pos - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def _plot_curve(out: np.ndarray, inn: np.ndarray, path: str, chosen: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cuts = np.unique(np.concatenate([out, inn, [chosen]]))
    recall = [(out > c).mean() for c in cuts]
    coverage = [(inn <= c).mean() for c in cuts]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(coverage, recall, lw=1.5)
    ax.scatter([(inn <= chosen).mean()], [(out > chosen).mean()], color="red", zorder=3, label="calibrated margin")
    ax.set_xlabel("in-scope coverage (bank questions kept)")
    ax.set_ylabel("out-of-scope recall (off-domain declined)")
    ax.set_title("Support bot: open-world detection")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
