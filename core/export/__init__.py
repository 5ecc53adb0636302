"""Export a training run to an ONNX bundle: export -> optimise -> INT8/FP16 -> parity -> measure.

Importing this package is light (no torch): the heavy steps are imported when
:func:`export_run` runs, so the runtime can share :mod:`.bundle` and :mod:`.planner`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .bundle import BundleManifest, load_manifest, verify_bundle
from .planner import VARIANTS, check_combo
from .signing import generate_keypair, sign_bundle, verify_signature

__all__ = ["BundleManifest", "VARIANTS", "check_combo", "export_run", "generate_keypair", "load_manifest",
           "sign_bundle", "verify_bundle", "verify_signature"]


def export_run(run_dir, out_dir="exports", name: str | None = None, version: str | None = None,
               variants=None, max_metric_drop: float = 1.0, parity_rows: int = 2000,
               measure: bool = True, triton: bool | str = False,
               progress: Callable[[str], None] | None = None, sign=None,
               int8_methods: str | list[str] | None = None, calibrate: bool | None = None) -> Path:
    """Export ``runs/<id>/`` to ``<out_dir>/<name>/<version>/`` and return that folder.

    ``variants``: subset of ``fp32, fp32_opt, int8, fp16`` (default all; fp32 is
    always built).  ``max_metric_drop``: points of task metric an INT8/FP16 variant
    may lose against PyTorch before it is left out.  ``parity_rows``: validation
    rows used by the parity gate.  ``measure``: time the CPU variants here and
    make the fastest the CPU default.  ``triton``: also write a Triton model
    repository (True: the CUDA default variant; or a variant name).
    ``progress``: called with one line per step.  ``sign``: an Ed25519 private key (PEM
    file path or bytes) to sign the manifest with (``manifest.sig``; docs/export.md).
    ``int8_methods``: which INT8 candidates to build - ``"auto"``/None (dynamic, and static
    QDQ when the run's training texts are readable here), ``"dynamic"`` or ``"static"``.
    ``calibrate``: fit a softmax temperature on the parity rows (the run's validation split)
    and ship it in ``postprocess.json`` (classification only); None = the task's
    ``calibrate_scores``.

    Raises ParityError when an FP32 graph does not reproduce PyTorch within 1e-4;
    on any error no folder is left behind.
    """
    from .pipeline import run_export

    return run_export(run_dir, out_dir=out_dir, name=name, version=version, variants=variants,
                      max_metric_drop=max_metric_drop, parity_rows=parity_rows, measure=measure,
                      triton=triton, progress=progress, sign=sign, int8_methods=int8_methods,
                      calibrate=calibrate)
