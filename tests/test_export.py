"""Export: ONNX variants, parity gate, measurements, bundle layout, atomic writing, planner."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from _bundle_helpers import make_run, rewrite_output, torch_outputs

from tuneforge.errors import BundleError, DataError, ParityError, UsageError
from tuneforge.export import BundleManifest, export_run, planner, verify_bundle
from tuneforge.export.bundle import sha256_file

CPU, CUDA, TRT = planner.CPU, planner.CUDA, planner.TENSORRT


@pytest.fixture(scope="module")
def cls_run(tiny_encoder_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"), tiny_encoder_dir, "classification")


@pytest.fixture(scope="module")
def cls_bundle(cls_run, tmp_path_factory):
    """All variants, measured, with a Triton repository."""
    out = tmp_path_factory.mktemp("exports")
    steps = []
    path = export_run(cls_run, out_dir=out, max_metric_drop=100.0, triton=True,
                      progress=steps.append)
    assert any("timing" in s for s in steps) and steps[-1].startswith("bundle ready")
    return path


def manifest_of(path) -> dict:
    return json.loads((path / "manifest.json").read_text())


# -- layout and manifest ---------------------------------------------------------------
def test_bundle_layout_and_file_hashes(cls_bundle):
    m = manifest_of(cls_bundle)
    assert cls_bundle.name == "v1" and cls_bundle.parent.name == "tiny-classification"
    assert (m["name"], m["version"], m["kind"], m["task"]) == (
        "tiny-classification", "v1", "classification", "tiny-classification")
    expected = {"model.onnx", "model.opt.onnx", "model.int8.onnx", "model.fp16.onnx",
                "tokenizer.json", "labels.json", "postprocess.json", "README.md",
                "triton/tiny-classification/config.pbtxt",
                "triton/tiny-classification/1/model.onnx"}
    if "openvino" in m["variants"]:  # where OpenVINO is installed and measured faster (test_openvino.py)
        expected |= {"model.ov.xml", "model.ov.bin"}
    on_disk = {p.relative_to(cls_bundle).as_posix() for p in cls_bundle.rglob("*") if p.is_file()}
    assert on_disk == expected | {"manifest.json"}
    assert set(m["files"]) == expected
    for rel, info in m["files"].items():
        assert info["sha256"] == sha256_file(cls_bundle / rel)
        assert info["size"] == (cls_bundle / rel).stat().st_size
    assert json.loads((cls_bundle / "labels.json").read_text()) == {
        "labels": ["card", "payment", "account"]}
    post = json.loads((cls_bundle / "postprocess.json").read_text())
    assert post["kind"] == "classification" and post["activation"] == "softmax"
    assert m["run"]["id"] == "run-1" and m["run"]["metrics"]["validation"]["accuracy"] == 0.5
    assert {"torch", "onnxruntime", "onnx", "tokenizers", "numpy", "python"} <= set(m["versions"])
    assert datetime.fromisoformat(m["created"]).utcoffset() == timedelta(0)
    assert m["tokenizer"]["max_length"] == 128
    readme = (cls_bundle / "README.md").read_text()
    assert "tiny-classification v1" in readme and "| int8 |" in readme


def test_manifest_dataclass_round_trip_and_validation(cls_bundle):
    m = verify_bundle(cls_bundle)
    assert isinstance(m, BundleManifest)
    assert BundleManifest.from_dict(m.to_dict()) == m
    bad = m.to_dict() | {"kind": "regression"}
    with pytest.raises(BundleError, match="kind"):
        BundleManifest.from_dict(bad)
    bad = m.to_dict() | {"defaults": {CPU: "int4"}}
    with pytest.raises(BundleError, match="not shipped"):
        BundleManifest.from_dict(bad)
    missing = {k: v for k, v in m.to_dict().items() if k != "files"}
    with pytest.raises(BundleError, match="missing files"):
        BundleManifest.from_dict(missing)
    with pytest.raises(BundleError, match="newer"):
        BundleManifest.from_dict(m.to_dict() | {"schema_version": 99})


def test_onnx_graph_inputs_are_int64_with_dynamic_axes(cls_bundle):
    import onnx

    model = onnx.load(str(cls_bundle / "model.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids"]
    for t in inputs.values():
        assert t.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in t.shape.dim] == ["batch", "sequence"]
    out = model.graph.output[0]
    assert out.name == "logits"
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3]


# -- parity ------------------------------------------------------------------------------
def test_fp32_variants_match_pytorch_and_fusions_recorded(cls_bundle):
    parity = manifest_of(cls_bundle)["parity"]
    for v in ("fp32", "fp32_opt"):
        assert parity[v]["passed"] and parity[v]["max_abs_diff"] <= 1e-4
        assert parity[v]["rows"] == 48
    fusions = parity["fp32_opt"]["fusions"]
    assert fusions.get("Attention") == 2 and fusions.get("SkipLayerNormalization", 0) >= 2


def test_int8_present_with_label_agreement_and_candidates(cls_bundle):
    m = manifest_of(cls_bundle)
    # openvino: built where OpenVINO is installed, shipped only where measured faster (tests/test_openvino.py)
    assert "int8" in m["variants"] and set(m["rejected"]) <= {"openvino"}
    p = m["parity"]["int8"]
    assert 0.0 <= p["agreement"] <= 1.0 and p["agreement_metric"] == "label_agreement"
    assert p["metric"] == "accuracy" and p["basis"] == "gold"
    assert p["drop_points"] == pytest.approx(100 * (p["reference_value"] - p["value"]))
    cands = m["parity"]["int8_candidates"]
    assert {c["candidate"] for c in cands} == {
        "int8[fp32_opt,per-tensor]", "int8[fp32_opt,per-channel]", "int8[fp32_opt_ln,per-channel]",
        "int8[fp32,per-tensor]", "int8[fp32,per-channel]"}
    assert sum(c["chosen"] for c in cands) == 1
    chosen = next(c for c in cands if c["chosen"])
    assert chosen["candidate"] == p["candidate"] and chosen["size"] == m["variants"]["int8"]["size"]
    # the LayerNorm-apart graph is checked, timed and served with onnxruntime's re-fusion off
    ln = next(c for c in cands if c["source"] == "fp32_opt_ln")
    assert ln["session"] == {"disabled_optimizers": ["SkipLayerNormFusion"]} and ln["timing"]["batch1_p50_ms"] > 0
    assert m["variants"]["int8"].get("session") == chosen.get("session")
    fp16 = m["parity"]["fp16"]
    assert fp16["passed"] and fp16["checked_on"] == CPU and "agreement" in fp16


def test_int8_from_the_layernorm_apart_graph_is_served_as_it_was_timed(cls_run, tmp_path, monkeypatch):
    """When the FUSED_LN candidate wins, the bundle says how to open it and the runtime does so."""
    from tuneforge.export import quantize
    from tuneforge.runtime import Predictor, session

    real_pick = quantize.pick_int8
    monkeypatch.setattr(quantize, "pick_int8", lambda results, **kw: next(
        (r for r in results if r["source"] == quantize.FUSED_LN), None) or real_pick(results, **kw))
    path = export_run(cls_run, out_dir=tmp_path, variants=["fp32", "fp32_opt", "int8"],
                      int8_methods="dynamic", max_metric_drop=100.0, measure=False)
    m = manifest_of(path)
    assert m["parity"]["int8"]["candidate"] == "int8[fp32_opt_ln,per-channel]"
    assert m["variants"]["int8"]["session"] == {"disabled_optimizers": ["SkipLayerNormFusion"]}
    import onnx

    ops = {n.op_type for n in onnx.load(str(path / "model.int8.onnx")).graph.node}
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
    seen = []
    real_create = session.create_session
    monkeypatch.setattr(session, "create_session", lambda p, prov, threads, disabled_optimizers=():
                        seen.append(tuple(disabled_optimizers)) or real_create(p, prov, threads, disabled_optimizers))
    p = Predictor.load(path, variant="int8")
    assert seen == [("SkipLayerNormFusion",)]
    ref = Predictor.load(path, variant="fp32")
    np.testing.assert_allclose(p.predict_raw(["a short text", "another one here"]),
                               ref.predict_raw(["a short text", "another one here"]), atol=0.5)


def test_measurements_pick_the_fastest_cpu_variant(cls_bundle):
    m = manifest_of(cls_bundle)
    cpu = m["measurements"][CPU]
    # fp16 is never timed on CPU; openvino only where installed, timed, and shipped for being faster
    assert set(cpu) - {"openvino"} == {"fp32", "fp32_opt", "int8"}
    assert ("openvino" in cpu) == ("openvino" in m["variants"])
    for t in cpu.values():
        assert t["batch1_p50_ms"] > 0 and t["batch32_items_per_s"] > 0 and t["batch1_runs"] == 150
    fastest = min(cpu, key=lambda v: cpu[v]["batch1_p50_ms"])
    assert m["defaults"][CPU] == fastest == m["measurements"]["fastest"][CPU]["batch1_latency"]
    assert m["defaults"][CUDA] == "fp16" and m["defaults"][TRT] == "fp32"
    assert "fp16" in m["measurements"]["skipped"]


def test_triton_repository(cls_bundle):
    m = manifest_of(cls_bundle)
    cfg = (cls_bundle / "triton/tiny-classification/config.pbtxt").read_text()
    assert 'name: "tiny-classification"' in cfg and 'backend: "onnxruntime"' in cfg
    assert "dynamic_batching" in cfg and "max_batch_size: 64" in cfg
    for name in ("input_ids", "attention_mask", "token_type_ids", "logits"):
        assert f'name: "{name}"' in cfg
    assert "dims: [ 3 ]" in cfg and "TYPE_INT64" in cfg
    assert m["triton"]["variant"] == m["defaults"][CUDA] == "fp16"
    assert sha256_file(cls_bundle / "triton/tiny-classification/1/model.onnx") == \
        sha256_file(cls_bundle / "model.fp16.onnx")


def test_fp32_parity_failure_raises_and_leaves_nothing(cls_run, tmp_path, monkeypatch):
    from tuneforge.export import optimize

    real = optimize.optimize_fp32

    def broken(src, dst, params):
        stats = real(src, dst, params)
        rewrite_output(dst, "add", 0.01)
        return stats

    monkeypatch.setattr(optimize, "optimize_fp32", broken)
    out = tmp_path / "exports"
    with pytest.raises(ParityError) as err:
        export_run(cls_run, out_dir=out, variants=["fp32", "fp32_opt"], measure=False)
    assert "fp32_opt" in err.value.message and "0.01 > 0.0001" in err.value.message
    assert err.value.results["fp32_opt"]["passed"] is False
    assert list(out.iterdir()) == []


def test_lossy_variant_that_drops_too_much_is_rejected(tiny_encoder_dir, tmp_path, monkeypatch):
    """Gold labels = PyTorch's own predictions; the fake INT8 graph negates the logits."""
    from _bundle_helpers import rows_for

    from tuneforge.export import quantize

    rows = rows_for("classification", 32)
    run = make_run(tmp_path / "runs", tiny_encoder_dir, "classification", rows=rows)
    logits, _ = torch_outputs(run, [r["text"] for r in rows])
    labels = ["card", "payment", "account"]
    for r, k in zip(rows, logits.argmax(-1)):
        r["label"] = labels[int(k)]
    (run / "splits" / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    real = quantize.quantize_int8

    def ruinous(src, dst, *, per_channel):
        real(src, dst, per_channel=per_channel)
        rewrite_output(dst, "neg")

    monkeypatch.setattr(quantize, "quantize_int8", ruinous)
    path = export_run(run, out_dir=tmp_path / "exports", variants=["int8"], measure=False)
    m = manifest_of(path)
    assert "int8" not in m["variants"] and not (path / "model.int8.onnx").exists()
    assert "no INT8 candidate passed parity" in m["rejected"]["int8"]
    assert "accuracy drops 100.00 points" in m["rejected"]["int8"]
    assert all(not c["parity"]["passed"] for c in m["parity"]["int8_candidates"])
    assert m["defaults"][CPU] == "fp32" and set(m["variants"]) == {"fp32"}


def test_plugins_hear_about_the_finished_bundle(cls_run, tmp_path, monkeypatch):
    import tuneforge.plugin_manager as pm

    calls = []

    def fake_call_each(hook, make_kwargs, isolate=False):
        calls.append((hook, make_kwargs("some-plugin"), isolate))
        return []

    monkeypatch.setattr(pm, "call_each", fake_call_each)
    path = export_run(cls_run, out_dir=tmp_path, variants=["fp32"], measure=False, parity_rows=4)
    # (the exporter also asks the task registry whether the task wants calibrated scores)
    [(hook, kwargs, isolate)] = [c for c in calls if c[0] == "tuneforge_export_done"]
    assert hook == "tuneforge_export_done" and isolate is True
    assert kwargs["bundle_dir"] == str(path) and kwargs["manifest"]["version"] == "v1"
    assert set(kwargs["manifest"]["files"]) >= {"model.onnx", "tokenizer.json"}


def test_calibrated_export_ships_the_temperature_the_runtime_applies(tiny_encoder_dir, tmp_path):
    """``calibrate=True``: a temperature fitted on the validation split's PyTorch logits goes into
    postprocess.json and the manifest; Predictor's probabilities and predictions use it; an
    export that does not ask ships none.  (An untrained head on random labels is far from
    calibrated, so the fit must move the NLL down.)"""
    import torch
    from transformers import AutoTokenizer

    from tuneforge.modeling import TaskModel
    from tuneforge.runtime import Predictor
    from tuneforge.runtime.postprocess import softmax

    run = make_run(tmp_path / "runs", tiny_encoder_dir, "classification", n_rows=120)
    model = TaskModel.load(run / "model")
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(40.0)   # an over-confident head: the fitted temperature must be > 1
    model.save(run / "model", AutoTokenizer.from_pretrained(tiny_encoder_dir))
    bundle = export_run(run, out_dir=tmp_path / "ex", variants=["fp32"], measure=False, calibrate=True,
                        max_metric_drop=100.0)
    post = json.loads((bundle / "postprocess.json").read_text())
    cal = manifest_of(bundle)["parity"]["calibration"]
    assert post["temperature"] == cal["temperature"] > 1.0
    assert cal["rows"] == 120 and cal["nll"][1] < cal["nll"][0]
    assert "softmax(logits / " in (bundle / "README.md").read_text()
    predictor = Predictor.load(bundle)
    texts = ["good service today", "awful order", "plain normal day", "x"]
    logits = np.asarray(predictor.predict_raw(texts), dtype=np.float64)
    expected = softmax(logits / cal["temperature"])
    assert np.allclose(predictor.probabilities(texts), expected, atol=1e-6)
    assert [p.score for p in predictor.predict(texts)] == pytest.approx(expected.max(axis=1).tolist(), abs=1e-6)
    assert [p.label for p in predictor.predict(texts)] == [predictor.manifest.labels[i] for i in logits.argmax(1)]
    plain = export_run(run, out_dir=tmp_path / "ex", variants=["fp32"], measure=False, max_metric_drop=100.0)
    assert "temperature" not in json.loads((plain / "postprocess.json").read_text())  # tiny task: not asked
    assert "calibration" not in manifest_of(plain)["parity"]


@pytest.mark.slow
def test_real_minilm_classification_export(minilm_dir, tmp_path):
    """End to end on the real all-MiniLM-L6-v2 (random 5-way head): fusions, INT8, timings."""
    run = make_run(tmp_path / "runs", minilm_dir, "classification", n_rows=64,
                   labels=["a", "b", "c", "d", "e"])
    path = export_run(run, out_dir=tmp_path / "exports", max_metric_drop=100.0)
    m = manifest_of(path)
    assert m["parity"]["fp32"]["max_abs_diff"] <= 1e-4
    assert m["parity"]["fp32_opt"]["fusions"]["Attention"] == 6
    assert m["variants"]["int8"]["size"] < m["variants"]["fp32"]["size"] / 3
    measured = set(m["measurements"][CPU])
    assert {"fp32", "fp32_opt", "int8"} <= measured
    # OpenVINO (when installed) ships a variant only if it beat the onnxruntime ones; then it is timed too
    assert measured - {"fp32", "fp32_opt", "int8"} <= {"openvino"} & set(m["variants"])


# -- atomic writing and versions ---------------------------------------------------------------
def test_interrupted_export_leaves_no_folder(cls_run, tmp_path, monkeypatch):
    from tuneforge.export import quantize

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # even an interrupt cleans up

    monkeypatch.setattr(quantize, "quantize_int8", boom)
    out = tmp_path / "exports"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        export_run(cls_run, out_dir=out, measure=False)
    assert list(out.iterdir()) == []  # neither v1, nor .tmp-*, nor the name folder


def test_versions_auto_increment_and_explicit_versions(cls_run, tmp_path):
    out = tmp_path / "exports"
    kw = {"out_dir": out, "variants": ["fp32"], "measure": False, "parity_rows": 8}
    first = export_run(cls_run, **kw)
    second = export_run(cls_run, **kw)
    assert (first.name, second.name) == ("v1", "v2")
    assert manifest_of(second)["version"] == "v2"
    named = export_run(cls_run, version="release-7", name="intents", **kw)
    assert named == out / "intents" / "release-7"
    assert export_run(cls_run, name="intents", **kw).name == "v1"
    with pytest.raises(BundleError, match="already exists"):
        export_run(cls_run, version="v2", **kw)
    assert sorted(p.name for p in (out / "tiny-classification").iterdir()) == ["v1", "v2"]
    assert set(manifest_of(first)["variants"]) == {"fp32"}
    assert manifest_of(first)["parity"]["fp32"]["rows"] == 8


@pytest.mark.parametrize("kind", ["embedding", "pair", "multilabel", "token"])
def test_other_task_kinds_export_with_their_metrics(kind, tiny_encoder_dir, tmp_path):
    run = make_run(tmp_path / "runs", tiny_encoder_dir, kind, n_rows=24)
    path = export_run(run, out_dir=tmp_path / "exports", variants=["fp32", "int8"],
                      measure=False, max_metric_drop=100.0)
    m = manifest_of(path)
    assert m["kind"] == kind and m["parity"]["fp32"]["max_abs_diff"] <= 1e-4
    expect = {"embedding": ("embedding", ["batch", 32], "mean_cosine", "reference"),
              "pair": ("score", ["batch"], "spearman", "gold"),
              "multilabel": ("logits", ["batch", 4], "micro_f1", "gold"),
              "token": ("logits", ["batch", "sequence", 3], "token_accuracy", "gold")}[kind]
    assert (m["output"]["name"], m["output"]["shape"]) == expect[:2]
    assert (m["parity"]["int8"]["metric"], m["parity"]["int8"]["basis"]) == expect[2:]
    assert json.loads((path / "postprocess.json").read_text())["pairs"] is (kind == "pair")


# -- planner and bad input ------------------------------------------------------------------
def test_planner_refuses_int8_on_cuda_and_tensorrt():
    with pytest.raises(UsageError) as err:
        planner.check_combo("int8", "CUDAExecutionProvider")
    msg = err.value.one_line()
    assert "'int8' cannot run on CUDAExecutionProvider" in msg and "no CUDA kernels" in msg
    assert "fp16" in err.value.hint and "CPUExecutionProvider" in err.value.hint
    with pytest.raises(UsageError, match="TensorRT INT8 needs a calibrated"):
        planner.check_combo("int8", "trt")
    assert planner.check_combo("int8", "cpu").level == planner.OK
    fp16_cpu = planner.check_combo("fp16", CPU)
    assert fp16_cpu.level == planner.NOT_RECOMMENDED and "slower" in fp16_cpu.reason
    assert planner.choose_default(CPU, ["fp32", "fp16"])[0] == "fp32"  # never fp16 on CPU
    assert planner.plan_export(["int8"]) == ["fp32", "int8"]
    assert planner.plan_export("fp32-opt,fp16") == ["fp32", "fp32_opt", "fp16"]  # CLI spelling
    with pytest.raises(UsageError, match="unknown variant"):
        planner.plan_export(["int4"])
    with pytest.raises(UsageError, match="unknown execution provider"):
        planner.support("fp32", "tpu")


def test_bad_run_folders_are_refused(cls_run, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        export_run(tmp_path / "nope", out_dir=tmp_path / "e")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a training run"):
        export_run(tmp_path / "empty", out_dir=tmp_path / "e")
    with pytest.raises(UsageError, match="max_metric_drop"):
        export_run(cls_run, out_dir=tmp_path / "e", max_metric_drop=-1)
    import shutil

    run = shutil.copytree(cls_run, tmp_path / "run-copy")
    (run / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    with pytest.raises(DataError, match="labels differ"):
        export_run(run, out_dir=tmp_path / "e")
    (run / "labels.json").write_text(json.dumps({"labels": ["card", "payment", "account"]}))
    (run / "splits" / "validation.jsonl").write_text('{"text": "ok"}\n{"txt": 1}\n')
    with pytest.raises(DataError, match=r"validation.jsonl:2"):
        export_run(run, out_dir=tmp_path / "e")
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(info | {"status": "failed", "error": "OOM"}))
    with pytest.raises(UsageError, match="did not complete .status failed: OOM"):
        export_run(run, out_dir=tmp_path / "e")
    assert not (tmp_path / "e").exists() or list((tmp_path / "e").iterdir()) == []


def test_parity_metric_helpers():
    from tuneforge.export.parity import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert np.isclose(spearman([1, 2, 2, 3], [1, 2, 3, 4]), 0.9486833)
