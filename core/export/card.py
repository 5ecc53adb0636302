"""The bundle's README.md: a model card written from the manifest's facts."""

from __future__ import annotations

from .planner import BULK_ROWS, bulk_default


def _num(v, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt) if isinstance(v, (int, float)) else str(v)


def model_card(m: dict) -> str:
    """Markdown for a manifest dict (before its file table is final)."""
    lines = [f"# {m['name']} {m['version']}", "",
             f"A **{m['kind']}** model for task `{m['task']}`, fine-tuned from `{m['base_model']}` "
             f"and exported by tuneforge on {m['created']}.", ""]
    run = m.get("run") or {}
    lines += ["## Training run", "", f"- run id: `{run.get('id')}`"]
    for split, values in (run.get("metrics") or {}).items():
        if isinstance(values, dict):
            shown = ", ".join(f"{k} {_num(v)}" for k, v in values.items()
                              if isinstance(v, (int, float)))
            lines.append(f"- {split}: {shown or '-'}")
    student = run.get("distilled_from")
    if student:
        lines.append(f"- distilled student: {len(student.get('layer_map') or [])} of the teacher's "
                     f"{student.get('teacher_layers')} layers ({student.get('layer_map')}) from run "
                     f"`{student.get('teacher')}`, T {student.get('temperature')}, alpha {student.get('alpha')}")
        for split, d in (student.get("accuracy_vs_teacher") or {}).items():
            lines.append(f"  - {split} accuracy {d['student']:.4f} vs teacher {d['teacher']:.4f} "
                         f"({d['delta_points']:+.2f} points)")
    labels = m.get("labels") or []
    if labels:
        shown = ", ".join(f"`{x}`" for x in labels[:20]) + (" ..." if len(labels) > 20 else "")
        lines.append(f"- {len(labels)} labels: {shown}")
    lines += ["", "## Variants", "",
              "| variant | file | parity | CPU batch-1 p50 (ms) | CPU batch-32 (items/s) |",
              "| --- | --- | --- | --- | --- |"]
    cpu = (m.get("measurements") or {}).get("CPUExecutionProvider", {})
    for v, info in m["variants"].items():
        p = (m.get("parity") or {}).get(v, {})
        if "drop_points" in p:
            check = (f"{p['agreement_metric']} {_num(p['agreement'])}, {p['metric']} drop "
                     f"{_num(p['drop_points'], '.2f')} pts")
        else:
            check = f"max abs diff {_num(p.get('max_abs_diff'), '.2e')}"
        t = cpu.get(v, {})
        lines.append(f"| {v} | `{info['file']}` | {check} | {_num(t.get('batch1_p50_ms'), '.2f')} "
                     f"| {_num(t.get('batch32_items_per_s'), '.1f')} |")
    for v, why in (m.get("rejected") or {}).items():
        lines.append(f"| ~~{v}~~ | not shipped | {why} | | |")
    lines += _candidates(m, "int8_candidates", "INT8 candidates")
    lines += _int8_notes(m)
    lines += _candidates(m, "openvino_candidates", "OpenVINO candidates (run by OpenVINO, not onnxruntime)")
    ov = (m.get("parity") or {}).get("openvino") or {}
    if ov.get("why"):
        lines += ["", f"Why `openvino` ships: {ov['why']}; precision {ov.get('inference_precision')}. "
                      "A runtime without OpenVINO (`pip install 'tuneforge[openvino]'`) serves the fastest "
                      "measured onnxruntime variant instead."]
    lines += ["", "Defaults per execution provider (what `Predictor.load` picks):", ""]
    for p, v in m["defaults"].items():
        bulk = bulk_default(m.get("measurements"), m["variants"], v, p)
        t = (m.get("measurements") or {}).get(p) or {}
        lines.append(f"- {p}: `{v}`" + (
            f"; bulk calls ({BULK_ROWS} texts or more): `{bulk}`, measured "
            f"{_num(t[bulk]['batch32_items_per_s'], '.0f')} vs {_num(t[v]['batch32_items_per_s'], '.0f')} "
            "items/s at batch 32 (`bulk_variant=None` keeps every call on the default)" if bulk else ""))
    machine = (m.get("measurements") or {}).get("machine")
    if machine:
        lines += ["", f"Timings were taken on the export machine ({machine.get('cpu')}, "
                      f"{machine.get('cpus_available')} CPUs available); re-measure on the "
                      "serving hardware before trusting them there."]
    lines += ["", "## Use", "", "```python", "from tuneforge.runtime import Predictor", "",
              f'p = Predictor.load("exports/{m["name"]}/{m["version"]}")',
              'print(p.predict(["some text"])[0].to_dict())', "```", "",
              "HTTP: `tuneforge serve <bundle>` (or `tuneforge.serve.build_server(path)`): "
              '`POST /v1/predict` with `{"texts": [...]}`.', ""]
    if m.get("triton"):
        lines += ["Triton: `tritonserver --model-repository <bundle>/triton` "
                  f"(model `{m['triton']['model']}`, variant `{m['triton']['variant']}`); clients "
                  "send token ids made with `tokenizer.json`.", ""]
    cal = (m.get("parity") or {}).get("calibration") or {}
    if cal.get("temperature"):
        lines += ["## Calibrated probabilities", "",
                  f"Class probabilities are softmax(logits / {cal['temperature']:g}): the temperature was fitted on "
                  f"{cal['rows']} validation rows (NLL {cal['nll'][0]} -> {cal['nll'][1]}, ECE {cal['ece'][0]} -> "
                  f"{cal['ece'][1]}); it is in `postprocess.json`.", ""]
    tok = m.get("tokenizer") or {}
    lines += ["## Limits", "",
              f"- Inputs are truncated to {tok.get('max_length')} tokens.",
              "- Quantised variants were checked against PyTorch on the run's "
              f"{run.get('parity_split', 'validation')} split only.",
              "- Every file is listed with its sha256 in `manifest.json`; loading refuses a "
              "modified bundle.", ""]
    return "\n".join(lines)


def _candidates(m: dict, key: str, title: str) -> list[str]:
    """Every candidate of one kind the export built: accuracy delta, speed, which one shipped."""
    parity = m.get("parity") or {}
    cands = parity.get(key) or []
    if not cands:
        return []
    lines = ["", f"### {title}", "",
             "| candidate | parity | accuracy delta vs PyTorch (pts) | CPU batch-1 p50 (ms) "
             "| CPU batch-32 (items/s) | shipped |", "| --- | --- | --- | --- | --- | --- |"]
    for c in cands:
        p, t = c.get("parity") or {}, c.get("timing") or {}
        check = "passed" if p.get("passed") else "rejected"
        delta = None if p.get("drop_points") is None else -p["drop_points"]
        lines.append(f"| `{c['candidate']}` | {check}, {p.get('agreement_metric')} "
                     f"{_num(p.get('agreement'))} | {_num(delta, '+.2f')} "
                     f"| {_num(t.get('batch1_p50_ms'), '.2f')} "
                     f"| {_num(t.get('batch32_items_per_s'), '.1f')} | {'yes' if c.get('chosen') else ''} |")
    return lines


def _int8_notes(m: dict) -> list[str]:
    parity, lines = m.get("parity") or {}, []
    if not parity.get("int8_candidates"):
        return lines
    calib = parity.get("int8_calibration") or {}
    if calib.get("rows"):
        lines += ["", f"Static candidates were calibrated on {calib['rows']} training texts "
                      f"(`{calib.get('source')}`, parity rows excluded)."]
    elif calib.get("skipped"):
        lines += ["", f"No static INT8 candidates: {calib['skipped']}."]
    if parity.get("int8_pick"):
        lines += ["", f"Why: {parity['int8_pick']}."]
    return lines
