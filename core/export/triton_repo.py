"""A Triton Inference Server model repository inside the bundle.

``triton/<name>/config.pbtxt`` + ``triton/<name>/1/model.onnx`` (onnxruntime
backend, dynamic batching).  Point ``tritonserver --model-repository`` at the
bundle's ``triton/`` folder.  Triton receives token ids: tokenise on the client
with the bundle's ``tokenizer.json`` (truncation to the manifest's max_length).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _dims(shape: list) -> tuple[str, str]:
    """Triton dims (batch axis left out) and an optional reshape for a [batch] output."""
    rest = [-1 if isinstance(d, str) else int(d) for d in shape[1:]]
    if not rest:
        return "[ 1 ]", "\n    reshape: { shape: [ ] }"
    return "[ " + ", ".join(str(d) for d in rest) + " ]", ""


def config_pbtxt(name: str, inputs: list[str], output: dict, *, max_batch_size: int = 64,
                 variant: str = "fp32") -> str:
    ins = ",\n".join(f'  {{\n    name: "{n}"\n    data_type: TYPE_INT64\n    dims: [ -1 ]\n  }}'
                     for n in inputs)
    dims, reshape = _dims(output["shape"])
    out = (f'  {{\n    name: "{output["name"]}"\n    data_type: TYPE_FP32\n    dims: {dims}'
           f'{reshape}\n  }}')
    return (f'# tuneforge bundle variant: {variant}\n'
            f'name: "{name}"\n'
            'backend: "onnxruntime"\n'
            f'max_batch_size: {max_batch_size}\n'
            f'input [\n{ins}\n]\n'
            f'output [\n{out}\n]\n'
            'dynamic_batching {\n'
            '  preferred_batch_size: [ 8, 16, 32 ]\n'
            '  max_queue_delay_microseconds: 2000\n'
            '}\n')


def write_repository(bundle: Path, name: str, model_file: Path, *, variant: str,
                     inputs: list[str], output: dict, max_batch_size: int = 64) -> dict:
    """Write ``bundle/triton/<name>/``; the model is hard-linked when possible."""
    root = bundle / "triton" / name
    (root / "1").mkdir(parents=True)
    target = root / "1" / "model.onnx"
    try:
        os.link(model_file, target)
    except OSError:
        shutil.copyfile(model_file, target)
    (root / "config.pbtxt").write_text(
        config_pbtxt(name, inputs, output, max_batch_size=max_batch_size, variant=variant))
    return {"repository": "triton", "model": name, "variant": variant,
            "config": f"triton/{name}/config.pbtxt", "max_batch_size": max_batch_size}
