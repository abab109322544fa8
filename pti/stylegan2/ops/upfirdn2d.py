"""Upsample, FIR-filter, downsample (``upfirdn``) on NCHW images, and its helpers.

Semantics (as in ``scipy.signal.upfirdn``, per spatial axis): insert ``up - 1`` zeros after
every sample, pad (negative padding crops), convolve with the FIR filter ``f`` (true
convolution unless ``flip_filter``), keep every ``down``-th sample.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from pti.stylegan2.ops._backend import Impl, use_cuda

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


def parse_scaling(s: Scaling) -> tuple[int, int]:
    """``int`` or ``[sx, sy]`` -> ``(sx, sy)``, each >= 1."""
    sx, sy = (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))
    if sx < 1 or sy < 1:
        raise ValueError(f"scaling factors must be >= 1, got {s}")
    return sx, sy


def parse_padding(p: Padding) -> tuple[int, int, int, int]:
    """``int``, ``[px, py]`` or ``[x0, x1, y0, y1]`` -> ``(x0, x1, y0, y1)``."""
    if isinstance(p, int):
        return p, p, p, p
    p = [int(v) for v in p]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must be an int, [px, py] or [x0, x1, y0, y1], got {p}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Width and height of a 1-D (separable) or 2-D filter; ``(1, 1)`` for None."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim == 2:
        return f.shape[1], f.shape[0]
    raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")


def setup_filter(
    f: Sequence[float] | torch.Tensor | None,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Make a float32 FIR filter tensor.

    A 1-D list like ``[1, 3, 3, 1]`` becomes the 2-D outer product (``[4, 4]``) unless it is
    ``separable`` (default: only when it has >= 8 taps). ``normalize`` makes it sum to 1;
    ``gain`` multiplies the 2-D total (``gain ** (1/2)`` per axis for a separable filter).
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty 1-D or 2-D array, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: Impl = "auto",
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter and downsample ``x``.

    Args:
        x: ``[N, C, H, W]``.
        f: float32 filter, ``[fh, fw]`` or separable ``[ftaps]`` (from :func:`setup_filter`),
            or None for the identity.
        padding: applied after upsampling; negative values crop.
        gain: overall scaling of the signal magnitude.
    Returns: ``[N, C, (H*up_y + pad_y0 + pad_y1 - fh) // down_y + 1, ...]``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got shape {tuple(x.shape)}")
    if use_cuda(impl, x):
        from pti.stylegan2.ops._cuda_ops import upfirdn2d_cuda

        return upfirdn2d_cuda(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    return upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Pure-PyTorch :func:`upfirdn2d`."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    x0, x1, y0, y1 = parse_padding(padding)
    n, c, h, w = x.shape

    # Zero insertion: each sample is followed by (up - 1) zeros along each axis.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # Pad (positive) then crop (negative).
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]

    # FIR filter as a depthwise convolution (conv2d correlates, so flip for a true convolution).
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        taps = f.shape[0]
        x = F.conv2d(x, f.reshape(1, 1, 1, taps).expand(c, 1, 1, taps), groups=c)
        x = F.conv2d(x, f.reshape(1, 1, taps, 1).expand(c, 1, taps, 1), groups=c)

    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1.0, impl: Impl = "auto") -> torch.Tensor:
    """Filter ``x`` with ``f`` keeping its size (extra ``padding`` grows it)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1.0, impl: Impl = "auto") -> torch.Tensor:
    """Upsample ``x`` by ``up`` with the interpolation filter ``f``: ``[N,C,H,W] -> [N,C,H*up,W*up]``."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: Scaling = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1.0, impl: Impl = "auto") -> torch.Tensor:
    """Downsample ``x`` by ``down`` after the anti-aliasing filter ``f``: ``[N,C,H,W] -> [N,C,H/down,W/down]``."""
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
