"""Serving-side runtime: load an exported bundle and predict.

Imports only onnxruntime, tokenizers, numpy and the standard library -- never
torch or transformers -- so a serving image needs none of the training stack::

    from tuneforge.runtime import Predictor
    p = Predictor.load("exports/intent/v3")          # verifies every file's sha256
    p.predict(["where is my card?"])[0].label
"""

from __future__ import annotations

from .batching import Batcher
from .postprocess import Prediction
from .predictor import Predictor
from .session import available_cpus, choose_providers

__all__ = ["Batcher", "Prediction", "Predictor", "available_cpus", "choose_providers"]
