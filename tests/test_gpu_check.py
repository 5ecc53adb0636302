"""The GPU check's CPU side: the dry run of bench/gpu_check.py, the carry/stage round trip of
bench/gpu_carry.py + bench/gpu_stage.py, and the import shim bench/_tf_path.py."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- the dry run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dry_run(tiny_encoder_dir, tmp_path_factory):
    import torch

    check = _load("gpu_check")
    out = tmp_path_factory.mktemp("gpu-out")
    from tuneforge.train import report

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "confusion_png", lambda *a, **k: None)  # 77-class plots: seconds, not tested here
        try:
            rc = check.main(["--dry-run", "--base-model", tiny_encoder_dir, "--out", str(out),
                             "--work", str(tmp_path_factory.mktemp("gpu-work")), "--n1", "4", "--n-bulk", "32"])
        finally:
            torch.set_num_threads(threads)
    return check, rc, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_dry_run_reports_every_step_ran_or_skipped_with_a_reason(dry_run):
    check, rc, rep, md = dry_run
    assert rc == 0 and rep["mode"] == "dry-run (CPU)"
    assert list(rep["steps"]) == list(check.STEPS)
    for name, step in rep["steps"].items():
        assert step["status"] in ("ran", "skipped"), (name, step)
        if step["status"] == "skipped":
            assert step["reason"], name
        assert step["budget_s"] <= check.BUDGETS[name]
    ran = {n for n, s in rep["steps"].items() if s["status"] == "ran"}
    # everything that can run on a CPU did; every GPU part was skipped, saying why
    assert ran == {"env", "train_bf16", "train_fp32", "export", "predictor_load", "infer_torch_fp32",
                   "infer_ort_cpu_fp32", "parity"}
    for gpu in ("infer_torch_fp16", "infer_ort_cuda_fp32", "infer_ort_cuda_fp16", "infer_ort_cuda_fp16_run",
                "infer_trt_fp16"):
        assert "dry run on CPU" in rep["steps"][gpu]["reason"]
    for name in check.STEPS:
        assert f"| {name} |" in md


def test_dry_run_numbers_come_from_real_runs(dry_run):
    _, _, rep, md = dry_run
    steps = rep["steps"]
    tr = steps["train_fp32"]["result"]
    assert tr["device"] == "cpu" and tr["autocast"] == "fp32" and tr["steps"] >= 1
    assert tr["examples_per_s"] > 0 and 0 <= tr["test_accuracy"] <= 1
    assert steps["export"]["result"]["variants"][0] == "fp32"
    cpu = steps["infer_ort_cpu_fp32"]["result"]
    assert cpu["provider"] == "CPUExecutionProvider" and cpu["io_binding"] is False
    assert cpu["batch1"]["n"] == 8 and cpu["batch1"]["p50_ms"] <= cpu["batch1"]["p95_ms"]
    assert cpu["batch32"]["n"] == 32 and cpu["batch128"]["items_per_s"] > 0
    # the exported FP32 graph gives the torch model's labels
    pair = steps["parity"]["result"]["pairs"]["infer_ort_cpu_fp32 vs infer_torch_fp32"]
    assert pair["label_agreement"] == 1.0 and pair["max_abs_logit_diff"] < 1e-3
    assert "infer_ort_cuda_fp16 vs infer_ort_cuda_fp32" in steps["parity"]["result"]["not_compared"]
    # Predictor.load's choice and its fallback reason are recorded, not guessed
    default = steps["predictor_load"]["result"]["default"]
    assert default["provider"] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in default["wanted"]:  # onnxruntime-gpu without a GPU
        assert "CUDAExecutionProvider" in default["fallback_reason"]
    # no GPU number is invented: every goal is unmeasured, with the reason
    assert all(g["value"] is None and g["met"] is None and g["note"].startswith("not measured")
               for g in rep["goals"])
    assert "| goal |" in md


def test_a_step_over_its_budget_is_stopped_and_recorded(tmp_path):
    check = _load("gpu_check")
    args = check.parse(["--out", str(tmp_path), "--work", str(tmp_path / "w"), "--budget-s", "30"])
    ck = check.Check(args, [])

    def slow():
        import time

        while True:
            time.sleep(0.05)

    check.BUDGETS["env"], saved = 0.3, check.BUDGETS["env"]
    try:
        check.MIN_STEP, min_saved = 0.1, check.MIN_STEP
        ck.run("env", slow)
    finally:
        check.BUDGETS["env"], check.MIN_STEP = saved, min_saved
    step = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]["env"]
    assert step["status"] == "timed_out" and "budget" in step["reason"] and step["seconds"] < 5
    ck.deadline = 0  # the whole run's budget is gone: later steps are skipped, saying so
    ck.run("parity", lambda: 1 / 0)
    assert ck.steps["parity"]["status"] == "skipped" and "budget" in ck.steps["parity"]["reason"]


# -- carrying onnxruntime-gpu and the weights ----------------------------------------------------
def _fake_wheel(path: Path) -> Path:
    files = {"fakeort/__init__.py": b"VERSION = '1.0'\n", "fakeort/blob.bin": os.urandom(1_200_000),
             "fakeort-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: fakeort\nVersion: 1.0\n",
             "fakeort-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
                     f"{len(d)}\n" for n, d in files.items()) + "fakeort-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr("fakeort-1.0.dist-info/RECORD", record)
    return path


@pytest.fixture(scope="module")
def carried(tiny_encoder_dir, tmp_path_factory):
    carry = _load("gpu_carry")
    root = tmp_path_factory.mktemp("carry")
    wheel = _fake_wheel(root / "fakeort-1.0-py3-none-any.whl")
    out = root / ".gpu_carry"
    assert carry.main(["--wheel", str(wheel), "--model", tiny_encoder_dir, "--out", str(out),
                       "--limit-mib", "1.5", "--margin-mib", "0.1", "--tree-bytes", "200000",
                       "--xz-preset", "1"]) == 0
    return carry, out, json.loads((out / "plan.json").read_text()), json.loads((out / "calls.json").read_text())


def test_carry_parts_fit_the_per_call_limit(carried):
    carry, out, plan, calls = carried
    limit = plan["limit_bytes"]
    assert len(plan["parts"]) >= 3  # 1.2 MB of random bytes + a 2 MB FP16 model over ~1 MiB calls
    assert sum(p["size"] for p in plan["parts"]) == plan["archive"]["size"]
    for n, part in enumerate(plan["parts"], 1):
        folder = out / f"call{n}"
        assert sorted(f.name for f in folder.iterdir()) == [part["name"], "plan.json"]
        assert plan["tree_bytes"] + carry.folder_bytes(folder) + plan["margin_bytes"] <= limit
    assert len(plan["parts"]) == math.ceil(plan["archive"]["size"] / (limit - plan["tree_bytes"]
                                           - plan["margin_bytes"] - carry.PLAN_ALLOWANCE))
    assert [c["carry"] for c in calls] == [[f"{os.path.relpath(out, carry.ROOT)}/call{n}"]
                                           for n in range(1, len(calls) + 1)]
    assert all("gpu_stage.py receive" in c["command"] for c in calls)
    assert "bench/gpu_check.sh --stage /root/tf-stage" in calls[-1]["command"]
    assert all("gpu_check.sh" not in c["command"] for c in calls[:-1])
    assert all(len(c["command"]) < 2000 for c in calls)


def test_real_sizes_fit_this_checkout():
    """onnxruntime-gpu 1.31.1's contents + MiniLM FP16 packed as gpu_carry.py packs them came to
    about 245 MB here; beside this checkout's working tree that is 4 calls, each under 64 MiB."""
    carry = _load("gpu_carry")
    tree = carry.tree_bytes()
    assert tree < 16 * carry.MIB  # if the tree grows, fewer bytes fit per call
    n, part = carry.plan_parts(245_000_000, tree, 64 * carry.MIB, carry.MIB)
    assert tree + part + carry.PLAN_ALLOWANCE + carry.MIB <= 64 * carry.MIB
    assert n * part >= 245_000_000 and n == math.ceil(245_000_000 / (64 * carry.MIB - tree - carry.MIB
                                                                    - carry.PLAN_ALLOWANCE))


def test_stage_reassembles_verifies_and_widens(carried, tiny_encoder_dir, tmp_path):
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModel

    stage_mod = _load("gpu_stage")
    _, out, plan, _ = carried
    stage, site, model = tmp_path / "stage", tmp_path / "site", tmp_path / "model"
    n = len(plan["parts"])
    for k in range(1, n):  # all but the last call: install refuses, naming what is missing
        assert stage_mod.main(["receive", str(out / f"call{k}"), str(stage)]) == 0
    assert stage_mod.main(["install", str(stage), "--site", str(site), "--model", str(model)]) == 2
    assert stage_mod.main(["receive", str(out / f"call{n}"), str(stage)]) == 0
    assert stage_mod.main(["install", str(stage), "--site", str(site), "--model", str(model)]) == 0
    assert (site / "fakeort" / "blob.bin").stat().st_size == 1_200_000
    original = load_file(str(Path(tiny_encoder_dir) / "model.safetensors"))
    widened = load_file(str(model / "model.safetensors"))
    assert set(widened) == set(original)
    for name, arr in original.items():
        assert widened[name].dtype == arr.dtype
        if arr.dtype.kind == "f":
            assert np.array_equal(widened[name], arr.astype(np.float16).astype(arr.dtype))
        else:
            assert np.array_equal(widened[name], arr)
    enc = AutoModel.from_pretrained(model)  # a normal HF folder again
    assert isinstance(enc, torch.nn.Module) and (model / "tokenizer.json").is_file()
    assert stage_mod.main(["install", str(stage), "--site", str(site), "--model", str(model)]) == 0


def test_stage_refuses_a_damaged_part(carried, tmp_path):
    stage_mod = _load("gpu_stage")
    _, out, plan, _ = carried
    stage = tmp_path / "stage"
    for k in range(1, len(plan["parts"]) + 1):
        stage_mod.main(["receive", str(out / f"call{k}"), str(stage)])
    victim = stage / plan["parts"][1]["name"]
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    assert stage_mod.main(["install", str(stage), "--site", str(tmp_path / "s"),
                           "--model", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "s").exists()


# -- importing tuneforge from a bare checkout ---------------------------------------------------
def test_shim_imports_the_checkout_and_its_plugins_without_an_install(tmp_path):
    """python -S: no site processing, so the editable install's finder is not active; the
    checkout's core/ and plugins/ must still import and the support-intents task be found."""
    code = ("import sys; sys.path.insert(0, %r); import _tf_path; print(_tf_path.install()); "
            "import tuneforge, tuneforge.plugins.support_bot as sb; "
            "from tuneforge.tasks import get_task; print(tuneforge.__file__); print(sb.__file__); "
            "print(get_task('support-intents').data_files['train'])" % str(BENCH))
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    how, core, plugin, data = done.stdout.strip().splitlines()[-4:]
    assert how.startswith("import finder")
    root = BENCH.parent
    assert Path(core) == root / "core" / "__init__.py"
    assert Path(plugin) == root / "plugins" / "support_bot" / "__init__.py"
    assert Path(data) == root / "plugins" / "support_bot" / "data" / "train.csv"


def test_shim_writes_entry_points_from_pyproject():
    from importlib import metadata

    import tomllib

    shim = _load("_tf_path")
    site = shim._write_dist_info()
    dist = next(iter(metadata.distributions(path=[str(site)])))
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "tuneforge"}
    project = tomllib.loads((BENCH.parent / "pyproject.toml").read_text())["project"]
    assert dist.metadata["Name"] == "tuneforge" and eps == project["entry-points"]["tuneforge"]
