"""The pure-PyTorch reference ops and their argument parsing (any device, any order of gradient).

This is the bottom of the ops package: it imports nothing from it. Imports flow one way::

    bias_act.py, upfirdn2d.py (public wrappers)
        -> _selfcheck.py (kernels against this reference, verdict cache)
        -> _cuda_ops.py (autograd functions around the compiled kernels)
        -> _backend.py (build and load the kernels; impl / PTI_OPS resolution)
    and each of them -> _reference.py (this module)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


# --------------------------------------------------------------------------------------------
# bias_act: clamp(act(x + b) * gain)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_ref: int  # id used by the CUDA kernel
    has_2nd_grad: bool


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0, 1, False),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2), 2, False),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 3, False),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0, 4, True),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0, 5, True),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0, 6, True),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0, 7, True),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0, 8, True),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9, True),
}


@dataclass(frozen=True)
class BiasActArgs:
    """The resolved arguments of one bias_act call, shared by the reference and the kernel.

    ``dim`` counts from the front (``>= 0`` once ``x`` has a dimension); ``alpha`` and ``gain``
    are the activation's own where None was given; ``clamp < 0`` means no clamping.
    """

    dim: int
    act: str
    alpha: float
    gain: float
    clamp: float


def bias_act_args(ndim: int, dim: int, act: str, alpha: float | None, gain: float | None,
                  clamp: float | None) -> BiasActArgs:
    """Resolve bias_act's arguments for an ``ndim``-D input (negative ``dim`` counts from the end).

    Raises: ``ValueError`` for an activation that is not a key of :data:`ACTIVATIONS`.
    """
    spec = ACTIVATIONS.get(act)
    if spec is None:
        raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
    return BiasActArgs(
        dim=dim % ndim if ndim > 0 else dim,
        act=act,
        alpha=float(alpha if alpha is not None else spec.def_alpha),
        gain=float(gain if gain is not None else spec.def_gain),
        clamp=float(clamp if clamp is not None else -1),
    )


def along(v: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    """A 1-D ``v`` (``[n]``) reshaped to broadcast along axis ``dim`` (``>= 0``) of an ``ndim``-D tensor."""
    return v.reshape([-1 if i == dim else 1 for i in range(ndim)])


def bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Pure-PyTorch :func:`~pti.stylegan2.ops.bias_act.bias_act` (differentiable to any order)."""
    a = bias_act_args(x.ndim, dim, act, alpha, gain, clamp)
    if b is not None:
        x = x + along(b, a.dim, x.ndim).to(x.dtype)
    x = ACTIVATIONS[act].func(x, a.alpha)
    if a.gain != 1:
        x = x * a.gain
    if a.clamp >= 0:
        x = x.clamp(-a.clamp, a.clamp)
    return x


# --------------------------------------------------------------------------------------------
# upfirdn2d: upsample, FIR-filter, downsample
# --------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class UpFirDnSpec:
    """The resolved arguments of one upfirdn2d call, shared by the reference and the kernel."""

    up_x: int
    up_y: int
    down_x: int
    down_y: int
    pad_x0: int
    pad_x1: int
    pad_y0: int
    pad_y1: int
    flip_filter: bool
    gain: float


def upfirdn2d_args(x: torch.Tensor, f: torch.Tensor | None, up: Scaling, down: Scaling, padding: Padding,
                   flip_filter: bool, gain: float) -> tuple[torch.Tensor, UpFirDnSpec]:
    """The filter (a float32 ``[1, 1]`` identity on ``x``'s device for None) and the parsed factors and padding.

    Raises: ``ValueError`` for a filter that is not 1-D or 2-D, a factor < 1 or a malformed padding.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    up_x, up_y = parse_scaling(up)
    down_x, down_y = parse_scaling(down)
    x0, x1, y0, y1 = parse_padding(padding)
    return f, UpFirDnSpec(up_x, up_y, down_x, down_y, x0, x1, y0, y1, bool(flip_filter), float(gain))


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Pure-PyTorch :func:`~pti.stylegan2.ops.upfirdn2d.upfirdn2d`."""
    f, s = upfirdn2d_args(x, f, up, down, padding, flip_filter, gain)
    upx, upy, downx, downy = s.up_x, s.up_y, s.down_x, s.down_y
    x0, x1, y0, y1 = s.pad_x0, s.pad_x1, s.pad_y0, s.pad_y1
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
    f = (f * (s.gain ** (f.ndim / 2))).to(x.dtype)
    if not s.flip_filter:
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


__all__ = ["ACTIVATIONS", "Activation", "BiasActArgs", "Padding", "Scaling", "UpFirDnSpec", "along", "bias_act_args",
           "bias_act_ref", "filter_size", "parse_padding", "parse_scaling", "upfirdn2d_args", "upfirdn2d_ref"]
