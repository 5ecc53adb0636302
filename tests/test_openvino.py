"""The ``openvino`` variant: built from the plain FP32 graph and the static INT8 (QDQ) graph,
through the same parity gate, shipped only where the export measured it faster, and a runtime
without OpenVINO falls back to the fastest onnxruntime variant."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from _bundle_helpers import TEXTS, make_run
from test_export_static import _with_training_file

from tuneforge.errors import UsageError
from tuneforge.export import export_run, measure
from tuneforge.runtime import Predictor, ov_runner

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'tuneforge[openvino]')")

CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def ov_run(tiny_encoder_dir, tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs"), tiny_encoder_dir, "classification")
    _with_training_file(run)
    return run


def _timings_with(openvino_ms: float, openvino_items: float):
    """Wrap measure.time_variants: real timings, then the OpenVINO candidates' set to given numbers
    (the tiny model's real speeds say nothing; the rule that uses them is what is tested)."""
    real = measure.time_variants

    def fake(paths, single, bulk, **kw):
        out = real(paths, single, bulk, **kw)
        for name in out:
            if name.startswith("openvino["):
                out[name].update(batch1_p50_ms=openvino_ms, batch32_items_per_s=openvino_items)
            else:
                out[name].update(batch1_p50_ms=2.0, batch32_items_per_s=100.0)
        return out

    return fake


def _export_timed(run, out_dir, openvino_ms: float, openvino_items: float):
    mp = pytest.MonkeyPatch()
    mp.setattr(measure, "time_variants", _timings_with(openvino_ms, openvino_items))
    try:
        return export_run(run, out_dir=out_dir, variants=["fp32", "int8", "openvino"], max_metric_drop=100.0)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def ov_bundle(ov_run, tmp_path_factory):
    return _export_timed(ov_run, tmp_path_factory.mktemp("exports"), 1.0, 300.0)


def _manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_candidates_cover_plain_and_static_graphs_with_their_precision(ov_bundle):
    m = _manifest(ov_bundle)
    cands = {c["candidate"]: c for c in m["parity"]["openvino_candidates"]}
    assert set(cands) == {"openvino[fp32]", "openvino[int8[static,fp32,per-channel]]"}
    for c in cands.values():
        assert c["parity"]["passed"] and c["parity"]["inference_precision"] in ("f32", "bf16")
        assert c["timing"]["engine"] == "openvino"
    assert sum(c["chosen"] for c in cands.values()) == 1


def test_shipped_when_measured_faster_with_both_files_hashed_and_the_reason(ov_bundle):
    m = _manifest(ov_bundle)
    assert m["variants"]["openvino"]["file"] == "model.ov.xml"
    assert m["variants"]["openvino"]["engine"] == "openvino"
    assert {"model.ov.xml", "model.ov.bin"} <= set(m["files"])
    assert m["defaults"][CPU] == "openvino"
    assert "measured faster than every onnxruntime variant at batch 1 and batch 32" in m["parity"]["openvino"]["why"]
    assert "openvino" not in m["rejected"]
    assert m["providers"]["CUDAExecutionProvider"]["openvino"]["level"] == "refused"
    assert "OpenVINO" in (ov_bundle / "README.md").read_text()


def test_runtime_serves_it_on_openvino_close_to_onnxruntime(ov_bundle):
    ov = Predictor.load(ov_bundle)
    assert (ov.variant, ov.engine, ov.provider) == ("openvino", "openvino", CPU)
    assert ov.info()["engine"] == "openvino" and ov.providers[0].startswith("OpenVINO")
    ref = Predictor.load(ov_bundle, variant="fp32")
    assert ref.engine == "onnxruntime"
    texts = TEXTS[:6]
    a, b = ov.predict_raw(texts), ref.predict_raw(texts)
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 0.05  # BF16 on AMX/AVX-512 BF16 CPUs, FP32 elsewhere
    one = ov.predict([texts[0]])[0]
    assert one.label == ref.predict([texts[0]])[0].label


def test_runtime_without_openvino_falls_back_to_the_fastest_measured_onnxruntime_variant(
        ov_bundle, monkeypatch, caplog):
    monkeypatch.setattr(ov_runner, "unavailable", lambda: "OpenVINO is not installed (openvino)")
    with caplog.at_level(logging.INFO, logger="tuneforge.runtime.predictor"):
        p = Predictor.load(ov_bundle)
    assert p.engine == "onnxruntime" and p.variant in ("int8", "fp32")
    assert "its default CPUExecutionProvider variant is openvino" in caplog.text
    with pytest.raises(UsageError, match="needs OpenVINO") as e:
        Predictor.load(ov_bundle, variant="openvino")
    assert "tuneforge[openvino]" in e.value.hint


def test_not_shipped_where_measured_slower_and_says_so(ov_run, tmp_path, monkeypatch):
    monkeypatch.setattr(measure, "time_variants", _timings_with(5.0, 50.0))
    m = _manifest(export_run(ov_run, out_dir=tmp_path, variants=["fp32", "int8", "openvino"],
                             max_metric_drop=100.0))
    assert "openvino" not in m["variants"] and m["defaults"][CPU] != "openvino"
    assert m["rejected"]["openvino"].startswith("measured slower than onnxruntime on this machine")
    assert not [f for f in m["files"] if f.startswith("model.ov")]


def test_not_shipped_unmeasured_and_explicit_request_without_openvino_is_one_line(ov_run, tmp_path, monkeypatch):
    m = _manifest(export_run(ov_run, out_dir=tmp_path / "a", variants=["fp32", "openvino"], measure=False,
                             max_metric_drop=100.0))
    assert "openvino" not in m["variants"] and "not measured" in m["rejected"]["openvino"]
    monkeypatch.setattr(ov_runner, "unavailable", lambda: "OpenVINO is not installed (openvino)")
    with pytest.raises(UsageError, match="needs OpenVINO"):
        export_run(ov_run, out_dir=tmp_path / "b", variants=["fp32", "openvino"], measure=False)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    # the default plan (every variant) skips it with the reason instead of failing
    m = _manifest(export_run(ov_run, out_dir=tmp_path / "c", variants=None, measure=False, max_metric_drop=100.0))
    assert "not installed" in m["rejected"]["openvino"] and "tuneforge[openvino]" in m["rejected"]["openvino"]


@pytest.fixture(scope="module")
def bulk_bundle(ov_run, tmp_path_factory):
    """OpenVINO measured faster at batch 32 only (5 ms vs 2 ms at batch 1; 300 vs 100 items/s)."""
    return _export_timed(ov_run, tmp_path_factory.mktemp("exports"), 5.0, 300.0)


def test_a_batch_32_win_ships_it_without_making_it_the_latency_default(bulk_bundle):
    m = _manifest(bulk_bundle)
    assert "openvino" in m["variants"] and m["defaults"][CPU] != "openvino"
    assert "at batch 32 (" in m["parity"]["openvino"]["why"] and "batch 1 and" not in m["parity"]["openvino"]["why"]
    assert "bulk calls" in (bulk_bundle / "README.md").read_text()


def test_bulk_calls_run_on_the_variant_measured_fastest_at_batch_32(bulk_bundle):
    from tuneforge.runtime import predictor as predictor_mod

    p = Predictor.load(bulk_bundle)
    assert (p.variant, p.bulk_variant) == (p.manifest.defaults[CPU], "openvino")
    assert p.info()["bulk_variant"] == "openvino" and p.info()["bulk_rows"] == predictor_mod.BULK_ROWS
    calls = []
    real_single, real_bulk = p.runner, p._bulk()
    p.runner = lambda feed: calls.append("single") or real_single(feed)
    p._bulk_runner = lambda feed: calls.append("bulk") or real_bulk(feed)
    texts = (TEXTS * 40)[:predictor_mod.BULK_ROWS]
    p.predict_raw(texts[:1])
    p.predict_raw(texts[:predictor_mod.BULK_ROWS - 1])
    assert calls and set(calls) == {"single"}
    calls.clear()
    bulk = p.predict_raw(texts)
    assert calls and set(calls) == {"bulk"}
    # the bulk variant's answers are within parity of the reference, row by row
    ref = Predictor.load(bulk_bundle, variant="fp32").predict_raw(texts)
    np.testing.assert_allclose(bulk, ref, atol=0.05)


def test_bulk_variant_off_explicit_or_unavailable(bulk_bundle, monkeypatch):
    assert Predictor.load(bulk_bundle, variant="int8").bulk_variant is None      # a variant asked for: only it
    assert Predictor.load(bulk_bundle, bulk_variant=None).bulk_variant is None
    assert Predictor.load(bulk_bundle, variant="fp32", bulk_variant="int8").bulk_variant == "int8"
    with pytest.raises(Exception, match="no 'fp16' variant for bulk calls"):
        Predictor.load(bulk_bundle, bulk_variant="fp16")
    monkeypatch.setattr(ov_runner, "unavailable", lambda: "OpenVINO is not installed (test)")
    assert Predictor.load(bulk_bundle).bulk_variant is None
