"""Fused bias + activation + gain + clamp: ``clamp(act(x + b) * gain)``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from pti.stylegan2.ops._backend import Impl, use_cuda


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


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: Impl = "auto",
) -> torch.Tensor:
    """Add bias ``b`` along ``dim``, apply ``act``, scale by ``gain``, clamp to ``[-clamp, clamp]``.

    Args:
        x: any shape, float16/32/64.
        b: ``[x.shape[dim]]`` or None.
        act: a key of :data:`ACTIVATIONS`; ``alpha``/``gain`` default to its own values
            (e.g. lrelu: alpha 0.2, gain sqrt(2)).
        clamp: clamp magnitude, or None for no clamping.
    Returns: a tensor of ``x``'s shape and dtype.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
    if x.ndim > 0:
        dim = dim % x.ndim  # negative dims count from the end
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {tuple(b.shape)} does not match x.shape[{dim}] = {x.shape[dim]}")
    if use_cuda(impl, x):
        from pti.stylegan2.ops._cuda_ops import bias_act_cuda

        return bias_act_cuda(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    return bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


def bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Pure-PyTorch :func:`bias_act` (differentiable to any order)."""
    spec = ACTIVATIONS[act]
    if x.ndim > 0:
        dim = dim % x.ndim
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
