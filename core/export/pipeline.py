"""``export_run``: run folder -> ONNX variants -> parity gate -> timings -> bundle.

The steps are called through their modules (``onnx_export.export_onnx``,
``quantize.quantize_int8``, ...) so each can be swapped or broken in tests.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .. import runinfo
from ..errors import UsageError
from ..storage import write_json
from . import bundle, calibration, card, measure, onnx_export, optimize, parity, planner, quantize, runs, triton_repo

log = logging.getLogger(__name__)


def run_export(run_dir, *, out_dir="exports", name=None, version=None, variants=None,
               max_metric_drop=1.0, parity_rows=2000, measure=True, triton=False,
               progress=None, sign=None, int8_methods=None, calibrate=None) -> Path:
    """See :func:`tuneforge.export.export_run`.  ``sign``: an Ed25519 private key (PEM file path,
    PEM bytes or key object); the bundle then carries ``manifest.sig`` (see :mod:`.signing`)."""
    if isinstance(max_metric_drop, bool) or not isinstance(max_metric_drop, (int, float)) \
            or max_metric_drop < 0:
        raise UsageError(f"max_metric_drop must be a number of points >= 0, got {max_metric_drop!r}")
    plan = planner.plan_export(variants)
    methods = quantize.check_methods(int8_methods)
    if variants is not None and planner.OPENVINO in plan:  # asked for by name: fail now, not later
        from ..runtime import ov_runner

        ov_runner.require()
    if isinstance(triton, str) and not isinstance(triton, bool):
        triton = planner.check_variant_name(triton)
    key = None
    if sign is not None:  # read the key before the long part: a bad key fails in a second
        from . import signing

        key = sign if hasattr(sign, "sign") else signing.load_private_key(sign)
    run = runs.read_run(run_dir, parity_rows=parity_rows)
    name = name if name is not None else bundle.safe_name(run.task)

    def say(msg: str) -> None:
        log.info(msg)
        if progress is not None:
            progress(msg)

    with bundle.AtomicBundle(out_dir, name, version) as target:
        say(f"exporting {run.path} -> {target.final} ({', '.join(plan)})")
        _build(run, target, plan, float(max_metric_drop), measure, triton, say, methods,
               _wants_calibration(run.task, calibrate))
        if key is not None:
            signing.sign_bundle(target.tmp, key)
            say("signed manifest.json (manifest.sig)")
        final = target.commit()
    say(f"bundle ready: {final}")
    _announce(final)
    return final


def _announce(final: Path) -> None:
    """Verify the committed bundle and tell plugins (``tuneforge_export_done``)."""
    manifest = bundle.verify_bundle(final).to_dict()
    try:
        from ..plugin_manager import call_each
    except ImportError:  # pragma: no cover - plugin machinery not available
        return
    call_each("tuneforge_export_done",
              lambda _plugin: {"bundle_dir": str(final), "manifest": manifest}, isolate=True)


def _wants_calibration(task: str, asked: bool | None) -> bool:
    if asked is not None:
        return bool(asked)
    try:
        from ..tasks import all_tasks

        spec = all_tasks().get(task)
    except Exception:  # noqa: BLE001 - no plugins here: an uncalibrated bundle, as before
        return False
    return bool(spec is not None and spec.calibrate_scores)


def fit_bundle_temperature(data) -> dict:
    """Temperature of a classification bundle, fitted on the parity rows' PyTorch logits and gold
    labels (the run's validation split): the report that goes into the manifest."""
    import numpy as np

    from ..runtime.postprocess import softmax
    from ..temperature import calibration_report

    labels = list(data.post.get("labels") or [])
    gold = np.array([labels.index(str(r.get("label"))) if str(r.get("label")) in labels else -1
                     for r in data.rows])
    keep = gold >= 0
    if keep.sum() < 50:
        return {"skipped": f"only {int(keep.sum())} labelled validation rows (50 needed)"}
    probs = softmax(np.asarray(data.ordered(data.reference), dtype=np.float64)[keep])
    return {**calibration_report(probs, gold[keep]), "fitted_on": "validation split, PyTorch logits"}


def _build(run, target, plan, max_drop, do_measure, want_triton, say, methods=quantize.METHODS,
           calibrate=False) -> None:
    from ..modeling import TaskModel
    from ..runtime.session import CPU, available_cpus
    from ..runtime.tokenization import BundleTokenizer

    tmp, threads = target.tmp, available_cpus()
    work = tmp / ".work"
    work.mkdir()
    say("loading the PyTorch model")
    model = TaskModel.load(run.model_dir)
    tok = tokenizer_info(run.model_dir / "encoder", model)
    shutil.copyfile(run.model_dir / "encoder" / "tokenizer.json", tmp / tok["file"])
    tokenizer = BundleTokenizer(tmp / tok["file"], max_length=tok["max_length"], pad_id=tok["pad_id"])
    inputs = onnx_export.input_names(model.encoder)
    post = postprocess_config(model, run)
    data = parity.prepare(tokenizer, run.rows, inputs, kind=model.spec.kind, post=post,
                          pairs=run.uses_pairs)

    say("exporting the FP32 ONNX graph")
    paths = {"fp32": tmp / planner.VARIANT_FILES["fp32"]}
    graph = onnx_export.export_onnx(model, paths["fp32"],
                                    onnx_export.sample_batch(tokenizer, run.rows, inputs,
                                                             run.uses_pairs))
    say(f"PyTorch reference outputs on {len(run.rows)} {run.split} rows")
    parity.torch_reference(model, data)
    calibration_result = None
    if calibrate and model.spec.kind == "classification":
        calibration_result = fit_bundle_temperature(data)
        if "temperature" in calibration_result:
            post["temperature"] = calibration_result["temperature"]
            say(f"score calibration: temperature {post['temperature']:g} on {calibration_result['rows']} "
                f"validation rows (NLL {calibration_result['nll'][0]} -> {calibration_result['nll'][1]})")

    def outputs(path):
        return parity.ort_outputs(path, data, threads)

    results, rejected = {"fp32": parity.check_fp32("fp32", data, outputs(paths["fp32"]))}, {}
    if calibration_result is not None:
        results["calibration"] = calibration_result
    params = optimize.fusion_params(model.encoder.config)
    if "fp32_opt" in plan:
        say("optimising (transformer fusions)")
        paths["fp32_opt"] = tmp / planner.VARIANT_FILES["fp32_opt"]
        fusions = optimize.optimize_fp32(paths["fp32"], paths["fp32_opt"], params)
        results["fp32_opt"] = parity.check_fp32("fp32_opt", data, outputs(paths["fp32_opt"]))
        results["fp32_opt"]["fusions"] = fusions
    int8, calib = [], None
    sources = dict(paths)
    if "int8" in plan and "fp32_opt" in paths and "dynamic" in methods:
        sources[quantize.FUSED_LN] = work / "model.opt-ln.onnx"
        optimize.optimize_fp32(paths["fp32"], sources[quantize.FUSED_LN], params, skip_layer_norm=False)
    if "int8" in plan:
        calib = calibration.training_rows(run) if "static" in methods else \
            calibration.Calibration(skipped="static INT8 not asked for (int8_methods)")
        calib_feeds = calibration.feeds(tokenizer, calib, inputs, pairs=run.uses_pairs) \
            if calib.rows else []
        if not calib.rows:
            say(f"no static INT8 candidates: {calib.skipped}")
        for cand in quantize.candidates(sources, static=bool(calib_feeds),
                                        dynamic="dynamic" in methods):
            say(f"quantising {cand.name}")
            dst = work / f"int8-{cand.method}-{cand.source}-{int(cand.per_channel)}.onnx"
            details = None
            if cand.method == "static":
                details = quantize.quantize_static_int8(sources[cand.source], dst, calib_feeds,
                                                        per_channel=cand.per_channel)
            else:
                quantize.quantize_int8(sources[cand.source], dst, per_channel=cand.per_channel)
            res = parity.check_lossy("int8", data, parity.ort_outputs(
                dst, data, threads, disabled_optimizers=cand.disabled_optimizers), max_metric_drop=max_drop)
            entry = {"candidate": cand.name, "method": cand.method, "source": cand.source,
                     "per_channel": cand.per_channel, "description": cand.description,
                     "path": dst, "parity": res, "size": dst.stat().st_size}
            if cand.disabled_optimizers:
                entry["session"] = {"disabled_optimizers": list(cand.disabled_optimizers)}
            if details:
                entry["static"] = details
            int8.append(entry)
    if "fp16" in plan:
        say("converting to FP16 (parity checked on CPU)")
        dst = tmp / planner.VARIANT_FILES["fp16"]
        fusions = optimize.convert_fp16(paths["fp32"], dst, params)
        res = parity.check_lossy("fp16", data, outputs(dst), max_metric_drop=max_drop)
        res.update(fusions=fusions, checked_on=CPU)
        results["fp16"] = res
        if res["passed"]:
            paths["fp16"] = dst
        else:
            rejected["fp16"] = res["reason"]
            dst.unlink()

    ov = []
    if planner.OPENVINO in plan:
        ov = openvino_candidates(paths, int8, work, data, threads, max_drop, say, rejected)

    timings, measurements = {}, {}
    if do_measure:
        single, bulk = measure.timing_batches(tokenizer, run.rows, inputs, pairs=run.uses_pairs)
        todo = {v: paths[v] for v in ("fp32", "fp32_opt") if v in paths}
        todo.update({c["candidate"]: c["path"] for c in int8 if c["parity"]["passed"]})
        todo.update({c["candidate"]: c["path"] for c in ov if c["parity"]["passed"]})
        say(f"timing {len(todo)} graphs on CPU ({threads} threads): " + ", ".join(todo))
        timed = measure.time_variants(todo, single, bulk, threads=threads, provider=CPU,
                                      disabled_optimizers={c["candidate"]: c["session"]["disabled_optimizers"]
                                                           for c in int8 if c.get("session")})
        timings = {v: timed[v] for v in ("fp32", "fp32_opt") if v in timed}
        for c in int8 + ov:
            if c["candidate"] in timed:
                c["timing"] = timed[c["candidate"]]
    int8_description, int8_session = None, None
    if "int8" in plan:
        best = quantize.pick_int8(int8)
        results["int8_calibration"] = calib.to_dict()
        results["int8_pick"] = quantize.pick_reason(int8, best)
        if best is None:
            rejected["int8"] = "no INT8 candidate passed parity: " + "; ".join(
                f"{c['candidate']}: {c['parity'].get('reason')}" for c in int8)
        else:
            paths["int8"] = tmp / planner.VARIANT_FILES["int8"]
            best["path"].replace(paths["int8"])
            results["int8"] = dict(best["parity"], candidate=best["candidate"], method=best["method"],
                                   why=results["int8_pick"])
            int8_description, int8_session = best["description"], best.get("session")
            if "timing" in best:
                timings["int8"] = best["timing"]
        results["int8_candidates"] = [
            {k: v for k, v in c.items() if k != "path"} | {"chosen": c is best} for c in int8]
    if ov:
        ship_openvino(ov, paths, timings, results, rejected, tmp, do_measure)
    shutil.rmtree(work)
    if do_measure:
        measurements = {"machine": measure.machine(), "threads": threads, "method": (
            "session.run only, variants interleaved over 3 rounds; batch 1 over 50 validation "
            "texts (p50/p90 of 150 runs), batch 32 over 256 rows sorted by length"), CPU: timings,
            "fastest": {CPU: measure.fastest(timings)},
            "skipped": {"fp16": "FP16 is not measured on CPU (not recommended there)"}
            if "fp16" in paths else {}}

    defaults, why = {}, {}
    for p in planner.PROVIDERS:
        v, reason = planner.choose_default(p, paths, timings if p == CPU else None)
        if v:
            defaults[p], why[p] = v, reason
    measurements["default_reasons"] = why

    write_json(tmp / "labels.json", {"labels": list(model.spec.labels)})
    write_json(tmp / "postprocess.json", post)
    triton_info = None
    if want_triton:
        tv = want_triton if isinstance(want_triton, str) else defaults.get(planner.CUDA, "fp32")
        if tv not in paths:
            raise UsageError(f"triton variant {tv!r} was not shipped",
                             hint=rejected.get(tv, "add it to variants"))
        say(f"writing the Triton model repository ({tv})")
        triton_info = triton_repo.write_repository(tmp, target.name, paths[tv], variant=tv,
                                              inputs=graph["inputs"], output=graph["output"])
    shipped = {v: {"file": planner.VARIANT_FILES[v], "description": planner.VARIANT_DESCRIPTIONS[v],
                   "size": paths[v].stat().st_size} for v in planner.VARIANTS if v in paths}
    if int8_description and "int8" in shipped:
        shipped["int8"]["description"] = int8_description
        if int8_session:
            shipped["int8"]["session"] = int8_session  # the runtime opens it the way it was timed
    if planner.OPENVINO in shipped:
        shipped[planner.OPENVINO].update(description=results[planner.OPENVINO]["description"],
                                         engine="openvino", size=paths[planner.OPENVINO].stat().st_size
                                         + paths[planner.OPENVINO].with_suffix(".bin").stat().st_size)
    manifest = {
        "schema_version": bundle.SCHEMA_VERSION, "name": target.name, "version": target.version,
        "task": run.task, "kind": model.spec.kind,
        "base_model": model.spec.base_model or str(run.config.get("base_model", "")),
        "labels": list(model.spec.labels), "inputs": graph["inputs"], "output": graph["output"],
        "tokenizer": tok, "variants": shipped, "defaults": defaults, "rejected": rejected,
        "parity": results, "measurements": measurements,
        "providers": planner.provider_table(paths), "run": run_section(run),
        "versions": library_versions(), "triton": triton_info,
        "created": runinfo.utc_now(),
        "files": {}}
    (tmp / "README.md").write_text(card.model_card(manifest), encoding="utf-8")
    manifest["files"] = bundle.file_table(tmp)
    checked = bundle.BundleManifest.from_dict(json.loads(json.dumps(manifest, default=str)))
    write_json(tmp / bundle.MANIFEST, checked.to_dict())


def openvino_candidates(paths, int8, work, data, threads, max_drop, say, rejected) -> list[dict]:
    """OpenVINO IRs of the plain FP32 graph and of each static INT8 (QDQ) graph that passed parity
    (OpenVINO runs QDQ graphs in INT8; it cannot read the dynamic graphs' contrib ops), each
    through the parity gate at the precision OpenVINO picks on this CPU."""
    from ..runtime import ov_runner

    reason = ov_runner.unavailable()
    if reason:
        rejected[planner.OPENVINO] = f"{reason}: not built ({ov_runner.INSTALL_HINT})"
        say(f"no openvino variant: {reason}")
        return []
    sources = [("fp32", paths["fp32"], "plain FP32 graph")]
    sources += [(c["candidate"], c["path"], "static INT8 QDQ graph") for c in int8
                if c["method"] == "static" and c["parity"].get("passed")]
    out = []
    for source, src, what in sources:
        name = f"openvino[{source}]"
        say(f"converting {name} (OpenVINO IR)")
        dst = work / f"ov-{len(out)}.xml"
        info = ov_runner.convert(src, dst)
        runner = ov_runner.OpenVINORunner(dst, threads)
        res = parity.check_lossy(planner.OPENVINO, data, parity.ort_outputs(dst, data, threads, runner),
                                 max_metric_drop=max_drop)
        res["inference_precision"] = runner.precision
        del runner
        out.append({"candidate": name, "source": source, "path": dst, "parity": res,
                    "description": f"OpenVINO {info['openvino']} IR of the {what} ({source}), "
                                   f"{runner_precision_words(res['inference_precision'])}, for CPU",
                    "size": dst.stat().st_size + dst.with_suffix(".bin").stat().st_size})
    return out


def runner_precision_words(precision: str) -> str:
    return {"bf16": "computed in BF16 by OpenVINO on this CPU (AMX / AVX-512 BF16)",
            "f32": "computed in FP32"}.get(precision, f"inference precision {precision}")


def ship_openvino(ov, paths, timings, results, rejected, tmp, measured) -> None:
    """Keep the best OpenVINO candidate only where it was measured faster than every onnxruntime
    variant at batch 1 or at batch 32; say why in the manifest either way."""
    results["openvino_candidates"] = [{k: v for k, v in c.items() if k != "path"} for c in ov]
    passed = [c for c in ov if c["parity"].get("passed")]
    if not passed:
        rejected[planner.OPENVINO] = "no OpenVINO candidate passed parity: " + "; ".join(
            f"{c['candidate']}: {c['parity'].get('reason')}" for c in ov)
        return
    timed = [c for c in passed if c.get("timing")]
    if not measured or not timed or not timings:
        rejected[planner.OPENVINO] = ("not measured (--no-measure): OpenVINO is shipped only where "
                                      "the export measured it faster than onnxruntime")
        return
    b1 = min(timings, key=lambda v: timings[v]["batch1_p50_ms"])
    b32 = max(timings, key=lambda v: timings[v]["batch32_items_per_s"])
    wins_b1 = [c for c in timed if c["timing"]["batch1_p50_ms"] < timings[b1]["batch1_p50_ms"]]
    wins_b32 = [c for c in timed if c["timing"]["batch32_items_per_s"] > timings[b32]["batch32_items_per_s"]]
    # a batch-1 win first (the latency a request sees, the rule every CPU default follows), then
    # a batch-32 win (bulk scoring); among the winners the most accurate of the fastest
    if wins_b1:
        best = quantize.pick_int8(wins_b1)
    elif wins_b32:
        best = quantize.pick_int8(wins_b32, by="batch32_items_per_s")
    else:
        best = None

    def versus(c):
        t = c["timing"]
        return (f"{c['candidate']} batch-1 p50 {t['batch1_p50_ms']:.2f} ms vs {b1} "
                f"{timings[b1]['batch1_p50_ms']:.2f} ms; batch 32 {t['batch32_items_per_s']:.0f} vs {b32} "
                f"{timings[b32]['batch32_items_per_s']:.0f} items/s")
    for c in results["openvino_candidates"]:
        c["chosen"] = best is not None and c["candidate"] == best["candidate"]
    if best is None:
        rejected[planner.OPENVINO] = ("measured slower than onnxruntime on this machine ("
                                      + "; ".join(versus(c) for c in timed) + ")")
        return
    t = best["timing"]
    faster_b1 = any(c is best for c in wins_b1)
    faster_b32 = any(c is best for c in wins_b32)
    dst = tmp / planner.VARIANT_FILES[planner.OPENVINO]
    best["path"].replace(dst)
    best["path"].with_suffix(".bin").replace(dst.with_suffix(".bin"))
    paths[planner.OPENVINO] = dst
    timings[planner.OPENVINO] = t
    faster = " and ".join(w for w, f in (("batch 1", faster_b1), ("batch 32", faster_b32)) if f)
    results[planner.OPENVINO] = dict(best["parity"], candidate=best["candidate"],
                                     description=best["description"],
                                     why=f"passed parity and measured faster than every onnxruntime "
                                         f"variant at {faster} ({versus(best)})")


def tokenizer_info(encoder_dir: Path, model) -> dict:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(encoder_dir)
    limits = [int(model.spec.max_length)]
    if 0 < (hf.model_max_length or 0) < 1_000_000:
        limits.append(int(hf.model_max_length))
    mpe = getattr(model.encoder.config, "max_position_embeddings", None)
    if mpe:
        limits.append(int(mpe))
    pad_id = hf.pad_token_id if hf.pad_token_id is not None else 0
    return {"file": "tokenizer.json", "max_length": min(limits), "pad_id": int(pad_id),
            "pad_token": hf.pad_token, "truncation": "longest_first", "padding": "per batch"}


def postprocess_config(model, run) -> dict:
    kind, cfg = model.spec.kind, run.config
    post = {"kind": kind, "labels": list(model.spec.labels), "pairs": run.uses_pairs,
            "output": onnx_export.OUTPUT_NAMES[kind]}
    if kind == "classification":
        post["activation"] = "softmax"
    elif kind == "multilabel":
        post.update(activation="sigmoid", threshold=float(cfg.get("threshold", 0.5)))
    elif kind == "pair":  # trained with BCE-with-logits on scores in [0, 1]
        post.update(activation="sigmoid", threshold=float(cfg.get("threshold", 0.5)))
    elif kind == "embedding":
        post.update(activation="none", normalized=True)
    else:
        post.update(activation="softmax", token_labels="first sub-token of each whitespace word")
    return post


def run_section(run) -> dict:
    out = {"id": run.run_id, "task": run.task, "created": run.run.get("created"),
           "path": str(run.path), "mode": run.config.get("mode"), "metrics": run.metrics,
           "data_sha256": run.run.get("data_sha256"), "versions": run.run.get("versions"),
           "parity_split": run.split, "parity_rows": len(run.rows)}
    if isinstance(run.run.get("distill"), dict):
        out["distilled_from"] = distill_section(run.run["distill"], run.metrics)
    return out


def distill_section(info: dict, metrics: dict) -> dict:
    """What a distilled student came from, and its accuracy delta against the teacher per split."""
    teacher = info.get("teacher_metrics") or {}
    delta = {}
    for split, values in (metrics or {}).items():
        t, s = (teacher.get(split) or {}).get("accuracy"), (values or {}).get("accuracy")
        if isinstance(t, (int, float)) and isinstance(s, (int, float)):
            delta[split] = {"student": s, "teacher": t, "delta_points": round(100.0 * (s - t), 3)}
    return {"teacher": info.get("teacher_id"), "teacher_layers": info.get("teacher_layers"),
            "layer_map": info.get("layer_map"), "temperature": info.get("temperature"),
            "alpha": info.get("alpha"), "accuracy_vs_teacher": delta}


def library_versions() -> dict:
    import onnxruntime

    out = runinfo.library_versions()
    out["onnxruntime"] = onnxruntime.__version__  # whichever package (-gpu or not) provides it
    return out


