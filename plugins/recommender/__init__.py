"""Recommender: text-based and collaborative candidates, a learned ranker, real baselines.

A two-tower text model (user = titles of the last N liked items, item = its text) trained
by the engine with in-batch negatives, exported to ONNX, item vectors in FAISS; EASE and
item-kNN as further candidate sources; a LightGBM lambdarank ranker over their union
fitted on validation (a linear blend for taste queries); leave-last-out evaluation against
popularity, item-kNN, EASE, BPR and ALS, and a cold-start table (new items, new users).
This module is the plugin (entry point ``recommender``) and stays import-light.

==============  ================================================================
``data``        interactions + catalogue (CSV/JSONL, layout detection), thresholds
``movielens``   MovieLens 100k (u.data / u.item) and 1M / 10M (.dat) readers
``split``       leave-last-out per user by timestamp (+ earlier pseudo-validation phases)
``metrics``     HR@K, NDCG@K, MRR; sampled negatives
``baselines``   popularity, item-kNN, EASE, BPR-MF (numpy), ALS (``implicit``, optional)
``twotower``    pairs for the engine, training, export, the runtime encoder, the frozen base
``features`` / ``blend``   ranking features, the learned linear blend
``ranker``      candidates (EASE + two-tower + item-kNN), features, LightGBM lambdarank
``coldstart`` / ``coldstart_eval``   the time cut-off, new items / new users, their table
``evaluate`` / ``build``   validation grids, the evaluation table; the serving folder
``service``     load a folder, recommend / score / explain (no torch)
``routes`` / ``commands``  HTTP and CLI
==============  ================================================================
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tuneforge import hookimpl
from tuneforge.tasks import AppTemplate, TaskSpec

TASK = "recommender-two-tower"
TEMPLATE = Path(__file__).parent / "template"
log = logging.getLogger(__name__)


@hookimpl
def tuneforge_register_tasks(register):
    register(TaskSpec(
        name=TASK,
        kind="embedding",
        description="Two-tower recommender: user history text -> next liked item text (in-batch negatives).",
        columns={"text": "query", "text_pair": "item"},
        train_defaults={"mode": "top-k", "epochs": 1, "max_length": 64, "batch_size": 64},
    ))


@hookimpl
def tuneforge_register_commands(cli):
    from .commands import register

    register(cli)


@hookimpl
def tuneforge_register_templates(register):
    register(AppTemplate(name="recommender", path=str(TEMPLATE),
                         description="Text-based recommender: sample catalogue + interactions, build, recommend."))


@hookimpl
def tuneforge_register_routes(register, task, predictor):
    """``tuneforge serve`` of a two-tower bundle also serves /v1/recommend and /v1/score when a
    recommender folder exists ($TUNEFORGE_RECOMMENDER or recommenders/default)."""
    if task is None or task.name != TASK:
        return
    folder = Path(os.environ.get("TUNEFORGE_RECOMMENDER", "recommenders/default"))
    if not (folder / "recommender.json").is_file():
        log.warning("recommender: no folder at %s, /v1/recommend is off "
                    "(build one with `tuneforge recommender build`)", folder)
        return
    from .routes import make_router
    from .service import Recommender

    register(make_router(Recommender.load(folder, predictor=predictor)))
