"""Weight-space ensembling with the base model (WiSE-FT, Wortsman et al., CVPR 2022).

After fine-tuning, every floating-point weight of the encoder becomes
``alpha * fine_tuned + (1 - alpha) * base``; the task head stays as trained.  Moving part of the
way back towards the pretrained weights keeps more of what the encoder knew before it saw one
data set, which tends to help on text from other sources at a small cost on the training source.
``TrainConfig.wise_alpha`` applies it at the end of training (1.0 = off); ``bench/sentiment_cross.py
--wise`` sweeps it.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError


def interpolate(model, alpha: float, base_encoder=None) -> None:
    """Interpolate ``model.encoder`` in place towards ``base_encoder`` (default: ``model.spec.base_model``
    loaded afresh).  Raises :class:`ConfigError` when the two encoders' weights do not line up."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"wise_alpha must be in [0, 1], got {alpha}")
    if alpha == 1.0:
        return
    if base_encoder is None:
        from ..modeling import load_encoder

        base_encoder, _ = load_encoder(model.spec.base_model)
    base = base_encoder.state_dict()
    with torch.no_grad():
        for name, tensor in model.encoder.state_dict().items():
            if not tensor.is_floating_point():
                continue          # position ids and other integer buffers
            other = base.get(name)
            if other is None or other.shape != tensor.shape:
                raise ConfigError(f"cannot interpolate towards the base model: {name} "
                                  f"{'is missing there' if other is None else 'has another shape there'}",
                                  hint="wise_alpha needs the fine-tuned encoder's own base model")
            tensor.mul_(alpha).add_(other.to(tensor.device, tensor.dtype), alpha=1.0 - alpha)
