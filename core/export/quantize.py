"""INT8 quantisation: dynamic (``quantize_dynamic``) and static QDQ (``quantize_static``).

Which INT8 graph is best depends on the model and the CPU, so several
candidates are built - from the plain and from the fused FP32 graph, with
per-tensor and per-channel weight scales, dynamic (activation ranges computed per
request) and, when the run's training texts are at hand, static (activation ranges
calibrated on them ahead of time, QDQ format, per-channel weights) - and the export keeps
the fastest one that passes the parity gate (:func:`pick_int8`, reason from
:func:`pick_reason`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

METHODS = ("dynamic", "static")


# the fused graph with each LayerNorm kept apart from its residual Add (optimize_fp32(...,
# skip_layer_norm=False)); built for quantising only, never shipped as an FP32 variant
FUSED_LN = "fp32_opt_ln"
_GRAPHS = {"fp32_opt": "fused", FUSED_LN: "fused (LayerNorm and GELU apart from their Adds)",
           "fp32": "plain"}


@dataclass(frozen=True)
class Int8Candidate:
    source: str        # "fp32", "fp32_opt" or FUSED_LN: which FP32 graph is quantised
    per_channel: bool
    method: str = "dynamic"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown INT8 method {self.method!r}")
        if self.source not in _GRAPHS:
            raise ValueError(f"unknown INT8 source graph {self.source!r}")

    @property
    def disabled_optimizers(self) -> tuple[str, ...]:
        """onnxruntime optimizers this candidate is checked, timed and served without: the
        FUSED_LN graph would otherwise be re-fused into SkipLayerNormalization at load."""
        return ("SkipLayerNormFusion",) if self.source == FUSED_LN else ()

    @property
    def name(self) -> str:
        scales = "per-channel" if self.per_channel else "per-tensor"
        prefix = "" if self.method == "dynamic" else f"{self.method},"
        return f"int8[{prefix}{self.source},{scales}]"

    @property
    def description(self) -> str:
        scales = "per-channel" if self.per_channel else "per-tensor"
        graph = _GRAPHS[self.source]
        if self.method == "static":
            return (f"static INT8, QDQ (onnxruntime.quantization.quantize_static; weight MatMuls, "
                    f"{scales} weights, activation ranges calibrated on training texts), "
                    f"from the {graph} FP32 graph, for CPU")
        return (f"dynamic INT8 weights (onnxruntime.quantization.quantize_dynamic, {scales}), "
                f"from the {graph} FP32 graph, for CPU")


def check_methods(methods) -> tuple[str, ...]:
    """``None``/``"auto"`` -> both methods; else a subset of :data:`METHODS` (str or list)."""
    from ..errors import UsageError

    if methods is None or methods == "auto":
        return METHODS
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UsageError(f"unknown INT8 method {bad[0] if bad else methods!r}",
                         hint="use auto, dynamic, static or dynamic,static")
    return tuple(m for m in METHODS if m in methods)


def candidates(sources, *, static: bool = False, dynamic: bool = True) -> list[Int8Candidate]:
    """Dynamic candidates for each FP32 graph (per-tensor and per-channel scales; per-channel only
    from FUSED_LN); ``static``: also static QDQ, per-channel, from the plain graph (onnxruntime
    fuses the QDQ pattern when it loads it)."""
    out = [Int8Candidate(s, pc) for s in ("fp32_opt", FUSED_LN, "fp32") if s in sources
           for pc in ((True,) if s == FUSED_LN else (False, True))] if dynamic else []
    if static and "fp32" in sources:
        # from the plain graph only: behind the fused graph's contrib ops (Attention,
        # SkipLayerNormalization) the quantiser cannot infer tensor types and leaves most
        # MatMuls in FP32 (measured on BANKING77/MiniLM: no faster than the FP32 graph)
        out.append(Int8Candidate("fp32", True, "static"))
    return out


def quantize_int8(src: str | Path, dst: str | Path, *, per_channel: bool) -> None:
    """INT8 weights for MatMul/Attention/Gather; activations quantised on the fly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _DropPreprocessHint()
    root.addFilter(quiet)
    try:
        # DefaultTensorType: shape inference knows no types behind contrib ops (fused graph)
        quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8,
                         extra_options={"MatMulConstBOnly": True,
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(quiet)


def weight_matmuls(model) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight (an initializer)."""
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights and n.name]


def quantize_static_int8(src: str | Path, dst: str | Path, batches: list[dict], *,
                         per_channel: bool = True) -> dict:
    """Static QDQ INT8 for the weight MatMuls, activation ranges from ``batches`` (ONNX feeds).

    Unsigned activations with signed weights (U8S8, onnxruntime's advice for x86), MinMax
    calibration.  Activation x activation MatMuls (attention scores) stay FP32: their ranges
    vary per input and quantising them costs accuracy for little speed.  Returns what was
    quantised (for the manifest).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .calibration import data_reader

    if not batches:
        raise ValueError("static INT8 needs calibration batches")
    model = onnx.load(str(src))
    nodes = weight_matmuls(model)
    del model
    root = logging.getLogger()
    quiet = _DropPreprocessHint()
    root.addFilter(quiet)
    try:
        quantize_static(str(src), str(dst), data_reader(batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                        per_channel=per_channel, reduce_range=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(quiet)
    return {"matmuls": len(nodes), "calibration_batches": len(batches),
            "calibration_rows": sum(len(next(iter(b.values()))) for b in batches),
            "calibrate_method": "MinMax", "activations": "uint8 (asymmetric)",
            "weights": "int8 (symmetric)"}


class _DropPreprocessHint(logging.Filter):
    """quantize_dynamic logs a generic "consider pre-processing" hint on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def pick_int8(results: list[dict], *, tolerance: float = 0.10, by: str = "batch1_p50_ms") -> dict | None:
    """The INT8 candidate to ship among those that passed parity.

    Measured: candidates whose ``by`` timing (batch-1 p50, lower is better; or
    ``"batch32_items_per_s"``, higher is better) is within ``tolerance`` of the fastest
    count as equally fast and the most accurate of them wins.  On BANKING77/MiniLM
    (2-core AVX2 CPU, quiet machine) INT8 from the fused graph ran 1.13-1.17 ms
    against 1.29-1.42 ms from the plain graph, and per-channel scales agreed
    with FP32 more often than per-tensor at about the same speed.
    Unmeasured: the most accurate.
    """
    passed = [r for r in results if r["parity"].get("passed")]
    if not passed:
        return None

    def agreement(r):
        return (r["parity"].get("agreement") or 0.0, -(r["parity"].get("drop_points") or 0.0))

    timed = [r for r in passed if r.get("timing", {}).get(by)]
    if timed:
        if by == "batch32_items_per_s":
            top = max(r["timing"][by] for r in timed)
            close = [r for r in timed if r["timing"][by] >= top / (1 + tolerance)]
        else:
            best = min(r["timing"][by] for r in timed)
            close = [r for r in timed if r["timing"][by] <= best * (1 + tolerance)]
        return max(close, key=agreement)
    return max(passed, key=agreement)


def pick_reason(results: list[dict], best: dict | None, *, tolerance: float = 0.10) -> str:
    """One sentence: why :func:`pick_int8` shipped ``best`` (for the manifest and model card)."""
    if best is None:
        return "no INT8 candidate passed the parity gate"
    failed = [r["candidate"] for r in results if not r["parity"].get("passed")]
    rejected = f"; rejected by the parity gate: {', '.join(failed)}" if failed else ""
    p = best["parity"]
    acc = f"{p.get('agreement_metric')} {p.get('agreement', 0):.4f}, drop {p.get('drop_points', 0):.2f} pts"
    timed = [r for r in results if r["parity"].get("passed") and r.get("timing", {}).get("batch1_p50_ms")]
    if best.get("timing", {}).get("batch1_p50_ms") and timed:
        fastest = min(timed, key=lambda r: r["timing"]["batch1_p50_ms"])
        t = best["timing"]["batch1_p50_ms"]
        if fastest is best:
            why = f"fastest measured batch-1 p50 among the passing candidates ({t:.2f} ms)"
        else:
            why = (f"within {tolerance:.0%} of the fastest ({fastest['candidate']} "
                   f"{fastest['timing']['batch1_p50_ms']:.2f} ms vs {t:.2f} ms) and the most "
                   "accurate of those")
        return f"{best['candidate']}: {why}; {acc}{rejected}"
    return f"{best['candidate']}: not measured, so the most accurate passing candidate; {acc}{rejected}"
