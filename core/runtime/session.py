"""ONNX Runtime sessions: provider choice, thread count, GPU fallback reasons, IO binding.

``onnxruntime-gpu`` lists the CUDA and TensorRT providers as *available* even on
a machine without their libraries or a GPU; a session asked for them then falls
back to CPU with a log line nobody reads.  :func:`gpu_problem` finds out first
(and says why), so the session gets only providers that can work and the caller
learns what happened.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..export.planner import CPU, CUDA, GPU_PROVIDERS, PROVIDERS, TENSORRT, normalize_provider

log = logging.getLogger(__name__)
_PROBED: dict[str, str | None] = {}


def available_cpus() -> int:
    """CPUs this process may really use: affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        q, p = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if q == "max" else int(q) / int(p)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if q <= 0 or p <= 0 else q / p
    except (OSError, ValueError):
        return None


def gpu_problem(provider: str) -> str | None:
    """``None`` when ``provider`` can plausibly start here, else the reason it cannot."""
    if provider in _PROBED:
        return _PROBED[provider]
    import onnxruntime as ort

    reason = None
    if provider not in ort.get_available_providers():
        reason = (f"this onnxruntime build ({ort.__version__}) does not include it; "
                  "install onnxruntime-gpu")
    else:
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()  # CUDA/cuDNN from nvidia-* wheels, when present
        capi = Path(ort.__file__).parent / "capi"
        lib = "libonnxruntime_providers_tensorrt.so" if provider == TENSORRT \
            else "libonnxruntime_providers_cuda.so"
        try:
            ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
            ctypes.CDLL(str(capi / lib))
        except OSError as e:
            cuda = getattr(ort, "cuda_version", "") or "?"
            reason = (f"its libraries cannot load ({e}): install CUDA {cuda} and cuDNN for "
                      "this onnxruntime-gpu (or the nvidia-* wheels), or fix LD_LIBRARY_PATH")
        if reason is None and not (shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()):
            reason = "no NVIDIA GPU is visible (no /dev/nvidia0, no nvidia-smi)"
    _PROBED[provider] = reason
    return reason


@dataclass
class ProviderChoice:
    wanted: list[str]                   # what the caller asked for (or the default chain)
    usable: list[str]                   # what the session will be given
    problems: dict[str, str] = field(default_factory=dict)  # dropped provider -> why
    explicit: bool = False


def choose_providers(providers=None) -> ProviderChoice:
    """TensorRT -> CUDA -> CPU among those onnxruntime offers, minus those that cannot start."""
    import onnxruntime as ort

    explicit = providers is not None
    if providers is None:
        have = ort.get_available_providers()
        wanted = [p for p in PROVIDERS if p in have] or [CPU]
    else:
        wanted = [normalize_provider(p) for p in ([providers] if isinstance(providers, str)
                                                    else providers)]
        wanted = list(dict.fromkeys(wanted))
    problems = {p: r for p in wanted if p in GPU_PROVIDERS and (r := gpu_problem(p))}
    usable = [p for p in wanted if p not in problems]
    if CPU not in usable:
        usable.append(CPU)  # always a way to run
    return ProviderChoice(wanted, usable, problems, explicit)


def session_options(threads: int, disabled_optimizers=()):
    """``disabled_optimizers``: onnxruntime graph optimizers to leave out at load (names as in
    its ``optimization.disable_specified_optimizers`` option, e.g. ``SkipLayerNormFusion``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if disabled_optimizers:
        so.add_session_config_entry("optimization.disable_specified_optimizers",
                                    ",".join(disabled_optimizers))
    return so


def create_session(path: str | Path, providers: list[str], threads: int, disabled_optimizers=()):
    """An InferenceSession on ``providers`` (CPU always last); returns (session, used provider).
    ``disabled_optimizers``: see :func:`session_options` (the variant's ``session`` entry)."""
    import onnxruntime as ort

    opts = []
    for p in providers:
        if p == TENSORRT:  # engines are cached outside the (read-only, hashed) bundle
            cache = os.environ.get("TUNEFORGE_TRT_CACHE",
                                   str(Path.home() / ".cache" / "tuneforge" / "tensorrt"))
            opts.append((p, {"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache}))
        elif p == CUDA:
            opts.append((p, {"cudnn_conv_algo_search": "DEFAULT"}))
        else:
            opts.append(p)
    if CPU not in providers:
        opts.append(CPU)
    session = ort.InferenceSession(str(path), sess_options=session_options(threads, disabled_optimizers),
                                   providers=opts)
    return session, session.get_providers()[0]


def open_runner(path: str | Path, threads: int, providers=(CPU,), precision: str | None = None,
                disabled_optimizers=()):
    """A runner for one graph file: an OpenVINO IR (``.xml``) on OpenVINO, anything else on an
    onnxruntime session over ``providers``.  ``precision``: OpenVINO's inference precision;
    ``disabled_optimizers``: onnxruntime optimizers the graph was checked and timed without."""
    if str(path).endswith(".xml"):
        from .ov_runner import OpenVINORunner

        return OpenVINORunner(path, threads, precision=precision)
    return Runner(*create_session(path, list(providers), threads, disabled_optimizers))


class Runner:
    """Runs a session; on a GPU provider it binds inputs/outputs to device memory (IO binding)."""

    def __init__(self, session, provider: str):
        self.session = session
        self.provider = provider
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        self.io_binding = provider in GPU_PROVIDERS
        self.providers = session.get_providers()

    engine = "onnxruntime"

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.io_binding:  # pragma: no cover - needs a GPU
            return run_bound(self.session, feed, "cuda", self.output_names)[0]
        return self.session.run(self.output_names[:1], feed)[0]


def run_bound(session, feed: dict[str, np.ndarray], device: str, output_names: list[str],
              device_id: int = 0) -> list[np.ndarray]:
    """``session.run`` through IO binding: inputs copied to ``device`` once, outputs
    allocated there by ORT and copied back.  Works with ``device="cpu"`` too (tested so)."""
    import onnxruntime as ort

    binding = session.io_binding()
    for name, arr in feed.items():
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), device, device_id)
        binding.bind_ortvalue_input(name, value)
    for name in output_names:
        binding.bind_output(name, device, device_id)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
