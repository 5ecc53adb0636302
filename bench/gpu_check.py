"""The GPU path in one run: CUDA training, onnxruntime CUDA / TensorRT FP16 with IO binding, parity.

    python bench/gpu_check.py --base-model DIR [--out DIR] [--budget-s 420] [--dry-run] [--steps a,b]

Everything side by side on BANKING77 (the copy in plugins/support_bot/data, so it travels with the
working tree), through tuneforge's own API:

  env                 nvidia-smi, torch / onnxruntime versions, providers, what each GPU provider needs
  train_bf16          ``train(config_for_task("support-intents", mode="full", epochs=1))`` on CUDA,
                      precision auto (bf16 autocast on a bf16 GPU); examples/s, steps/s, test accuracy
  train_fp32          the same with precision fp32
  export              ``export_run(variants=["fp32", "fp16"])`` of the bf16 run (parity gate on CPU)
  predictor_load      what ``Predictor.load`` chooses by default / for cuda / for tensorrt, and why
  infer_*             batch-1 p50/p95 (tokenisation included) over --n1 test texts, batch 32 / 128
                      items/s over the test set, test accuracy: torch FP32 and FP16 eager (HF
                      tokenizer, file-order batches: the baseline a user has; length-sorted batches
                      too), onnxruntime CUDA FP32 / FP16 through the Predictor (IO binding), FP16
                      with plain session.run, onnxruntime CPU FP32, TensorRT FP16
  parity              FP16 against FP32 on the GPU: label agreement, accuracy delta (points)

Each step has a time budget (capped by what is left of --budget-s); a step that runs out is
stopped (SIGALRM) and recorded as ``timed_out``; a step stuck in native code past its budget
+ 30 s ends the process after the results are written.  Results: ``$OUT/gpu_check.json`` and
``$OUT/gpu_check.md`` (``$OUT`` unset: bench/results/gpu), rewritten after every step.

Without a CUDA device, or with ``--dry-run``: tiny sizes, everything that can runs on the CPU,
each GPU part is skipped with the reason.  No number is ever estimated: a part that did not run
has no number.  How to run it on a lent machine: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tf_path  # noqa: E402  (makes `import tuneforge` work from a bare checkout)

SHIM = _tf_path.install()
ROOT = _tf_path.ROOT
DATA = ROOT / "plugins" / "support_bot" / "data"
CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"

# This project's CPU training number (bench/RESULTS.md, "Training speed", run 4): not measured here.
CPU_REFERENCE = {"examples_per_s": 158.8, "precision": "bf16 autocast (AMX)",
                 "source": "bench/RESULTS.md training speed run 4: tuneforge --mode full on BANKING77, "
                           "batch 32, max length 64, 2 cores of an Intel Xeon (AVX-512 VNNI, AMX), "
                           "bench/train_speed.py"}
GOALS = {"ort_fp16_b1_vs_torch_fp16": 2.0, "ort_fp16_b32_vs_torch_fp16": 1.5,
         "fp16_accuracy_points": 0.3, "cuda_train_vs_cpu": 10.0}
# seconds; each is capped by what is left of --budget-s (minus RESERVE for writing results)
BUDGETS = {"env": 30, "train_bf16": 100, "train_fp32": 100, "export": 120, "predictor_load": 40,
           "infer_torch_fp32": 45, "infer_torch_fp16": 45, "infer_ort_cuda_fp32": 45,
           "infer_ort_cuda_fp16": 45, "infer_ort_cuda_fp16_run": 30, "infer_ort_cpu_fp32": 40,
           "infer_trt_fp16": 90, "parity": 15}
STEPS = tuple(BUDGETS)
ENGINES = [s for s in STEPS if s.startswith("infer_")]
RESERVE, HARD_GRACE, MIN_STEP = 10.0, 30.0, 5.0
# what the check imports (reported by `env`; all on the lent H200's image except onnxruntime-gpu)
IMPORTS = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "onnx", "onnxruntime",
           "onnxruntime.transformers.optimizer", "pluggy", "rich", "matplotlib")


class StepTimeout(Exception):
    pass


class Skip(Exception):
    """A step that cannot run here; the message is the reason recorded."""


@contextlib.contextmanager
def time_box(seconds: float):
    """Raise StepTimeout in the main thread after ``seconds`` (Python code only; see Watchdog)."""
    def handler(signum, frame):
        raise StepTimeout(f"stopped at its {seconds:.0f} s budget")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Check:
    """Runs the steps, keeps their results, writes the JSON and Markdown after each one."""

    def __init__(self, args, argv):
        self.args = args
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + args.budget_s
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="tf-gpu-check-"))
        self.steps: dict[str, dict] = {}
        self.outputs: dict = {}        # engine step -> logits over the bulk texts, in text order
        self.state: dict = {}          # run dirs, bundle path
        self.current: str | None = None
        self.lock = threading.Lock()
        self.report = {"schema": 1, "command": " ".join(["python", "bench/gpu_check.py", *argv]),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "budget_s": args.budget_s, "tuneforge_import": SHIM}

    # -- bookkeeping ---------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {msg}", flush=True)

    def run(self, name: str, fn) -> None:
        budget = min(BUDGETS[name] * self.args.budget_scale, self.deadline - time.perf_counter() - RESERVE)
        entry = {"status": None, "budget_s": round(max(budget, 0), 1)}
        self.steps[name] = entry
        if self.args.steps and name not in self.args.steps:
            entry.update(status="skipped", reason="not selected (--steps)")
            return
        if budget < MIN_STEP:
            entry.update(status="skipped", reason=f"the run's {self.args.budget_s:.0f} s budget "
                                                  f"was used up before this step")
            self.save()
            return
        self.say(f"{name}: start (budget {budget:.0f} s)")
        self.current = name
        watchdog = threading.Timer(budget + HARD_GRACE, self._hard_stop, args=(name, budget))
        watchdog.daemon = True
        watchdog.start()
        t = time.perf_counter()
        try:
            with time_box(budget):
                result = fn()
            entry.update(status="ran", result=result)
        except Skip as why:
            entry.update(status="skipped", reason=str(why))
        except StepTimeout as why:
            entry.update(status="timed_out", reason=str(why))
        except Exception as exc:  # one broken step must not lose the others
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                         traceback=traceback.format_exc(limit=8))
        finally:
            watchdog.cancel()
            self.current = None
            free_device_memory()
        entry["seconds"] = round(time.perf_counter() - t, 2)
        self.say(f"{name}: {entry['status']} in {entry['seconds']} s"
                 + (f" ({entry['reason']})" if entry.get("reason") else ""))
        self.save()

    def _hard_stop(self, name: str, budget: float) -> None:  # pragma: no cover - needs a stuck step
        if self.current != name:
            return
        self.steps[name].update(status="timed_out", seconds=round(budget + HARD_GRACE, 1),
                                reason=f"stuck in native code past its {budget:.0f} s budget + "
                                       f"{HARD_GRACE:.0f} s; the process was ended here")
        for rest in STEPS:
            self.steps.setdefault(rest, {"status": "skipped", "reason": f"not reached: {name} hung"})
        self.save()
        print(f"gpu_check: {name} hung; results written to {self.out}", file=sys.stderr, flush=True)
        os._exit(3)

    def save(self) -> None:
        with self.lock:
            self.report.update(elapsed_s=round(self.elapsed(), 1), steps=self.steps,
                               goals=goals(self.steps))
            (self.out / "gpu_check.json").write_text(json.dumps(self.report, indent=2, default=str) + "\n")
            (self.out / "gpu_check.md").write_text(markdown(self.report))


# -- helpers -------------------------------------------------------------------------------
def free_device_memory() -> None:
    """Between steps: drop the last step's models and sessions and hand their CUDA memory back."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc

        gc.collect()
        torch.cuda.empty_cache()
def small_data(work: Path, train_rows: int, test_rows: int) -> dict:
    """Every k-th row of the bundled train/test CSVs (the dry run's data), as training overrides."""
    out = {}
    for split, n in (("train", train_rows), ("test", test_rows)):
        with open(DATA / f"{split}.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        step = max(1, len(rows) // n)
        path = work / "data" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["text", "category"])
            w.writeheader()
            w.writerows(rows[::step][:n])
        out["data" if split == "train" else "test"] = str(path)
    return out | {"columns": {"text": "text", "label": "category"}}


def read_test(n: int | None) -> tuple[list[str], list[str]]:
    """The BANKING77 test set, or every k-th row of it (``n`` rows: all intents, as small_data)."""
    with open(DATA / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows[::max(1, len(rows) // n)][:n] if n else rows
    return [r["text"] for r in rows], [r["category"] for r in rows]


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(values) * 1000, q)), 3)


def cuda_reason() -> str | None:
    """None when torch sees a CUDA device, else why not."""
    import torch

    if not torch.cuda.is_available():
        return (f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False; "
                f"built for CUDA {torch.version.cuda})")
    return None


def nvidia_smi() -> dict:
    fields = "name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip()[:300]}
    return [dict(zip(fields.split(","), (v.strip() for v in line.split(","))))
            for line in out.stdout.strip().splitlines()]


# -- steps ---------------------------------------------------------------------------------
def step_env(ck: Check) -> dict:
    import importlib

    imports = {}
    for name in IMPORTS:
        try:
            mod = importlib.import_module(name)
            imports[name] = getattr(mod, "__version__", "ok")
        except Exception as e:
            imports[name] = f"MISSING: {type(e).__name__}: {e}"
    import onnxruntime as ort
    import torch

    from tuneforge.runinfo import cpu_description
    from tuneforge.runtime.session import available_cpus, gpu_problem

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu_description(), "cpus_available": available_cpus(), "imports": imports,
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cuda_available": torch.cuda.is_available(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "onnxruntime": ort.__version__, "onnxruntime_file": ort.__file__,
            "onnxruntime_cuda_version": getattr(ort, "cuda_version", None),
            "ort_available_providers": ort.get_available_providers(),
            "gpu_problem": {p: gpu_problem(p) for p in (TRT, CUDA)},
            "mode": ck.state["mode"], "mode_reason": ck.state["mode_reason"],
            "nvidia_smi": nvidia_smi()}
    if torch.cuda.is_available():
        info.update(device=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    bf16_supported=torch.cuda.is_bf16_supported(),
                    memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
        for dtype in (torch.float32, torch.bfloat16, torch.float16):  # cuBLAS handles, before timing
            a = torch.randn(1024, 1024, device="cuda", dtype=dtype)
            (a @ a).sum().item()
    return info


def step_train(ck: Check, precision: str) -> dict:
    from tuneforge.train import config_for_task, train

    a = ck.args
    files = ck.state.get("data_files") or {}  # dry run: small copies of the bundled CSVs
    cfg = config_for_task("support-intents", base_model=a.base_model, mode="full", epochs=a.epochs, **files,
                          precision=precision, device=ck.state["device"], seed=42,
                          output_dir=str(ck.work / "runs"), run_name=f"gpu-check-{precision}",
                          checkpoint=False, early_stopping_patience=0, evals_per_epoch=1,
                          limit_train=a.train_rows)
    t = time.perf_counter()
    r = train(cfg, progress=False)
    fit = r.fit
    ck.state.setdefault("run_dirs", {})[precision] = r.run_dir
    data = json.loads((Path(r.run_dir) / "run.json").read_text())["data"]
    res = {"device": ck.state["device"], "precision_asked": precision, "autocast": fit["autocast"],
           "epochs": a.epochs, "rows": {k: v["rows"] for k, v in data.items()},
           "batch_size": cfg.batch_size, "max_length": cfg.max_length, "learning_rate": cfg.learning_rate,
           "steps": fit["steps"], "train_seconds": round(fit["train_seconds"], 3),
           "examples": fit["train_examples_seen"],
           "examples_per_s": round(fit["throughput_examples_per_s"], 1),
           "steps_per_s": round(fit["steps"] / max(fit["train_seconds"], 1e-9), 2),
           "validation_accuracy": round(r.metrics["validation"]["accuracy"], 4),
           "test_accuracy": round(r.metrics["test"]["accuracy"], 4),
           "wall_s": round(time.perf_counter() - t, 1), "run_dir": str(r.run_dir)}
    res["vs_cpu_reference"] = round(res["examples_per_s"] / CPU_REFERENCE["examples_per_s"], 2)
    res["cpu_reference"] = CPU_REFERENCE
    return res


def step_export(ck: Check) -> dict:
    from tuneforge.export import export_run, load_manifest

    runs = ck.state.get("run_dirs", {})
    run_dir = runs.get("auto") or runs.get("fp32")
    if run_dir is None:
        raise Skip("no training run completed (train_bf16 and train_fp32 did not run)")
    t = time.perf_counter()
    bundle = export_run(run_dir, out_dir=ck.work / "exports", name="gpu-check", version="v1",
                        variants=["fp32", "fp16"], measure=False, parity_rows=ck.args.parity_rows)
    ck.state["bundle"] = bundle
    m = load_manifest(bundle)
    par = {v: {k: r.get(k) for k in ("passed", "max_abs_diff", "agreement", "reference_value", "value",
                                     "drop_points", "checked_on", "rows")}
           for v, r in m.parity.items() if isinstance(r, dict)}
    return {"run_dir": str(run_dir), "bundle": str(bundle), "variants": list(m.variants),
            "rejected": m.rejected, "defaults": m.defaults, "parity_on_cpu": par,
            "sizes_mb": {v: round(d["size"] / 1e6, 1) for v, d in m.variants.items()},
            "seconds": round(time.perf_counter() - t, 1)}


def _predictor_info(p) -> dict:
    info = p.info()
    opts = {}
    with contextlib.suppress(Exception):
        opts = p.runner.session.get_provider_options()
    return {k: info[k] for k in ("variant", "provider", "providers", "threads", "fallback_reason")} | {
        "io_binding": p.runner.io_binding, "provider_options": opts}


def step_predictor_load(ck: Check) -> dict:
    from tuneforge.runtime import Predictor, choose_providers

    bundle = ck.state.get("bundle")
    if bundle is None:
        raise Skip("no bundle (export did not run)")
    out = {}
    for label, providers in (("default", None), ("cuda", ["cuda"]), ("tensorrt", ["tensorrt"])):
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                p = Predictor.load(bundle, providers=providers)
                res = _predictor_info(p)
            except Exception as e:
                res = {"error": f"{type(e).__name__}: {e}"}
        choice = choose_providers(providers)
        res.update(load_s=round(time.perf_counter() - t, 2), wanted=choice.wanted, usable=choice.usable,
                   problems=choice.problems, warnings=[str(w.message) for w in caught])
        out[label] = res
    return out


def _timed_engine(ck: Check, name: str, one, bulk, meta: dict) -> dict:
    """Warm up, batch-1 latency in 2 rounds, then bulk throughput at 32 and 128 (+ accuracy)."""
    import numpy as np

    texts, gold = ck.state["bulk_texts"], ck.state["bulk_gold"]
    labels = ck.state["labels"]
    single = ck.state["single_texts"]
    for text in single[:10]:
        one(text)
    for b in (32, 128):
        bulk(texts[:b], b)
    lat, rounds = [], []
    for _ in range(2):
        this = []
        for text in single:
            t = time.perf_counter()
            one(text)
            this.append(time.perf_counter() - t)
        rounds.append(pct(this, 50))
        lat += this
    res = dict(meta, batch1={"n": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
                             "mean_ms": round(statistics.fmean(lat) * 1000, 3), "round_p50_ms": rounds})
    for b in (32, 128):
        t = time.perf_counter()
        logits = np.asarray(bulk(texts, b), dtype=np.float32)
        sec = time.perf_counter() - t
        res[f"batch{b}"] = {"items_per_s": round(len(texts) / sec, 1), "n": len(texts), "seconds": round(sec, 3)}
        if b == 32:
            ck.outputs[name] = logits
            pred = logits.argmax(-1)
            res["accuracy"] = round(float(np.mean([labels[i] == g for i, g in zip(pred, gold)])), 4)
            res["n_accuracy"] = len(gold)
    return res


def step_torch(ck: Check, name: str, half: bool) -> dict:
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from tuneforge.modeling import TaskModel

    run_dir = (ck.state.get("run_dirs") or {}).get("auto") or (ck.state.get("run_dirs") or {}).get("fp32")
    if run_dir is None:
        raise Skip("no trained model (training did not run)")
    device = ck.state["device"]
    if half and device != "cuda":
        raise Skip(f"FP16 eager is a GPU baseline: {ck.state['mode_reason']}")
    model = TaskModel.load(Path(run_dir) / "model").to(device)
    model = model.half() if half else model.float()
    tok = AutoTokenizer.from_pretrained(Path(run_dir) / "model" / "encoder")
    max_len = model.spec.max_length

    def forward(batch: list[str]) -> np.ndarray:
        enc = tok(batch, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            out = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            return out.float().cpu().numpy()  # the copy back synchronises the device

    def file_order(texts, b):
        return np.concatenate([forward(texts[i:i + b]) for i in range(0, len(texts), b)])

    res = _timed_engine(ck, name, lambda t: forward([t]), file_order,
                        {"engine": f"torch eager {'FP16 (model.half())' if half else 'FP32'}",
                         "device": device, "tokenizer": "transformers fast tokenizer",
                         "batches": "file order, padded to the longest row", "attention": "eager"})
    # the same model on length-sorted batches: engine speed without the batching difference
    texts = ck.state["bulk_texts"]
    order = np.argsort([len(tok(x, truncation=True, max_length=max_len)["input_ids"]) for x in texts],
                       kind="stable")
    sorted_texts = [texts[i] for i in order]
    for b in (32, 128):
        t = time.perf_counter()
        file_order(sorted_texts, b)
        sec = time.perf_counter() - t
        res[f"batch{b}_sorted"] = {"items_per_s": round(len(texts) / sec, 1), "seconds": round(sec, 3)}
    return res


def step_ort(ck: Check, name: str, variant: str, provider: str, io_binding: bool = True) -> dict:
    from tuneforge.runtime import Predictor
    from tuneforge.runtime.session import gpu_problem

    bundle = ck.state.get("bundle")
    if bundle is None:
        raise Skip("no bundle (export did not run)")
    from tuneforge.export import load_manifest

    m = load_manifest(bundle)
    if variant not in m.variants:
        raise Skip(f"the bundle has no {variant} variant: {m.rejected.get(variant, 'not built')}")
    if provider != CPU:
        if ck.state["device"] != "cuda":
            raise Skip(f"{provider} needs a GPU: {ck.state['mode_reason']}; "
                       f"gpu_problem: {gpu_problem(provider)}")
        problem = gpu_problem(provider)
        if problem:
            raise Skip(f"{provider} cannot start: {problem}")
    if provider == TRT:  # engines are cached outside the bundle
        os.environ.setdefault("TUNEFORGE_TRT_CACHE", str(ck.work / "trt-cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        p = Predictor.load(bundle, variant=variant, providers=[provider])
        load_s = time.perf_counter() - t
    if p.provider != provider:
        raise Skip(f"Predictor.load fell back to {p.provider}: {p.fallback_reason}")
    if not io_binding:
        p.runner.io_binding = False
    meta = {"engine": f"onnxruntime {variant.upper()} via Predictor", "variant": variant,
            "load_s": round(load_s, 2), "warnings": [str(w.message) for w in caught],
            "tokenizer": "tokenizers (bundle tokenizer.json)", "batches": "length-sorted (Predictor)",
            **_predictor_info(p)}
    return _timed_engine(ck, name, lambda text: p.predict_raw([text]),
                         lambda texts, b: p.predict_raw(texts, batch_size=b), meta)


def step_trt(ck: Check, name: str) -> dict:
    """TensorRT FP16 the way TensorRT does it: the FP32 graph built with ``trt_fp16_enable`` and
    shape profiles (batch 1..128, sequence 1..max_length), engine cache in the work folder.

    tuneforge's own TensorRT session (``create_session``) sets only the engine cache, so through
    ``Predictor.load`` TensorRT builds an FP32 engine; this step swaps in an FP16 session.
    """
    import onnxruntime as ort

    from tuneforge.export import load_manifest
    from tuneforge.runtime import Predictor
    from tuneforge.runtime.session import Runner, gpu_problem, session_options

    bundle = ck.state.get("bundle")
    if bundle is None:
        raise Skip("no bundle (export did not run)")
    if ck.state["device"] != "cuda":
        raise Skip(f"{TRT} needs a GPU: {ck.state['mode_reason']}; gpu_problem: {gpu_problem(TRT)}")
    problem = gpu_problem(TRT)
    if problem:
        raise Skip(f"{TRT} cannot start: {problem}")
    m = load_manifest(bundle)
    cache = ck.work / "trt-cache"
    os.environ.setdefault("TUNEFORGE_TRT_CACHE", str(cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Predictor.load(bundle, variant="fp32", providers=[TRT])
    if p.provider != TRT:
        raise Skip(f"Predictor.load fell back to {p.provider}: {p.fallback_reason}")
    predictor_session = _predictor_info(p)  # tuneforge's own TensorRT session, before the swap
    longest = int(m.tokenizer["max_length"])

    def shapes(batch, seq):
        return ",".join(f"{n}:{batch}x{seq}" for n in p.inputs)

    opts = {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache), "trt_profile_min_shapes": shapes(1, 1),
            "trt_profile_opt_shapes": shapes(32, 32), "trt_profile_max_shapes": shapes(128, longest)}
    t = time.perf_counter()
    session = ort.InferenceSession(str(bundle / m.variant_file("fp32")), sess_options=session_options(p.threads),
                                   providers=[(TRT, opts), CUDA, CPU])
    used = session.get_providers()[0]
    if used != TRT:
        raise Skip(f"the FP16 TensorRT session started on {used}")
    p.runner = Runner(session, TRT)
    meta = {"engine": "onnxruntime TensorRT FP16 (trt_fp16_enable, FP32 graph)", "variant": "fp32+trt_fp16",
            "load_s": round(time.perf_counter() - t, 2), "warnings": [str(w.message) for w in caught],
            "tokenizer": "tokenizers (bundle tokenizer.json)", "batches": "length-sorted (Predictor)",
            "provider": TRT, "providers": session.get_providers(), "io_binding": p.runner.io_binding,
            "provider_options": {k: v for k, v in opts.items() if k != "trt_engine_cache_path"},
            "predictor_trt_session": predictor_session}
    return _timed_engine(ck, name, lambda text: p.predict_raw([text]),
                         lambda texts, b: p.predict_raw(texts, batch_size=b), meta)


def step_parity(ck: Check) -> dict:
    import numpy as np

    labels, gold = ck.state.get("labels"), ck.state.get("bulk_gold")
    pairs = [("infer_ort_cuda_fp16", "infer_ort_cuda_fp32"), ("infer_ort_cuda_fp16", "infer_torch_fp32"),
             ("infer_ort_cuda_fp32", "infer_torch_fp32"), ("infer_torch_fp16", "infer_torch_fp32"),
             ("infer_trt_fp16", "infer_ort_cuda_fp32"), ("infer_ort_cpu_fp32", "infer_torch_fp32")]
    done, missing = {}, {}
    for a, b in pairs:
        key = f"{a} vs {b}"
        if a not in ck.outputs or b not in ck.outputs:
            gone = [s for s in (a, b) if s not in ck.outputs]
            missing[key] = "; ".join(f"{s} {ck.steps.get(s, {}).get('status', 'not run')}"
                                     + (f" ({ck.steps[s]['reason']})" if ck.steps.get(s, {}).get("reason")
                                        else "") for s in gone)
            continue
        x, y = ck.outputs[a], ck.outputs[b]
        px, py = x.argmax(-1), y.argmax(-1)
        acc = [float(np.mean([labels[i] == g for i, g in zip(p, gold)])) for p in (px, py)]
        done[key] = {"label_agreement": round(float(np.mean(px == py)), 4),
                     "accuracy": round(acc[0], 4), "reference_accuracy": round(acc[1], 4),
                     "accuracy_delta_points": round(100 * (acc[0] - acc[1]), 3),
                     "max_abs_logit_diff": round(float(np.abs(x - y).max()), 4), "n": len(gold)}
    if not done:
        raise Skip("no pair of engines ran: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    gate = done.get("infer_ort_cuda_fp16 vs infer_ort_cuda_fp32")
    return {"pairs": done, "not_compared": missing,
            "gpu_gate": None if gate is None else {
                "max_drop_points": GOALS["fp16_accuracy_points"],
                "passed": abs(gate["accuracy_delta_points"]) <= GOALS["fp16_accuracy_points"]}}


# -- goals and the Markdown table ----------------------------------------------------------
def _res(steps, name):
    s = steps.get(name) or {}
    return s.get("result") if s.get("status") == "ran" else None


def _why(steps, *names) -> str:
    out = []
    for n in names:
        s = steps.get(n) or {}
        if s.get("status") != "ran":
            out.append(f"{n} {s.get('status') or 'not run'}" + (f": {s['reason']}" if s.get("reason") else ""))
    return "not measured: " + "; ".join(out)


def goals(steps: dict) -> list[dict]:
    out = []
    ort16, t16 = _res(steps, "infer_ort_cuda_fp16"), _res(steps, "infer_torch_fp16")

    def add(name, target, value, why, note="", higher=True):
        met = None if value is None else bool(value >= target) if higher else bool(abs(value) <= target)
        out.append({"goal": name, "target": target, "value": value, "met": met,
                    "note": note if value is not None else why})

    add("ORT CUDA FP16 ≥ 2× torch FP16 eager, batch-1 p50", GOALS["ort_fp16_b1_vs_torch_fp16"],
        round(t16["batch1"]["p50_ms"] / ort16["batch1"]["p50_ms"], 2) if ort16 and t16 else None,
        _why(steps, "infer_ort_cuda_fp16", "infer_torch_fp16"), "tokenisation included in both")
    add("ORT CUDA FP16 ≥ 1.5× torch FP16 eager, batch 32", GOALS["ort_fp16_b32_vs_torch_fp16"],
        round(ort16["batch32"]["items_per_s"] / t16["batch32"]["items_per_s"], 2) if ort16 and t16 else None,
        _why(steps, "infer_ort_cuda_fp16", "infer_torch_fp16"),
        "torch in file order (the user's baseline); vs torch on length-sorted batches: "
        + (f"{ort16['batch32']['items_per_s'] / t16['batch32_sorted']['items_per_s']:.2f}×"
           if ort16 and t16 else "-"))
    par = _res(steps, "parity") or {}
    gate = (par.get("pairs") or {}).get("infer_ort_cuda_fp16 vs infer_ort_cuda_fp32")
    add("FP16 accuracy within 0.3 points of FP32 (ORT CUDA)", GOALS["fp16_accuracy_points"],
        gate["accuracy_delta_points"] if gate else None,
        _why(steps, "infer_ort_cuda_fp16", "infer_ort_cuda_fp32"),
        f"label agreement {gate['label_agreement']}" if gate else "", higher=False)
    tr = _res(steps, "train_bf16")
    ok_cuda = tr is not None and tr.get("device") == "cuda"
    add("CUDA bf16 training ≥ 10× the CPU's examples/s", GOALS["cuda_train_vs_cpu"],
        tr["vs_cpu_reference"] if ok_cuda else None,
        _why(steps, "train_bf16") if tr is None else f"not measured: training ran on {tr['device']}, not CUDA",
        f"{tr['examples_per_s']} vs {CPU_REFERENCE['examples_per_s']} ex/s (CPU number from bench/RESULTS.md)"
        if tr else "")
    return out


def _fmt(v, nd=2):
    return "–" if v is None else (f"{v:,.{nd}f}" if isinstance(v, float) else str(v))


def markdown(rep: dict) -> str:
    steps = rep.get("steps", {})
    env = _res(steps, "env") or {}
    smi = env.get("nvidia_smi")
    gpu = smi[0]["name"] if isinstance(smi, list) and smi else "no GPU"
    lines = [f"# GPU check ({env.get('mode', '?')})", "",
             f"Command: `{rep['command']}` — started {rep['started']}, {rep.get('elapsed_s')} s of a "
             f"{rep['budget_s']:.0f} s budget.", "",
             f"Machine: {gpu}; CPU {env.get('cpu', '?')} ({env.get('cpus_available', '?')} usable); "
             f"torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda')}), onnxruntime "
             f"{env.get('onnxruntime', '?')} (CUDA {env.get('onnxruntime_cuda_version')}), providers "
             f"{', '.join(env.get('ort_available_providers', []))}.", ""]
    if env.get("mode_reason"):
        lines += [f"Mode: {env['mode_reason']}", ""]
    lines += ["| step | status | seconds | budget s | note |", "|---|---|---|---|---|"]
    for name, s in steps.items():
        lines.append(f"| {name} | {s.get('status')} | {_fmt(s.get('seconds'))} | {_fmt(s.get('budget_s'), 0)} | "
                     f"{(s.get('reason') or '').replace('|', '/')[:220]} |")
    trains = [(n, _res(steps, n)) for n in ("train_bf16", "train_fp32") if _res(steps, n)]
    if trains:
        lines += ["", "| training (full, 1 epoch) | device | autocast | steps | steps/s | examples/s | "
                      "× CPU ref | val acc | test acc |", "|---|---|---|---|---|---|---|---|---|"]
        for n, r in trains:
            lines.append(f"| {n} | {r['device']} | {r['autocast']} | {r['steps']} | {r['steps_per_s']} | "
                         f"{r['examples_per_s']} | {r['vs_cpu_reference']} | {r['validation_accuracy']} | "
                         f"{r['test_accuracy']} |")
        lines.append(f"\nCPU reference (not measured here): {CPU_REFERENCE['examples_per_s']} ex/s, "
                     f"{CPU_REFERENCE['source']}.")
    engines = [(n, _res(steps, n)) for n in ENGINES if _res(steps, n)]
    if engines:
        lines += ["", "| engine | provider / device | IO binding | b1 p50 ms | b1 p95 ms | b32 items/s | "
                      "b128 items/s | b32 sorted | accuracy |", "|---|---|---|---|---|---|---|---|---|"]
        for n, r in engines:
            lines.append(f"| {n}: {r['engine']} | {r.get('provider') or r.get('device')} | "
                         f"{_fmt(r.get('io_binding'))} | {r['batch1']['p50_ms']} | {r['batch1']['p95_ms']} | "
                         f"{r['batch32']['items_per_s']} | {r['batch128']['items_per_s']} | "
                         f"{(r.get('batch32_sorted') or {}).get('items_per_s', '–')} | {r.get('accuracy')} |")
    par = _res(steps, "parity")
    if par:
        lines += ["", "| parity | label agreement | accuracy Δ points | max |Δ logit| |", "|---|---|---|---|"]
        for k, v in par["pairs"].items():
            lines.append(f"| {k} | {v['label_agreement']} | {v['accuracy_delta_points']} | "
                         f"{v['max_abs_logit_diff']} |")
    pl = _res(steps, "predictor_load")
    if pl:
        lines += ["", "| Predictor.load(providers=…) | variant | provider | fallback reason |", "|---|---|---|---|"]
        for k, v in pl.items():
            lines.append(f"| {k} | {v.get('variant', '–')} | {v.get('provider', v.get('error', '–'))} | "
                         f"{(v.get('fallback_reason') or '–').replace('|', '/')[:300]} |")
    lines += ["", "| goal | target | value | met | note |", "|---|---|---|---|---|"]
    for g in rep.get("goals", []):
        lines.append(f"| {g['goal']} | {g['target']} | {_fmt(g['value'])} | {_fmt(g['met'])} | "
                     f"{(g['note'] or '').replace('|', '/')[:300]} |")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------
def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default="all-MiniLM-L6-v2",
                    help="HF model folder (on the lent machine: the widened MiniLM from gpu_stage.py)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench" / "results" / "gpu"))
    ap.add_argument("--work", default=None,
                    help="scratch folder: runs, bundle, TensorRT cache (default: a new temp folder, kept)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="whole run, seconds (default 420)")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every step's budget")
    ap.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes, GPU parts skipped")
    ap.add_argument("--steps", default="", help="comma-separated steps to run (default all): " + ",".join(STEPS))
    ap.add_argument("--n1", type=int, default=None, help="batch-1 requests per round (default 200; dry 8)")
    ap.add_argument("--n-bulk", type=int, default=None, help="test texts for throughput/accuracy "
                                                             "(default all 3,080; dry 64)")
    ap.add_argument("--train-rows", type=int, default=None,
                    help="limit_train (default all; the dry run trains on 96 rows of train.csv)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch intra-op threads (default torch's own; dry run 1)")
    ap.add_argument("--parity-rows", type=int, default=None, help="export parity rows (default 2000; dry 32)")
    args = ap.parse_args(argv)
    args.steps = {s.strip() for s in args.steps.split(",") if s.strip()}
    unknown = args.steps - set(STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; known: {', '.join(STEPS)}")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ck = Check(args, argv)
    reason = "--dry-run" if args.dry_run else cuda_reason()
    dry = reason is not None
    ck.state.update(device="cpu" if dry else "cuda", mode="dry-run (CPU)" if dry else "gpu",
                    mode_reason=(f"dry run on CPU, tiny sizes, GPU parts skipped: {reason}" if dry else None))
    small = {"n1": 8, "n_bulk": 64, "train_rows": None, "parity_rows": 32}
    big = {"n1": 200, "n_bulk": None, "train_rows": None, "parity_rows": 2000}
    for k, v in (small if dry else big).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    ck.report.update(mode=ck.state["mode"], sizes={k: getattr(args, k) for k in big} | {"epochs": args.epochs},
                     base_model=args.base_model, torch_threads=args.torch_threads)
    if args.base_model and Path(args.base_model).is_dir():
        args.base_model = str(Path(args.base_model).resolve())
    if dry:
        ck.state["data_files"] = small_data(ck.work, 96, args.n_bulk)
        if args.torch_threads is None:  # shared CI cores: one thread avoids OpenMP wake-up stalls
            args.torch_threads = 1
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    texts, gold = read_test(args.n_bulk)
    ck.state.update(bulk_texts=texts, bulk_gold=gold, single_texts=texts[:args.n1],
                    labels=json.loads((DATA / "categories.json").read_text()))
    ck.say(f"gpu_check: {ck.state['mode']} -> {ck.out}")
    ck.run("env", lambda: step_env(ck))
    ck.run("train_bf16", lambda: step_train(ck, "auto"))
    ck.run("train_fp32", lambda: step_train(ck, "fp32"))
    ck.run("export", lambda: step_export(ck))
    ck.run("predictor_load", lambda: step_predictor_load(ck))
    ck.run("infer_torch_fp32", lambda: step_torch(ck, "infer_torch_fp32", half=False))
    ck.run("infer_torch_fp16", lambda: step_torch(ck, "infer_torch_fp16", half=True))
    ck.run("infer_ort_cuda_fp32", lambda: step_ort(ck, "infer_ort_cuda_fp32", "fp32", CUDA))
    ck.run("infer_ort_cuda_fp16", lambda: step_ort(ck, "infer_ort_cuda_fp16", "fp16", CUDA))
    ck.run("infer_ort_cuda_fp16_run", lambda: step_ort(ck, "infer_ort_cuda_fp16_run", "fp16", CUDA,
                                                       io_binding=False))
    ck.run("infer_ort_cpu_fp32", lambda: step_ort(ck, "infer_ort_cpu_fp32", "fp32", CPU))
    ck.run("infer_trt_fp16", lambda: step_trt(ck, "infer_trt_fp16"))
    ck.run("parity", lambda: step_parity(ck))
    ck.save()
    print(markdown(ck.report))
    bad = [n for n, s in ck.steps.items() if s["status"] in ("failed",)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
