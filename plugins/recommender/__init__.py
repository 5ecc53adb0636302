"""Recommender: text-based candidate retrieval and ranking, evaluated against real baselines.

A two-tower text model (user = titles of the last N liked items, item = its text) trained
by the engine with in-batch negatives, exported to ONNX, item vectors in FAISS; a linear
blend of two-tower similarity, popularity, recency, genre affinity and item-kNN
co-occurrence learned on validation; leave-last-out evaluation against popularity,
item-kNN and BPR.  This module is the plugin (entry point ``recommender``) and stays
import-light.

==============  ================================================================
``data``        interactions + catalogue (CSV/JSONL, MovieLens folders), thresholds
``split``       leave-last-out per user by timestamp
``metrics``     HR@K, NDCG@K, MRR; sampled negatives
``baselines``   popularity, item-kNN, BPR-MF (numpy)
``twotower``    pairs for the engine, training, export, the runtime encoder
``features`` / ``blend``   ranking features, the learned linear blend
``evaluate`` / ``build``   the evaluation table; the serving folder
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
