"""The ``openvino`` variant: an OpenVINO IR run by OpenVINO's CPU plugin.

Optional (``pip install 'tuneforge[openvino]'``): nothing here is imported unless a bundle's
``openvino`` variant is loaded, built or timed, and ``openvino`` itself is imported only inside
these functions.  :class:`OpenVINORunner` has the interface of :class:`.session.Runner`
(``runner(feed) -> first output``), so the predictor, the parity gate and the exporter's timing
treat it like an onnxruntime session.

Precision: on CPUs with AMX or AVX-512 BF16, OpenVINO runs FP32 graphs in BF16 unless told
otherwise.  The exporter records the precision its parity gate saw (``inference_precision``);
the runtime asks for the same one where the CPU has it and for FP32 elsewhere, so a served
model is never less precise than the one that passed the gate.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..export.planner import CPU

ENGINE = "openvino"
INSTALL_HINT = "pip install 'tuneforge[openvino]' (the openvino package), or load another variant"


def unavailable() -> str | None:
    """``None`` when OpenVINO can run here, else why not (one line)."""
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        return f"OpenVINO is not installed ({e.name or e})"
    except Exception as e:  # noqa: BLE001 - a broken install must not take the runtime down
        return f"OpenVINO cannot load: {type(e).__name__}: {e}"
    return None


def require() -> None:
    reason = unavailable()
    if reason:
        raise UsageError(f"the openvino variant needs OpenVINO: {reason}", hint=INSTALL_HINT)


def convert(src_onnx: str | Path, dst_xml: str | Path) -> dict:
    """``src_onnx`` -> OpenVINO IR (``dst_xml`` + its ``.bin``), weights kept as they are."""
    require()
    import openvino as ov

    model = ov.convert_model(str(src_onnx))
    ov.save_model(model, str(dst_xml), compress_to_fp16=False)
    return {"openvino": ov.__version__, "source": Path(src_onnx).name}


def cpu_precisions() -> set[str]:
    """Inference precisions OpenVINO's CPU plugin offers on this CPU (e.g. {'FP32', 'BF16'})."""
    require()
    import openvino as ov

    with contextlib.suppress(Exception):
        return {str(c).upper() for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    return {"FP32"}


class OpenVINORunner:
    """A compiled OpenVINO model behind the :class:`.session.Runner` interface.

    ``precision``: ``"f32"``/``"bf16"``/``None`` (OpenVINO's default for this CPU); a ``bf16``
    asked for on a CPU without BF16 runs in ``f32``.  Latency hint, one stream, ``threads``
    inference threads: the same budget an onnxruntime session gets.
    """

    engine = ENGINE

    def __init__(self, path: str | Path, threads: int, precision: str | None = None):
        require()
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                  "INFERENCE_NUM_THREADS": str(int(threads))}
        if precision is not None:
            precision = str(precision).lower()
            if precision == "bf16" and "BF16" not in cpu_precisions():
                precision = "f32"
            config["INFERENCE_PRECISION_HINT"] = precision
        model = core.read_model(str(path))
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self.provider = CPU          # where it runs; ``engine`` says what runs it
        self.providers = [f"OpenVINO {ov.__version__} CPU"]
        self.io_binding = False
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32"/"bf16"

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        result = self.request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()
                                     if k in self.input_names})
        # the request owns its output buffer: copy before the next call overwrites it
        return np.array(result[self.compiled.outputs[0]], copy=True)
