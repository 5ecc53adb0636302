"""Static INT8 (QDQ, calibrated on training texts) as an export candidate behind the parity gate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _bundle_helpers import TEXTS, make_run

from tuneforge.export import calibration, export_run, quantize
from tuneforge.export.runs import read_run

CPU = "CPUExecutionProvider"


def _with_training_file(run, n=80):
    """Give a made-up run a training file, as the trainer records it in run.json."""
    path = run / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([f"{TEXTS[i % len(TEXTS)]} #{i}", "card"])
        w.writerow([TEXTS[0], "card"])  # also a parity row: must not be used for calibration
    info = json.loads((run / "run.json").read_text())
    info["data"] = {"train": {"path": str(path), "rows": n + 1}}
    (run / "run.json").write_text(json.dumps(info))
    return path


@pytest.fixture(scope="module")
def static_run(tiny_encoder_dir, tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs"), tiny_encoder_dir, "classification")
    _with_training_file(run)
    return run


@pytest.fixture(scope="module")
def static_bundle(static_run, tmp_path_factory):
    return export_run(static_run, out_dir=tmp_path_factory.mktemp("exports"), variants=["fp32_opt", "int8"],
                      max_metric_drop=100.0)


def test_calibration_rows_come_from_the_training_file_without_parity_rows(static_run):
    run = read_run(static_run)
    cal = calibration.training_rows(run, limit=50)
    parity = {r["text"] for r in run.rows}
    assert len(cal.rows) == 50 and cal.source.endswith("train.csv")
    assert not parity & {r["text"] for r in cal.rows}
    assert all(r["text"].rsplit(" #", 1)[0] in TEXTS for r in cal.rows)
    again = calibration.training_rows(run, limit=50)
    assert [r["text"] for r in again.rows] == [r["text"] for r in cal.rows]  # seeded
    assert cal.to_dict() == {"rows": 50, "source": cal.source, "excluded": "rows also in the parity set"}


def test_no_training_file_means_no_static_candidate_and_says_why(tiny_encoder_dir, tmp_path):
    run = make_run(tmp_path / "runs", tiny_encoder_dir, "classification")
    cal = calibration.training_rows(read_run(run))
    assert cal.rows == [] and "names no training file" in cal.skipped
    _with_training_file(run).unlink()
    assert "is not on this machine" in calibration.training_rows(read_run(run)).skipped
    path = export_run(run, out_dir=tmp_path / "exports", variants=["int8"], measure=False)
    m = json.loads((path / "manifest.json").read_text())
    assert m["parity"]["int8_calibration"]["rows"] == 0
    assert all(c["method"] == "dynamic" for c in m["parity"]["int8_candidates"])
    assert "No static INT8 candidates: the training file" in (path / "README.md").read_text()


def test_static_graph_quantises_only_the_weight_matmuls(static_run, tmp_path):
    import onnx
    import onnxruntime as ort

    from tuneforge.runtime.tokenization import BundleTokenizer

    src = tmp_path / "model.onnx"
    export_run(static_run, out_dir=tmp_path / "e", variants=["fp32"], measure=False)
    (tmp_path / "e").rglob("model.onnx").__next__().replace(src)
    plain = onnx.load(str(src))
    weights = quantize.weight_matmuls(plain)
    all_matmuls = [n for n in plain.graph.node if n.op_type == "MatMul"]
    assert 0 < len(weights) < len(all_matmuls)  # attention-score MatMuls are not weight MatMuls
    tok = BundleTokenizer(static_run / "model" / "encoder" / "tokenizer.json", max_length=32)
    inputs = [i.name for i in plain.graph.input]
    cal = calibration.training_rows(read_run(static_run), limit=64)
    feeds = calibration.feeds(tok, cal, inputs, pairs=False, batch_size=16)
    dst = tmp_path / "static.onnx"
    details = quantize.quantize_static_int8(src, dst, feeds)
    assert details["matmuls"] == len(weights) and details["calibration_rows"] == 64
    q = onnx.load(str(dst))
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    quantized_weights = {n.input[0] for n in q.graph.node if n.op_type == "DequantizeLinear"
                         and n.input[0] in {i.name for i in q.graph.initializer}}
    assert len(quantized_weights) == len(weights)
    per_channel = [i for i in q.graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1]
    assert per_channel  # per-channel weight scales
    feed = next(iter(feeds))
    ref = ort.InferenceSession(str(src), providers=[CPU]).run(None, feed)[0]
    out = ort.InferenceSession(str(dst), providers=[CPU]).run(None, feed)[0]
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max() + 1e-3


def test_static_candidate_is_gated_timed_and_explained(static_bundle):
    m = json.loads((static_bundle / "manifest.json").read_text())
    cands = {c["candidate"]: c for c in m["parity"]["int8_candidates"]}
    static = cands["int8[static,fp32,per-channel]"]
    assert static["method"] == "static" and static["per_channel"] is True
    assert static["static"]["calibration_rows"] == 80 and static["static"]["matmuls"] > 0
    assert "calibrated on training texts" in static["description"]
    assert "drop_points" in static["parity"] and "batch1_p50_ms" in static["timing"]
    assert m["parity"]["int8_calibration"]["rows"] == 80  # 81 training rows, 1 also a parity row
    chosen = [c for c in cands.values() if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["candidate"] == m["parity"]["int8"]["candidate"]
    assert m["parity"]["int8"]["why"] == m["parity"]["int8_pick"]
    assert m["parity"]["int8_pick"].startswith(chosen[0]["candidate"] + ": ")
    assert m["variants"]["int8"]["description"] == chosen[0]["description"]
    card = (static_bundle / "README.md").read_text()
    assert "### INT8 candidates" in card and "`int8[static,fp32,per-channel]`" in card
    assert "calibrated on 80 training texts" in card and "Why: " in card


def test_pick_reason_names_the_rule_that_chose():
    def cand(name, p50, agree, passed=True):
        return {"candidate": name, "timing": {"batch1_p50_ms": p50},
                "parity": {"passed": passed, "agreement": agree, "agreement_metric": "label_agreement",
                           "drop_points": 0.0}}

    fast, close, slow = cand("a", 1.0, 0.95), cand("b", 1.05, 0.99), cand("c", 2.0, 1.0)
    bad = cand("d", 0.5, 0.2, passed=False)
    results = [fast, close, slow, bad]
    best = quantize.pick_int8(results)
    assert best is close
    why = quantize.pick_reason(results, best)
    assert why.startswith("b: within 10% of the fastest (a 1.00 ms vs 1.05 ms)")
    assert "rejected by the parity gate: d" in why
    assert quantize.pick_reason([bad], None) == "no INT8 candidate passed the parity gate"
    assert "fastest measured batch-1 p50" in quantize.pick_reason([fast], fast)


def test_int8_methods_choose_which_candidates_are_built(static_run, tmp_path):
    from tuneforge.errors import UsageError

    path = export_run(static_run, out_dir=tmp_path, variants=["int8"], measure=False, int8_methods="static",
                      max_metric_drop=100.0)
    m = json.loads((path / "manifest.json").read_text())
    assert [c["candidate"] for c in m["parity"]["int8_candidates"]] == ["int8[static,fp32,per-channel]"]
    assert m["parity"]["int8"]["method"] == "static"
    assert quantize.check_methods(None) == quantize.check_methods("auto") == ("dynamic", "static")
    assert quantize.check_methods(["static", "dynamic"]) == ("dynamic", "static")
    with pytest.raises(UsageError, match="unknown INT8 method 'qat'"):
        export_run(static_run, out_dir=tmp_path, int8_methods="qat")
