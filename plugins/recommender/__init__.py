"""Recommender: text-based and collaborative candidates, a learned ranker, real baselines.

A text tower (user = titles of the last N liked items, item = its text): a two-tower model
trained by the engine with in-batch negatives, mixed with the base encoder by a weight chosen
on a cold-start validation window, exported to ONNX, item vectors in FAISS; EASE and
item-kNN as further candidate sources; a LightGBM lambdarank ranker over their union whose
settings are chosen on validation (a linear blend for taste queries); leave-last-out evaluation against
popularity, item-kNN, EASE, BPR and ALS, and a cold-start table (new items, new users).
This module is the plugin (entry point ``recommender``) and stays import-light.

==============  ================================================================
``data``        interactions + catalogue (CSV/JSONL, layout detection), thresholds
``movielens``   MovieLens 100k (u.data / u.item) and 1M / 10M (.dat) readers
``split``       leave-last-out per user by timestamp (+ earlier pseudo-validation phases)
``metrics``     HR@K, NDCG@K, MRR; sampled negatives
``baselines``   popularity, item-kNN, EASE, BPR-MF (numpy), ALS (``implicit``, optional)
``twotower``    pairs for the engine, training, export, the runtime encoder, the base-encoder mix
``features`` / ``blend``   ranking features, the learned linear blend
``ranker``      candidates (EASE + text tower + item-kNN), features, LightGBM lambdarank + its CV search
``coldstart`` / ``coldstart_eval``   the time cut-off, new items / new users, their table
``evaluate`` / ``build``   validation grids, the evaluation table; the serving folder
``service``     load a folder, recommend / score / explain (no torch)
``routes`` / ``commands``  HTTP and CLI
==============  ================================================================
"""

from __future__ import annotations

from pathlib import Path

from tuneforge import hookimpl
from tuneforge.tasks import AppTemplate, TaskSpec

TASK = "recommender-two-tower"
TEMPLATES = Path(__file__).parent / "templates"


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
    register(AppTemplate(name="recommender", path=str(TEMPLATES / "recommender"),
                         description="Text-based recommender: sample catalogue + interactions, build, recommend."))


@hookimpl
def tuneforge_register_apps(register):
    from tuneforge.application import AppSpec

    from .app import load
    from .commands import DEFAULT_DIR

    register(AppSpec(name="recommender", load=load, default_path=DEFAULT_DIR,
                     path_help="a folder written by `tuneforge recommender build`",
                     description="Recommendations: POST /v1/recommend, POST /v1/score."))
