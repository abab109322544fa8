"""2-D convolution with optional up/downsampling by an FIR filter, done efficiently.

The result equals: upsample ``x`` by ``up`` (zero insertion + FIR ``f``), pad, convolve with
``w``, downsample by ``down`` (FIR ``f`` then decimation); each case is arranged so that the
expensive convolution runs at the lower resolution (transposed convolution for ``up``,
strided convolution for ``down``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pti.stylegan2.ops._backend import Impl
from pti.stylegan2.ops.upfirdn2d import Padding, fir_padding, parse_padding, upfirdn2d


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int | list[int] = 0, groups: int = 1,
          transpose: bool = False, flip_weight: bool = True) -> torch.Tensor:
    """conv2d / conv_transpose2d; ``flip_weight=False`` makes it a true convolution."""
    kh, kw = w.shape[2:]
    if not flip_weight and (kh > 1 or kw > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
    impl: Impl = "auto",
) -> torch.Tensor:
    """Convolve ``x`` with ``w`` and resample.

    Args:
        x: ``[N, groups * in_per_group, H, W]``.
        w: ``[out_channels, in_per_group, kh, kw]``.
        f: FIR filter from :func:`~pti.stylegan2.ops.upfirdn2d.setup_filter` (needed when
            ``up`` or ``down`` > 1).
        padding: padding of the convolution's input, in output-resolution pixels of the upsampled image.
        flip_weight: True = correlation (what ``torch.nn.functional.conv2d`` does), False = convolution.
    Returns: ``[N, out_channels, H * up / down, W * up / down]`` for the usual ``padding = k // 2``.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample expects 4-D x and w, got {tuple(x.shape)} and {tuple(w.shape)}")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f"up and down must be integers >= 1, got up={up}, down={down}")
    out_channels, in_per_group, kh, kw = w.shape
    # Account for the FIR filter's footprint (no filter runs without resampling).
    resampled = up > 1 or down > 1
    px0, px1, py0, py1 = fir_padding(f, padding, up=up, down=down) if resampled else parse_padding(padding)

    # 1x1 kernel with downsampling: filter+decimate first, then the cheap convolution.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel with upsampling: convolve at low resolution, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter, impl=impl)

    # Downsampling only: filter, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (optionally followed by downsampling): transposed convolution, then filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2,
                      flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x

    # No resampling: a plain convolution when the padding is symmetric.
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # General case: pad via upfirdn2d, convolve, downsample.
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2,
                  flip_filter=flip_filter, impl=impl)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x
