"""StyleGAN2's custom ops, each with ``impl='auto'|'cuda'|'ref'``.

``ref`` is pure PyTorch (any device, differentiable to any order); ``cuda`` uses this
project's kernels in ``csrc/`` compiled on first use; ``auto`` picks ``cuda`` for CUDA
tensors when the kernels build and pass their self-check against ``ref`` (once per op, dtype
and flags, see ``_selfcheck``), and falls back to ``ref`` otherwise (one warning). The
environment variable ``PTI_OPS=ref|cuda|auto`` sets what ``auto`` means (see ``_backend``).
"""
from pti.stylegan2.ops.bias_act import ACTIVATIONS, bias_act
from pti.stylegan2.ops.conv2d_resample import conv2d_resample
from pti.stylegan2.ops.modulated_conv import modulated_conv2d
from pti.stylegan2.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS", "bias_act", "conv2d_resample", "modulated_conv2d",
    "setup_filter", "upfirdn2d", "filter2d", "upsample2d", "downsample2d",
]
