"""Autograd wrappers around the CUDA kernels in ``csrc/`` (bias_act and upfirdn2d).

Gradients:

- ``bias_act``: ``dx = dy * d act(x + b) / dx`` is another kernel (``bias_act_grad``) and
  ``db`` is ``dx`` summed over every dimension but ``dim``. For linear / relu / lrelu the slope
  is read from the saved *output* (less memory) and is piecewise constant, so the gradient
  of the gradient (R1 regularisation) is the same kernel again. For the smooth activations
  the curvature term of the second-order gradient is computed with the reference op;
  third-order gradients of those activations are not supported.
- ``upfirdn2d`` is linear in ``x``: its gradient is ``upfirdn2d`` of ``dy`` with ``up`` and
  ``down`` swapped, the filter flipped and the padding mirrored, so gradients of any order
  run on the kernel. No gradient flows to the filter (filters are constant buffers).

The kernels are reached through :func:`kernels` (the compiled extension). This module imports
only :mod:`._backend` and :mod:`._reference`; the public wrappers import it, never the reverse.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from pti.stylegan2.ops._backend import build_extension
from pti.stylegan2.ops._reference import (ACTIVATIONS, BiasActArgs, Padding, Scaling, UpFirDnSpec, along,
                                          bias_act_args, bias_act_ref, filter_size, upfirdn2d_args)

# Activations whose slope is a function of the sign of the output (see BiasActSpec.slope_from_output).
_SLOPE_FROM_OUTPUT = ("linear", "relu", "lrelu")


def kernels() -> ModuleType | Any:
    """The compiled extension (``bias_act``, ``bias_act_grad``, ``upfirdn2d``)."""
    return build_extension()


# --------------------------------------------------------------------------------------------
# bias_act
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BiasActSpec(BiasActArgs):
    """Resolved arguments of one bias_act call (see :func:`~._reference.bias_act_args`) and what the kernel reads."""

    @property
    def act_id(self) -> int:
        """The activation's id in the CUDA kernel."""
        return ACTIVATIONS[self.act].cuda_ref

    @property
    def slope_from_output(self) -> bool:
        """Whether the output alone determines the slope (then it is saved instead of the input)."""
        return self.act in _SLOPE_FROM_OUTPUT and self.gain > 0 and (self.act != "lrelu" or self.alpha >= 0)


@functools.lru_cache(maxsize=256)
def stored_clamp(clamp: float, dtype: torch.dtype) -> float:
    """The clamp limit as a clamped output of ``dtype`` holds it (``clamp`` itself if < 0 or float32/64).

    The kernel clamps in float and rounds the output to ``dtype``: float16 stores a clamp of 0.8
    as 0.7998. Reading the slope from such an output must compare against that stored value,
    or every clamped sample would pass the gradient (found by the self-check, see _selfcheck).
    """
    if clamp < 0 or dtype in (torch.float32, torch.float64):
        return clamp
    return float(torch.tensor(clamp, dtype=torch.float32).to(dtype))


def _sum_to_bias(g: torch.Tensor, dim: int) -> torch.Tensor:
    """Reduce a gradient of x's shape to the bias's shape ``[x.shape[dim]]``. A 1-D ``x`` has nothing to
    reduce (``sum(dim=[])`` would sum every dimension, giving a scalar)."""
    dims = [d for d in range(g.ndim) if d != dim]
    return g.sum(dim=dims) if dims else g


class _BiasActForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, b: torch.Tensor | None, spec: BiasActSpec) -> torch.Tensor:
        y = kernels().bias_act(x, b, spec.dim, spec.act_id, spec.alpha, spec.gain, spec.clamp)
        ctx.spec = spec
        if spec.slope_from_output:
            ctx.save_for_backward(y, None)
        else:
            ctx.save_for_backward(x, b)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        spec: BiasActSpec = ctx.spec
        saved, b = ctx.saved_tensors
        dx = _BiasActGradient.apply(dy, saved, b, spec)
        db = _sum_to_bias(dx, spec.dim) if ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None


class _BiasActGradient(torch.autograd.Function):
    """``dx = dy * slope(saved [+ b])``; linear in ``dy``."""

    @staticmethod
    def forward(ctx: Any, dy: torch.Tensor, saved: torch.Tensor, b: torch.Tensor | None,
                spec: BiasActSpec) -> torch.Tensor:
        clamp = stored_clamp(spec.clamp, saved.dtype) if spec.slope_from_output else spec.clamp
        dx = kernels().bias_act_grad(dy, saved, b, spec.dim, spec.act_id, spec.slope_from_output,
                                     spec.alpha, spec.gain, clamp)
        ctx.spec = spec
        ctx.save_for_backward(dy, saved, b)
        return dx

    @staticmethod
    def backward(ctx: Any, ddx: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None,
                                                        torch.Tensor | None, None]:
        spec: BiasActSpec = ctx.spec
        dy, saved, b = ctx.saved_tensors
        d_dy = _BiasActGradient.apply(ddx, saved, b, spec) if ctx.needs_input_grad[0] else None
        wants_curvature = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        if spec.slope_from_output or not ACTIVATIONS[spec.act].has_2nd_grad or not wants_curvature:
            return d_dy, None, None, None  # the slope is piecewise constant: no curvature term
        d_z = _curvature_term(dy, saved, b, ddx, spec)
        d_b = _sum_to_bias(d_z, spec.dim) if ctx.needs_input_grad[2] else None
        return d_dy, (d_z if ctx.needs_input_grad[1] else None), d_b, None


def _curvature_term(dy: torch.Tensor, x: torch.Tensor, b: torch.Tensor | None, ddx: torch.Tensor,
                    spec: BiasActSpec) -> torch.Tensor:
    """``ddx * dy * d^2 bias_act / dz^2`` at ``z = x + b``, via the twice-differentiable reference."""
    with torch.enable_grad():
        z = x.detach()
        if b is not None:
            z = z + along(b.detach(), spec.dim, x.ndim)
        z = z.detach().requires_grad_(True)
        y = bias_act_ref(z, None, dim=spec.dim, act=spec.act, alpha=spec.alpha, gain=spec.gain,
                         clamp=spec.clamp if spec.clamp >= 0 else None)
        (dz,) = torch.autograd.grad(y, z, dy.detach(), create_graph=True)
        (d_z,) = torch.autograd.grad(dz, z, ddx.detach())
    return d_z


def bias_act_cuda(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """:func:`~pti.stylegan2.ops.bias_act.bias_act` on the CUDA kernel (same arguments and result)."""
    if x.ndim == 0:
        raise ValueError("bias_act_cuda: x must have at least one dimension")
    spec = BiasActSpec(**vars(bias_act_args(x.ndim, dim, act, alpha, gain, clamp)))
    if b is not None:
        b = b.to(x.dtype)
    return _BiasActForward.apply(x, b, spec)


# --------------------------------------------------------------------------------------------
# upfirdn2d
# --------------------------------------------------------------------------------------------
def _run_upfirdn2d(x: torch.Tensor, f: torch.Tensor, s: UpFirDnSpec) -> torch.Tensor:
    """One (2-D filter) or two (separable filter: along x, then along y) kernel passes."""
    ext = kernels()
    if s.gain != 1:
        f = f * (s.gain ** (f.ndim / 2))
    f = f.to(torch.float32)
    if f.ndim == 2:
        return ext.upfirdn2d(x, f, s.up_x, s.up_y, s.down_x, s.down_y, s.pad_x0, s.pad_x1, s.pad_y0, s.pad_y1,
                             s.flip_filter)
    x = ext.upfirdn2d(x, f.reshape(1, -1), s.up_x, 1, s.down_x, 1, s.pad_x0, s.pad_x1, 0, 0, s.flip_filter)
    return ext.upfirdn2d(x, f.reshape(-1, 1), 1, s.up_y, 1, s.down_y, 0, 0, s.pad_y0, s.pad_y1, s.flip_filter)


def adjoint_spec(s: UpFirDnSpec, f: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> UpFirDnSpec:
    """The upfirdn2d whose result is the gradient w.r.t. the input of ``s`` (a ``[in_h, in_w]`` map).

    Per axis, the forward reads ``x[(o * down + j - p0) / up]`` with filter tap ``j``; the adjoint
    scatters back, which is upfirdn with ``up``/``down`` swapped, the filter flipped,
    ``p0' = taps - 1 - p0`` and ``p1'`` chosen so that the result has the input's length.
    """
    fw, fh = filter_size(f)
    (in_h, in_w), (out_h, out_w) = in_hw, out_hw
    return UpFirDnSpec(
        up_x=s.down_x, up_y=s.down_y, down_x=s.up_x, down_y=s.up_y,
        pad_x0=fw - 1 - s.pad_x0,
        pad_x1=in_w * s.up_x - out_w * s.down_x + s.pad_x0 - s.up_x + 1,
        pad_y0=fh - 1 - s.pad_y0,
        pad_y1=in_h * s.up_y - out_h * s.down_y + s.pad_y0 - s.up_y + 1,
        flip_filter=not s.flip_filter,
        gain=s.gain,
    )


class _UpFirDn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: torch.Tensor, spec: UpFirDnSpec) -> torch.Tensor:
        y = _run_upfirdn2d(x, f, spec)
        ctx.spec = spec
        ctx.in_hw = (x.shape[2], x.shape[3])
        ctx.save_for_backward(f)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (f,) = ctx.saved_tensors
        spec = adjoint_spec(ctx.spec, f, ctx.in_hw, (dy.shape[2], dy.shape[3]))
        return _UpFirDn2d.apply(dy, f, spec), None, None


def upfirdn2d_cuda(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """:func:`~pti.stylegan2.ops.upfirdn2d.upfirdn2d` on the CUDA kernel (same arguments and result)."""
    f, spec = upfirdn2d_args(x, f, up, down, padding, flip_filter, gain)
    return _UpFirDn2d.apply(x, f.detach(), spec)


__all__ = ["BiasActSpec", "adjoint_spec", "bias_act_cuda", "kernels", "stored_clamp",
           "upfirdn2d_cuda"]
