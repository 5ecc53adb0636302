"""Dynamic INT8 quantisation (``onnxruntime.quantization.quantize_dynamic``).

Which INT8 graph is best depends on the model and the CPU, so several
candidates are built - from the plain and from the fused FP32 graph, with
per-tensor and per-channel weight scales - and the export keeps the fastest
one that passes the parity gate (:func:`pick_int8`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Int8Candidate:
    source: str        # "fp32" or "fp32_opt": which FP32 graph is quantised
    per_channel: bool

    @property
    def name(self) -> str:
        return f"int8[{self.source},{'per-channel' if self.per_channel else 'per-tensor'}]"


def candidates(sources) -> list[Int8Candidate]:
    return [Int8Candidate(s, pc) for s in ("fp32_opt", "fp32") if s in sources
            for pc in (False, True)]


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


class _DropPreprocessHint(logging.Filter):
    """quantize_dynamic logs a generic "consider pre-processing" hint on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def pick_int8(results: list[dict], *, tolerance: float = 0.10) -> dict | None:
    """The INT8 candidate to ship among those that passed parity.

    Measured: candidates whose batch-1 p50 is within ``tolerance`` of the fastest
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

    timed = [r for r in passed if r.get("timing", {}).get("batch1_p50_ms")]
    if timed:
        best = min(r["timing"]["batch1_p50_ms"] for r in timed)
        close = [r for r in timed if r["timing"]["batch1_p50_ms"] <= best * (1 + tolerance)]
        return max(close, key=agreement)
    return max(passed, key=agreement)
