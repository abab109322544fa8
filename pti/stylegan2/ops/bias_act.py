"""Fused bias + activation + gain + clamp: ``clamp(act(x + b) * gain)``.

:func:`bias_act` dispatches between the pure-PyTorch reference (:mod:`._reference`) and the
CUDA kernel (:mod:`._cuda_ops`); a kernel is used only after it has passed its self-check
(:mod:`._selfcheck`) for the call's dtype and flags. See :mod:`._backend` for ``impl`` and
``PTI_OPS``.
"""
from __future__ import annotations

import torch

from pti.stylegan2.ops import _cuda_ops, _selfcheck
from pti.stylegan2.ops._backend import Impl, kernel_mode
from pti.stylegan2.ops._reference import ACTIVATIONS, Activation, bias_act_args, bias_act_ref


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
        x: any shape, float16/bfloat16/32/64.
        b: ``[x.shape[dim]]`` or None.
        act: a key of :data:`ACTIVATIONS`; ``alpha``/``gain`` default to its own values
            (e.g. lrelu: alpha 0.2, gain sqrt(2)).
        clamp: clamp magnitude, or None for no clamping.
        impl: ``'auto'`` (kernel on CUDA tensors once it passed its self-check), ``'cuda'`` or ``'ref'``.
    Returns: a tensor of ``x``'s shape and dtype.
    Raises: ``ValueError`` for an unknown activation, a bias of the wrong size or a bad ``impl``.
    """
    dim = bias_act_args(x.ndim, dim, act, alpha, gain, clamp).dim  # checks act; negative dims count from the end
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {tuple(b.shape)} does not match x.shape[{dim}] = {x.shape[dim]}")
    mode = kernel_mode(impl, x)
    if mode != "ref" and _selfcheck.bias_act_passes(x, b is not None, dim, act, alpha, gain, clamp,
                                                    forced=mode == "cuda"):
        return _cuda_ops.bias_act_cuda(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    return bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


__all__ = ["ACTIVATIONS", "Activation", "bias_act", "bias_act_ref"]
