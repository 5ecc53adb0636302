"""Runtime: bundle -> Predictor (no torch), parity with PyTorch, integrity, providers, batching."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from _bundle_helpers import make_run, torch_outputs

from tuneforge.errors import BundleError, UsageError
from tuneforge.export import export_run
from tuneforge.runtime import Batcher, Prediction, Predictor, available_cpus
from tuneforge.runtime.session import CPU, CUDA, choose_providers, gpu_problem, run_bound

TEXTS = ["where is my card", "x",
         "I still have not received my new card, I ordered it over a week ago and nothing came",
         "cancel that payment", "why was I charged a fee for withdrawing cash at the airport"]


def _export(root, encoder, kind, **kw):
    run = make_run(root / "runs", encoder, kind, n_rows=32)
    kw = {"variants": ["fp32", "fp32_opt", "int8"], "measure": False, "max_metric_drop": 100.0} | kw
    return run, export_run(run, out_dir=root / "exports", **kw)


@pytest.fixture(scope="module")
def cls(tiny_encoder_dir, tmp_path_factory):
    return _export(tmp_path_factory.mktemp("cls"), tiny_encoder_dir, "classification")


@pytest.fixture(scope="module")
def emb(tiny_encoder_dir, tmp_path_factory):
    return _export(tmp_path_factory.mktemp("emb"), tiny_encoder_dir, "embedding",
                   variants=["fp32"])


@pytest.fixture(scope="module")
def pair(tiny_encoder_dir, tmp_path_factory):
    return _export(tmp_path_factory.mktemp("pair"), tiny_encoder_dir, "pair", variants=["fp32"])


# -- parity with PyTorch ------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["fp32", "fp32_opt"])
def test_classification_round_trip_matches_pytorch(cls, variant):
    run, bundle = cls
    p = Predictor.load(bundle, variant=variant)
    assert (p.variant, p.provider) == (variant, CPU)
    texts = TEXTS + ["refund " * 300]  # truncated to max_length like the HF tokenizer does
    ref, _ = torch_outputs(run, texts)
    raw = p.predict_raw(texts, batch_size=2)  # several batches, sorted by length
    assert raw.shape == (len(texts), 3)
    assert np.abs(raw - ref).max() <= 1e-4
    preds = p.predict(texts)
    labels = ["card", "payment", "account"]
    assert [x.label for x in preds] == [labels[i] for i in ref.argmax(-1)]
    for x in preds:
        assert set(x.scores) == set(labels) and sum(x.scores.values()) == pytest.approx(1.0)
        assert x.score == max(x.scores.values())
        assert set(x.to_dict()) == {"label", "score", "scores"}


def test_embedding_round_trip_matches_pytorch(emb):
    run, bundle = emb
    p = Predictor.load(bundle)
    ref, _ = torch_outputs(run, TEXTS)
    raw = p.predict_raw(TEXTS)
    assert raw.shape == (len(TEXTS), 32) and np.abs(raw - ref).max() <= 1e-4
    vec = p.predict(TEXTS[:1])[0].embedding
    assert len(vec) == 32 and np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


def test_pair_round_trip_needs_pairs(pair):
    run, bundle = pair
    p = Predictor.load(bundle)
    firsts, seconds = TEXTS[:3], ["hello", "a much longer second text of the pair", "card"]
    ref, _ = torch_outputs(run, firsts, seconds)
    raw = p.predict_raw(firsts, seconds)
    assert raw.shape == (3,) and np.abs(raw - ref).max() <= 1e-4
    probs = 1 / (1 + np.exp(-ref))  # trained with BCE-with-logits: the score is a probability
    assert [x.score for x in p.predict(firsts, seconds)] == pytest.approx(probs.tolist(), abs=1e-4)
    with pytest.raises(UsageError, match="trained on text pairs"):
        p.predict(firsts)
    with pytest.raises(UsageError, match="3 texts but 1 text_pairs"):
        p.predict(firsts, ["one"])


def test_token_kind_tags_each_word(tiny_encoder_dir, tmp_path):
    run, bundle = _export(tmp_path, tiny_encoder_dir, "token", variants=["fp32"])
    p = Predictor.load(bundle)
    text = "lost my phone, freeze   the account"
    [pred] = p.predict([text])
    assert [t["word"] for t in pred.tags] == text.split()
    assert all(text[t["start"]:t["end"]] == t["word"] for t in pred.tags)
    assert {t["label"] for t in pred.tags} <= {"O", "B-THING", "I-THING"}
    raw = p.predict_raw([text, "hi"])
    assert raw[1].shape == (3, 3) and raw[0].shape[0] > raw[1].shape[0]  # padding removed
    ref, mask = torch_outputs(run, [text])
    assert np.abs(raw[0] - ref[0][mask[0].astype(bool)]).max() <= 1e-4


def test_sorting_by_length_keeps_input_order(cls):
    _, bundle = cls
    p = Predictor.load(bundle, variant="fp32")
    texts = TEXTS * 3
    together = p.predict_raw(texts, batch_size=4)
    alone = np.stack([p.predict_raw([t])[0] for t in texts])
    assert np.abs(together - alone).max() <= 1e-5
    assert p.predict([]) == [] and p.predict_raw([]).shape == (0, 3)
    with pytest.raises(UsageError, match="list of strings"):
        p.predict("just one string")
    with pytest.raises(UsageError, match=r"texts\[1\] must be a string"):
        p.predict(["ok", 3])


def test_int8_variant_loads_and_mostly_agrees(cls):
    run, bundle = cls
    p = Predictor.load(bundle, variant="int8")
    assert p.variant == "int8"
    raw = p.predict_raw(TEXTS)
    ref, _ = torch_outputs(run, TEXTS)
    assert raw.shape == ref.shape and np.abs(raw - ref).max() < 0.5  # quantised, not equal


# -- choosing variant, provider and threads ---------------------------------------------------
def test_default_variant_comes_from_manifest(cls):
    _, bundle = cls
    p = Predictor.load(bundle.parent)  # exports/<name>: newest version
    assert p.manifest.version == bundle.name
    assert p.variant == p.manifest.defaults[CPU] == "int8"  # unmeasured: preference order
    assert p.provider == CPU and p.providers[-1] == CPU
    info = p.info()
    assert info["model"] == f"tiny-classification/{bundle.name}" and info["threads"] == p.threads


def test_int8_on_cuda_is_refused_before_loading(cls):
    _, bundle = cls
    with pytest.raises(UsageError) as err:
        Predictor.load(bundle, variant="int8", providers=["CUDAExecutionProvider"])
    assert "'int8' cannot run on CUDAExecutionProvider" in err.value.message
    with pytest.raises(BundleError, match="no 'fp16' variant"):
        Predictor.load(bundle, variant="fp16")


def test_wanted_cuda_falls_back_to_cpu_with_a_reason(cls):
    if gpu_problem(CUDA) is None:
        pytest.skip("CUDA really works here")
    _, bundle = cls
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Predictor.load(bundle, providers=["cuda"])
    assert p.provider == CPU and p.variant == "int8"  # CPU default, not a CUDA one
    assert "CUDAExecutionProvider" in p.fallback_reason
    assert any("CUDAExecutionProvider" in str(w.message) for w in caught)
    choice = choose_providers(["CUDAExecutionProvider"])
    assert choice.usable == [CPU] and CUDA in choice.problems


def test_tensorrt_dropped_for_cuda_says_why(cls, monkeypatch):
    """The lent GPU machine's case: onnxruntime-gpu lists TensorRT, but its libraries are absent,
    so the session runs on CUDA -- fallback_reason must say why TensorRT is not used."""
    import onnxruntime

    from tuneforge.runtime import session

    _, bundle = cls
    why = "its libraries cannot load (libnvinfer.so.10: cannot open shared object file)"
    monkeypatch.setattr(session, "gpu_problem", lambda p: why if p == session.TENSORRT else None)
    real = session.create_session
    # pretend the first usable provider started (this machine has no GPU to start it on)
    monkeypatch.setattr(session, "create_session",
                        lambda path, providers, threads, disabled=(): (real(path, [CPU], threads, disabled)[0],
                                                                        providers[0]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Predictor.load(bundle, providers=["tensorrt", "cuda"])
    assert p.provider == CUDA and p.variant == "fp32_opt"  # CUDA's default among shipped variants
    assert p.fallback_reason == f"running on {CUDA}: TensorrtExecutionProvider: {why}"
    assert any("TensorrtExecutionProvider" in str(w.message) for w in caught)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(session.PROVIDERS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default chain only logs it
        p = Predictor.load(bundle)
    assert p.provider == CUDA and "TensorrtExecutionProvider" in p.fallback_reason
    p = Predictor.load(bundle, providers=["cuda"])  # nothing preferred was dropped
    assert p.provider == CUDA and p.fallback_reason is None


def test_threads(cls, monkeypatch):
    _, bundle = cls
    n = available_cpus()
    assert 1 <= n <= (os.cpu_count() or 1)
    assert Predictor.load(bundle, threads=1).threads == 1
    with pytest.raises(UsageError, match="threads"):
        Predictor.load(bundle, threads=0)
    from tuneforge.runtime import session

    monkeypatch.setattr(session, "_cgroup_quota", lambda: 0.5)
    assert session.available_cpus() == 1


def test_io_binding_path_gives_the_same_outputs(cls):
    _, bundle = cls
    p = Predictor.load(bundle, variant="fp32")
    feed = p.tokenizer.pad(p.tokenizer.encode(TEXTS), p.inputs)
    plain = p.runner.session.run(None, feed)[0]
    bound = run_bound(p.runner.session, feed, "cpu", ["logits"])[0]
    assert np.array_equal(plain, bound)


@pytest.mark.gpu
def test_cuda_fp16_with_io_binding(tiny_encoder_dir, tmp_path):
    run, bundle = _export(tmp_path, tiny_encoder_dir, "classification",
                          variants=["fp32", "fp16"])
    p = Predictor.load(bundle, providers=["CUDAExecutionProvider"])
    assert (p.provider, p.variant, p.fallback_reason) == (CUDA, "fp16", None)
    assert p.runner.io_binding
    ref, _ = torch_outputs(run, TEXTS)
    assert np.abs(p.predict_raw(TEXTS) - ref).max() < 1e-2


# -- integrity ----------------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["model.int8.onnx", "labels.json", "tokenizer.json"])
def test_tampered_bundle_is_refused_naming_the_file(cls, tmp_path, victim):
    _, bundle = cls
    copy = shutil.copytree(bundle, tmp_path / "v1")
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        Predictor.load(copy)
    assert victim in err.value.message and "integrity" in err.value.message
    assert "re-export" in err.value.hint


def test_missing_or_broken_files_are_refused(cls, tmp_path):
    _, bundle = cls
    copy = shutil.copytree(bundle, tmp_path / "v1")
    (copy / "model.opt.onnx").unlink()
    with pytest.raises(BundleError, match="model.opt.onnx is missing"):
        Predictor.load(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json cannot be read"):
        Predictor.load(copy)
    with pytest.raises(BundleError, match="not a tuneforge bundle"):
        Predictor.load(tmp_path / "nothing-here")


# -- the serving path never imports torch ------------------------------------------------------
def test_runtime_imports_neither_torch_nor_transformers(cls):
    import tuneforge

    _, bundle = cls
    code = (
        "import sys, json\n"
        "import tuneforge.runtime as rt\n"
        f"p = rt.Predictor.load({str(bundle)!r})\n"
        "preds = p.predict(['where is my card', 'hello'])\n"
        "import tuneforge.serve\n"
        "print(json.dumps({'labels': [x.label for x in preds], 'variant': p.variant,\n"
        "  'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n")
    env = dict(os.environ)
    pkg_parent = str(Path(list(tuneforge.__path__)[0]).parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and len(result["labels"]) == 2


# -- micro-batching --------------------------------------------------------------------------
def test_batcher_groups_concurrent_requests_and_isolates_failures():
    calls = []

    def fake_predict(texts, pairs):
        calls.append(list(texts))
        if any(t == "boom" for t in texts):
            raise ValueError("bad text")
        return [t.upper() for t in texts]

    with Batcher(fake_predict, max_batch=8, max_wait_ms=100) as batcher:
        futures = {}
        threads = [threading.Thread(target=lambda i=i: futures.__setitem__(
            i, batcher.submit([f"r{i}a", f"r{i}b"]))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results = {i: f.result(5) for i, f in futures.items()}
        assert results == {i: [f"R{i}A", f"R{i}B"] for i in range(3)}
        assert len(calls) < 3 and sum(len(c) for c in calls) == 6  # grouped

        calls.clear()
        good, bad = batcher.submit(["fine"]), batcher.submit(["boom"])
        assert good.result(5) == ["FINE"]
        with pytest.raises(ValueError, match="bad text"):
            bad.result(5)
        big = batcher.submit([str(i) for i in range(20)])  # larger than max_batch: alone
        assert len(big.result(5)) == 20
    with pytest.raises(RuntimeError, match="stopped"):
        batcher.submit(["late"])


def test_batcher_with_a_real_predictor(cls):
    _, bundle = cls
    p = Predictor.load(bundle, variant="fp32")
    sizes = []
    batcher = Batcher(p.predict, max_batch=16, max_wait_ms=20, on_batch=sizes.append)
    futures = [batcher.submit([t]) for t in TEXTS]
    got = [f.result(10)[0] for f in futures]
    batcher.stop()
    assert all(isinstance(x, Prediction) for x in got)
    assert [x.label for x in got] == [x.label for x in p.predict(TEXTS)]
    assert sum(sizes) == len(TEXTS) and len(sizes) < len(TEXTS)
    assert batcher._thread is not None and not batcher._thread.is_alive()  # stop() joined it
