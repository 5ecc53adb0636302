"""Which exported variants make sense on which ONNX Runtime execution provider.

One table, used twice: by the exporter (which variants to build, which one is
the default per provider) and by the runtime (refuse a variant/provider pair
that cannot work before a session is built).  Standard library only: the
serving path imports this module.

=============  ===========  ===========  ===============  ==================
variant        CPU          CUDA         TensorRT         file
=============  ===========  ===========  ===============  ==================
``fp32``       ok           ok           ok (preferred)   ``model.onnx``
``fp32_opt``   ok           ok           not recommended  ``model.opt.onnx``
``int8``       ok           refused      refused          ``model.int8.onnx``
``fp16``       not recomm.  ok           ok               ``model.fp16.onnx``
``openvino``   ok (*)       refused      refused          ``model.ov.xml`` + ``.bin``
=============  ===========  ===========  ===============  ==================

(*) run by the OpenVINO runtime, not onnxruntime (``pip install 'tuneforge[openvino]'``); the
exporter builds it only where OpenVINO is installed, and a runtime without OpenVINO falls back to
the fastest measured onnxruntime variant.  It is never a default unless it was measured fastest.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
PROVIDERS = (TENSORRT, CUDA, CPU)  # preference order of the runtime
GPU_PROVIDERS = (TENSORRT, CUDA)
_SHORT = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}

VARIANTS = ("fp32", "fp32_opt", "int8", "fp16", "openvino")
VARIANT_FILES = {"fp32": "model.onnx", "fp32_opt": "model.opt.onnx",
                 "int8": "model.int8.onnx", "fp16": "model.fp16.onnx", "openvino": "model.ov.xml"}
OPENVINO = "openvino"          # the one variant onnxruntime does not run (see runtime.ov_runner)
VARIANT_DESCRIPTIONS = {
    "fp32": "FP32, plain graph from torch.onnx.export (the reference)",
    "fp32_opt": "FP32, ORT transformer optimizer fusions (Attention, LayerNorm, GELU)",
    "int8": "INT8 for CPU: dynamic (quantize_dynamic) or static QDQ (quantize_static, calibrated "
            "on training texts), whichever candidate the export measured fastest within parity",
    "fp16": "FP16 weights and compute, FP32 inputs/outputs, for CUDA",
    "openvino": "OpenVINO IR for CPU (from the plain FP32 graph or the static INT8 QDQ graph, "
                "whichever candidate the export measured fastest within parity), run by OpenVINO",
}

OK, NOT_RECOMMENDED, REFUSED = "ok", "not_recommended", "refused"

_INT8_CUDA = ("dynamic INT8 uses MatMulInteger/DynamicQuantizeLinear, which have no CUDA kernels: "
              "those nodes would run on the CPU with a device copy around each one")
_MATRIX: dict[tuple[str, str], tuple[str, str]] = {
    ("fp32", CPU): (OK, "reference graph; ORT applies its own fusions at load"),
    ("fp32_opt", CPU): (OK, "pre-fused graph"),
    ("int8", CPU): (OK, "INT8 (dynamic or static QDQ): smallest, usually fastest on CPUs with "
                        "VNNI/AVX-512"),
    ("fp16", CPU): (NOT_RECOMMENDED, "few CPU kernels take FP16: ORT inserts casts and it runs "
                                     "slower than FP32; never measured or chosen on CPU"),
    ("fp32", CUDA): (OK, "FP32 on GPU"),
    ("fp32_opt", CUDA): (OK, "fused FP32 on GPU"),
    ("int8", CUDA): (REFUSED, _INT8_CUDA),
    ("fp16", CUDA): (OK, "half precision: the usual best on GPUs"),
    ("fp32", TENSORRT): (OK, "TensorRT builds its own fused engine from the plain graph"),
    ("fp32_opt", TENSORRT): (NOT_RECOMMENDED, "ORT contrib ops (Attention, SkipLayerNormalization) "
                                             "are not TensorRT ops and fall back to CUDA"),
    ("int8", TENSORRT): (REFUSED, "TensorRT INT8 needs a calibrated QDQ graph, not dynamic "
                                  "quantisation"),
    ("fp16", TENSORRT): (OK, "FP16 graph for TensorRT"),
    ("openvino", CPU): (OK, "OpenVINO runtime on CPU (needs the openvino package); shipped as the "
                            "default only where the export measured it fastest"),
    ("openvino", CUDA): (REFUSED, "an OpenVINO IR runs on OpenVINO's CPU plugin, not on CUDA"),
    ("openvino", TENSORRT): (REFUSED, "an OpenVINO IR is not a TensorRT input"),
}
# Order used when nothing was measured (first passing one wins).
_HEURISTIC = {CPU: ("int8", "fp32_opt", "fp32"), CUDA: ("fp16", "fp32_opt", "fp32"),
              TENSORRT: ("fp32", "fp16")}


@dataclass(frozen=True)
class Support:
    variant: str
    provider: str
    level: str
    reason: str

    @property
    def runnable(self) -> bool:
        return self.level != REFUSED


def normalize_provider(name: str) -> str:
    """``"cpu"`` / ``"CPUExecutionProvider"`` -> ``"CPUExecutionProvider"``."""
    if name in PROVIDERS:
        return name
    short = _SHORT.get(str(name).strip().lower())
    if short is None:
        raise UsageError(f"unknown execution provider {name!r}",
                         hint="use one of " + ", ".join(PROVIDERS) + " (or cpu, cuda, tensorrt)")
    return short


def check_variant_name(variant: str) -> str:
    """A known variant name (``fp32-opt`` is accepted for ``fp32_opt``)."""
    variant = str(variant).strip().lower().replace("-", "_")
    if variant not in VARIANTS:
        raise UsageError(f"unknown variant {variant!r}", hint="use one of " + ", ".join(VARIANTS))
    return variant


def support(variant: str, provider: str) -> Support:
    """How well ``variant`` fits ``provider`` (never raises for known names)."""
    variant, provider = check_variant_name(variant), normalize_provider(provider)
    level, reason = _MATRIX[(variant, provider)]
    return Support(variant, provider, level, reason)


def check_combo(variant: str, provider: str) -> Support:
    """Like :func:`support`, but an impossible pair is a :class:`UsageError`."""
    s = support(variant, provider)
    if not s.runnable:
        allowed = [v for v in VARIANTS if _MATRIX[(v, s.provider)][0] == OK]
        raise UsageError(f"variant {variant!r} cannot run on {s.provider}: {s.reason}",
                         hint=f"on {s.provider} use {' or '.join(allowed)}"
                              + ("; run int8 on CPUExecutionProvider" if variant == "int8" else ""))
    return s


def plan_export(variants) -> list[str]:
    """The variants to build, in build order.  ``fp32`` is always built: it is the reference."""
    if variants is None:
        return list(VARIANTS)
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    wanted = {check_variant_name(v) for v in variants}
    wanted.add("fp32")
    return [v for v in VARIANTS if v in wanted]


def provider_table(shipped) -> dict[str, dict[str, dict]]:
    """``{provider: {variant: {"level", "reason"}}}`` for the shipped variants (manifest)."""
    return {p: {v: {"level": support(v, p).level, "reason": support(v, p).reason}
                for v in VARIANTS if v in shipped} for p in PROVIDERS}


def choose_default(provider: str, passed, timings: dict | None = None) -> tuple[str | None, str]:
    """The variant a runtime on ``provider`` should load, and why.

    ``timings`` maps variant -> ``{"batch1_p50_ms": ...}`` measured on that provider;
    the fastest passing, recommended variant wins.  Without timings a fixed
    preference order is used (and said so).
    """
    provider = normalize_provider(provider)
    usable = [v for v in VARIANTS if v in passed and support(v, provider).level == OK]
    if not usable:
        return None, f"no shipped variant suits {provider}"
    timed = {v: t for v, t in (timings or {}).items() if v in usable and t.get("batch1_p50_ms")}
    if timed:
        best = min(timed, key=lambda v: timed[v]["batch1_p50_ms"])
        return best, (f"fastest measured batch-1 p50 on this export machine "
                      f"({timed[best]['batch1_p50_ms']:.2f} ms)")
    for v in _HEURISTIC[provider]:
        if v in usable:
            return v, "not measured: preference order " + " > ".join(_HEURISTIC[provider])
    return usable[0], "only usable variant"


def runtime_candidates(provider: str, shipped) -> list[str]:
    """Shipped variants a runtime may load on ``provider`` (refused ones left out)."""
    provider = normalize_provider(provider)
    return [v for v in VARIANTS if v in shipped and support(v, provider).runnable]


BULK_ROWS = 32          # a call with at least this many texts is a bulk call (the batch size timed)
BULK_MIN_GAIN = 1.10    # a bulk variant must have measured >= 10 % more items/s at batch 32


def bulk_default(measurements: dict | None, variants, default: str, provider: str) -> str | None:
    """The variant for bulk calls (:data:`BULK_ROWS` texts or more) on ``provider``, by the
    export's measurements: the one fastest at batch 32 when it is not ``default`` (the batch-1
    choice), measured at least :data:`BULK_MIN_GAIN` times ``default``'s items/s and runnable
    there; else ``None`` (every call on ``default``).  Whether its engine is installed is the
    runtime's question."""
    measured = measurements or {}
    fastest = ((measured.get("fastest") or {}).get(provider) or {}).get("batch32_throughput")
    if not fastest or fastest == default or fastest not in variants:
        return None
    timed = measured.get(provider) or {}
    have = (timed.get(default) or {}).get("batch32_items_per_s")
    bulk = (timed.get(fastest) or {}).get("batch32_items_per_s")
    if not have or not bulk or bulk < BULK_MIN_GAIN * have or support(fastest, provider).level != OK:
        return None
    return fastest
