"""tuneforge: turn a pretrained text encoder into a fast, domain-specific application.

This module stays import-light (no torch, no transformers): the serving path
(``tuneforge.runtime``) imports it too.  Heavy APIs live in their modules::

    from tuneforge.train import train          # fine-tuning engine (torch)
    from tuneforge.export import export_run    # ONNX export + parity gate
    from tuneforge.runtime import Predictor    # onnxruntime + tokenizers + numpy only
"""

from .errors import TuneforgeError
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["TuneforgeError", "__version__", "hookimpl"]
