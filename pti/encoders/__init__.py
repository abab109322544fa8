"""Image encoders for StyleGAN2: e4e (Tov et al. 2021), the official PTI's alternative pivot.

- :class:`Encoder4Editing` and :class:`E4EConfig`: the architecture, sized by the config
  (defaults: the official FFHQ encoder, 256 px in, 18 x 512 out).
- :func:`load_e4e`: official ``e4e_ffhq_encode.pt`` files (read with
  ``torch.load(weights_only=True)``) and pti's ``.safetensors`` encoders; zoo names ``'e4e'``
  and ``'demo-e4e'`` (the demo generator's, shipped). :func:`encoder_for` also checks it
  against a generator.
- :func:`save_encoder`: pti's format.

Usage (``images``: ``[N, 3, H, W]`` in ``[-1, 1]``, e.g. from :func:`pti.images.read_image`)::

    enc = load_e4e("e4e")                   # `pti download e4e` first, or a path
    with torch.no_grad():
        w_plus = enc.encode(images)         # [N, 18, 512], already includes latent_avg
"""
from pti.encoders.checkpoints import (NATIVE_FORMAT, default_encoder, encoder_for, load_e4e, load_e4e_with_format,
                                      save_encoder)
from pti.encoders.config import E4EConfig
from pti.encoders.e4e import Encoder4Editing, GradualStyleBlock, prepare_input
from pti.encoders.official import FORMAT_NAME as OFFICIAL_FORMAT

__all__ = ["E4EConfig", "Encoder4Editing", "GradualStyleBlock", "prepare_input", "load_e4e", "load_e4e_with_format",
           "save_encoder", "encoder_for", "default_encoder", "NATIVE_FORMAT", "OFFICIAL_FORMAT"]
