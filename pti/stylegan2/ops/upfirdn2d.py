"""Upsample, FIR-filter, downsample (``upfirdn``) on NCHW images, and its helpers.

Semantics (as in ``scipy.signal.upfirdn``, per spatial axis): insert ``up - 1`` zeros after
every sample, pad (negative padding crops), convolve with the FIR filter ``f`` (true
convolution unless ``flip_filter``), keep every ``down``-th sample.

:func:`upfirdn2d` dispatches between the reference (:mod:`._reference`) and the CUDA kernel
(:mod:`._cuda_ops`), which is used only after it has passed its self-check (:mod:`._selfcheck`)
for the call's dtype, factors, padding and filter shape.
"""
from __future__ import annotations

from typing import Sequence

import torch

from pti.stylegan2.ops import _cuda_ops, _selfcheck
from pti.stylegan2.ops._backend import Impl, kernel_mode
from pti.stylegan2.ops._reference import (Padding, Scaling, filter_size, parse_padding, parse_scaling,
                                          upfirdn2d_ref)


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
        impl: ``'auto'`` (kernel on CUDA tensors once it passed its self-check), ``'cuda'`` or ``'ref'``.
    Returns: ``[N, C, (H*up_y + pad_y0 + pad_y1 - fh) // down_y + 1, ...]``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got shape {tuple(x.shape)}")
    mode = kernel_mode(impl, x)
    if mode != "ref" and _selfcheck.upfirdn2d_passes(x, f, up, down, padding, flip_filter, gain,
                                                     forced=mode == "cuda"):
        return _cuda_ops.upfirdn2d_cuda(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    return upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def _footprint(taps: int, up: int, down: int) -> tuple[int, int]:
    """Padding ``(before, after)`` along one axis for a ``taps``-long FIR filter (see :func:`fir_padding`)."""
    if up == 1 and down == 1:
        return taps // 2, (taps - 1) // 2
    before = after = 0
    if up > 1:
        before, after = before + (taps + up - 1) // 2, after + (taps - up) // 2
    if down > 1:
        before, after = before + (taps - down + 1) // 2, after + (taps - down) // 2
    return before, after


def fir_padding(f: torch.Tensor | None, padding: Padding = 0, up: Scaling = 1, down: Scaling = 1) -> list[int]:
    """``padding`` plus the footprint of the FIR filter ``f``, as ``[x0, x1, y0, y1]`` for :func:`upfirdn2d`.

    Per axis, for ``taps`` filter taps: ``((taps + up - 1) // 2, (taps - up) // 2)`` for a filter
    after upsampling by ``up > 1`` (the length becomes exactly ``up`` times the input's),
    ``((taps - down + 1) // 2, (taps - down) // 2)`` for one before decimating by ``down > 1``
    (exactly ``1 / down`` times), the sum of both when both are > 1 (for
    :func:`~pti.stylegan2.ops.conv2d_resample.conv2d_resample`, which filters twice), and
    ``(taps // 2, (taps - 1) // 2)`` when neither is (the length is kept, :func:`filter2d`).
    ``padding`` is added on top.
    """
    (upx, upy), (downx, downy) = parse_scaling(up), parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    (ax0, ax1), (ay0, ay1) = _footprint(fw, upx, downx), _footprint(fh, upy, downy)
    return [px0 + ax0, px1 + ax1, py0 + ay0, py1 + ay1]


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1.0, impl: Impl = "auto") -> torch.Tensor:
    """Filter ``x`` with ``f`` keeping its size (extra ``padding`` grows it)."""
    return upfirdn2d(x, f, padding=fir_padding(f, padding), flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1.0, impl: Impl = "auto") -> torch.Tensor:
    """Upsample ``x`` by ``up`` with the interpolation filter ``f``: ``[N,C,H,W] -> [N,C,H*up,W*up]``."""
    upx, upy = parse_scaling(up)
    return upfirdn2d(x, f, up=up, padding=fir_padding(f, padding, up=up), flip_filter=flip_filter,
                     gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: Scaling = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1.0, impl: Impl = "auto") -> torch.Tensor:
    """Downsample ``x`` by ``down`` after the anti-aliasing filter ``f``: ``[N,C,H,W] -> [N,C,H/down,W/down]``."""
    return upfirdn2d(x, f, down=down, padding=fir_padding(f, padding, down=down), flip_filter=flip_filter,
                     gain=gain, impl=impl)


__all__ = ["Padding", "Scaling", "downsample2d", "filter2d", "filter_size", "fir_padding", "parse_padding",
           "parse_scaling", "setup_filter", "upfirdn2d", "upfirdn2d_ref", "upsample2d"]
