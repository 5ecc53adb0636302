"""Graph fusions (``onnxruntime.transformers.optimizer``) and the FP16 conversion."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

# encoder families the "bert" fusion patterns cover
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "mpnet",
              "ernie", "data2vec-text", "xlm", "nomic_bert", "modernbert"}


def fusion_params(config) -> dict:
    """``model_type``/``num_heads``/``hidden_size`` for the optimizer, from the encoder config."""
    model_type = getattr(config, "model_type", "bert")
    return {"model_type": "bert",
            "family": model_type if model_type in _BERT_LIKE else f"{model_type} (as bert)",
            "num_heads": int(getattr(config, "num_attention_heads", 0) or 0),
            "hidden_size": int(getattr(config, "hidden_size", 0) or 0)}


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion", "onnx_model")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def _fused(stats: dict) -> dict:
    return {k: int(v) for k, v in (stats or {}).items() if v}


def optimize_fp32(src: str | Path, dst: str | Path, params: dict, *, skip_layer_norm: bool = True) -> dict:
    """Fuse Attention / (Skip)LayerNorm / GELU / embedding ops for CPU; returns fused op counts.

    ``skip_layer_norm=False``: keep each LayerNorm apart from the residual Add before it (and
    the GELU apart from its bias Add) instead of fusing them into SkipLayerNormalization and
    BiasGelu.  On onnxruntime 1.31's CPU kernels that graph measured faster (a source of INT8
    candidates, run with onnxruntime's own SkipLayerNormFusion off so the load does not redo it);
    the exporter times both on the export machine and keeps what is faster there.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(params["model_type"])
    if not skip_layer_norm:
        options.enable_skip_layer_norm = False
        options.enable_bias_skip_layer_norm = False
        options.enable_bias_gelu = False
    with _quiet():
        model = optimize_model(str(src), model_type=params["model_type"],
                               num_heads=params["num_heads"], hidden_size=params["hidden_size"],
                               use_gpu=False, optimization_options=options)
        stats = _fused(model.get_fused_operator_statistics())
        model.save_model_to_file(str(dst))
    return stats


def convert_fp16(src: str | Path, dst: str | Path, params: dict) -> dict:
    """GPU-flavoured fusions, then FP16 weights/compute with FP32 inputs and outputs."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        # opt_level=0: pure graph rewrites, no CPU session that would bake in CPU-only ops
        model = optimize_model(str(src), model_type=params["model_type"],
                               num_heads=params["num_heads"], hidden_size=params["hidden_size"],
                               use_gpu=True, opt_level=0)
        stats = _fused(model.get_fused_operator_statistics())
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(dst))
    return stats
