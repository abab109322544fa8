"""StyleGAN2's modulated (and demodulated) convolution, as a grouped convolution."""
from __future__ import annotations

import torch

from pti.stylegan2.ops._backend import Impl
from pti.stylegan2.ops.conv2d_resample import conv2d_resample
from pti.stylegan2.ops.upfirdn2d import Padding


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    impl: Impl = "auto",
) -> torch.Tensor:
    """Convolve each sample with ``weight`` scaled per input channel by its ``styles``.

    Args:
        x: ``[N, I, H, W]``.
        weight: ``[O, I, kh, kw]`` (shared by the batch).
        styles: ``[N, I]``.
        noise: broadcastable to the output ``[N, O, H', W']`` (added after demodulation), or None.
        demodulate: normalise each output channel's effective weights to unit L2 norm.
        fused_modconv: one grouped convolution with per-sample weights (``True``) or scale
            activations instead (``False``); both give the same result.
    Returns: ``[N, O, H * up / down, W * up / down]`` in ``x``'s dtype.
    """
    n = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (n, in_channels):
        raise ValueError(f"styles must be [{n}, {in_channels}], got {tuple(styles.shape)}")

    # Pre-normalise in fp16 to keep intermediate values in range.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / (in_channels * kh * kw) ** 0.5 / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight, impl=impl)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=n,
                        flip_weight=flip_weight, impl=impl)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
