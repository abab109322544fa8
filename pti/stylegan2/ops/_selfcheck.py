"""Kernels prove themselves before they are used.

The first time a process would run a CUDA kernel for an op with a given dtype, device and flags
(bias_act: activation, alpha, gain, clamp, dim, rank, bias or not; upfirdn2d: up and down
factors, padding, filter shape, flip, gain), that kernel is run on small random inputs (a few
hundred elements, drawn from a private generator: the global random streams are untouched)
beside the reference op of :mod:`._reference`, and compared on values and first-order
gradients (bias_act: ``y``, ``dx``, ``db``; upfirdn2d: ``y``, ``dx``). Higher-order gradients
are the same kernels again (see :mod:`._cuda_ops`), so they are covered by these.

Pass rule, per compared tensor ``T``: with ``T64`` the reference in float64 on the same
(dtype-rounded) inputs, ``T_ref`` the reference in the call's dtype, ``err(A) = ||A - T64|| / ||T64||``,
the kernel passes when every element is finite, the shapes and dtype agree and

    err(T_kernel) <= ERROR_RATIO * err(T_ref) + FLOOR_EPS * eps(compute dtype)

where the compute dtype is float32 for float16/bfloat16/float32 inputs and float64 for float64
(the kernels compute in ``at::opmath_type``). In words: the kernel may be a few times less exact
than the op it replaces, plus a margin for ``--use_fast_math``. Both constants rest on measured
spreads, written next to them. Inputs near an activation's kink (``|x + b|`` small) and near the
clamp limit get a zero upstream gradient, so a rounding that moves a sample across a
piecewise boundary cannot fail a correct kernel.

A verdict is cached per build (the loaded extension module) and per key, in memory: the check
runs once per process and key and costs milliseconds. A failed check makes ``impl='auto'`` use
the reference, with one warning per op and dtype that names the op, the dtype, the flags and the
error; forced kernels (``impl='cuda'``, ``PTI_OPS=cuda``) are used anyway, with the same warning.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch

from pti.stylegan2.ops import _backend, _cuda_ops
from pti.stylegan2.ops._reference import (Padding, Scaling, along, bias_act_args, bias_act_ref, filter_size,
                                          parse_padding, parse_scaling, upfirdn2d_ref)

# How much less exact than the reference in the same dtype a kernel may be. Measured with
# `python tools/selfcheck_spread.py --kernels harness` (the kernels' own per-element code on the
# CPU through tests/ops_host_harness.cpp; 692 checks: every activation x clamp None/0.8/256 x
# gain default/-1.5 x three ranks, 11 upfirdn2d cases, float64/32/16 and bfloat16): the
# kernel's error was at most 1.80x the reference's (float32; float16 1.58x, bfloat16 1.57x).
ERROR_RATIO = 4.0
# Margin in units of the compute dtype's eps (float32: 1.2e-7, float64: 2.2e-16). The same
# measurement needed at most 3.2 eps (float64, where the reference's own error is 0); the GPU
# build adds --use_fast_math (__expf: a few ulp on the smooth activations), hence 40x that.
# A kernel off by 2e-5 relative in float32 fails (2e-5 > 128 * 1.2e-7 = 1.5e-5).
# On an NVIDIA H200 (2026-11-30, CUDA 13.0, tools/device_check.sh: `tools/selfcheck_spread.py --kernels
# cuda`) the compiled kernels passed all 692 checks; the largest float32 margin used was 105.6 eps
# (bias_act's bias gradient, tanh, gain -1.5, clamp 256, 4-D: a sum of many fast-math tanh slopes).
FLOOR_EPS = 128.0
# Inputs within this fraction of the input scale from a kink, or of the clamp from the clamp
# limit, get dy = 0 (their slope may legitimately differ between roundings).
BOUNDARY_BAND = 0.02
_BOUNDED = ("tanh", "sigmoid")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one self-check.

    ``errors`` maps each compared tensor to ``[kernel error, reference error, allowed]``
    (relative errors against float64, see the module doc); ``error`` says why it failed.
    """

    op: str
    dtype: str
    device: str
    flags: str
    ok: bool
    error: str = ""
    errors: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    build: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_lock = threading.RLock()
_owner: Any = None                      # the build (module) the verdicts below belong to
_owner_identity: str = ""
_verdicts: dict[tuple, Verdict] = {}
_warned: set[tuple[str, str]] = set()


def _cache() -> dict[tuple, Verdict]:
    """The verdicts of the loaded build (a new build starts with none)."""
    global _owner, _owner_identity, _verdicts, _warned
    plugin = _backend.loaded_build()
    if plugin is not _owner:
        with _lock:
            if plugin is not _owner:
                _owner, _owner_identity, _verdicts, _warned = plugin, "", {}, set()
    return _verdicts


def verdicts() -> list[Verdict]:
    """Every verdict reached in this process for the loaded build, oldest first."""
    return list(_cache().values())


def reset() -> None:
    """Forget every verdict and warning (the next use of each kernel checks it again)."""
    global _owner
    with _lock:
        _owner = object()  # matches no build: the next _cache() starts afresh
    _cache()


def _identity() -> str:
    global _owner_identity
    if not _owner_identity and _owner is not None:
        _owner_identity = _backend.build_identity(_owner)
    return _owner_identity


def _decide(key: tuple, device: torch.device, forced: bool, check: Callable[[], Verdict]) -> bool:
    cache = _cache()
    verdict = cache.get(key)
    if verdict is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return forced  # a check cannot run inside CUDA graph capture; decide again outside it
        with _lock:
            verdict = cache.get(key)
            if verdict is None:
                verdict = check()
                verdict = dataclasses.replace(verdict, build=_identity())
                cache[key] = verdict
    if verdict.ok:
        return True
    if (verdict.op, verdict.dtype) not in _warned:
        _warned.add((verdict.op, verdict.dtype))
        action = ("using it anyway: the kernels are forced (impl='cuda' or PTI_OPS=cuda)" if forced else
                  f"using the pure-PyTorch reference for {verdict.op} on {verdict.dtype} instead "
                  "(PTI_OPS=ref: never try the kernels; PTI_OPS=cuda: use them regardless)")
        warnings.warn(f"pti: the CUDA kernel of {verdict.op} failed its self-check on {verdict.dtype} "
                      f"({verdict.flags}): {verdict.error}; {action}", stacklevel=4)
    return forced


# --------------------------------------------------------------------------------------------
# Gatekeepers called by the public wrappers (a dict lookup once the verdict is known)
# --------------------------------------------------------------------------------------------
def bias_act_passes(x: torch.Tensor, has_bias: bool, dim: int, act: str, alpha: float | None, gain: float | None,
                    clamp: float | None, forced: bool = False) -> bool:
    """Whether :func:`~pti.stylegan2.ops.bias_act.bias_act` may run the kernel for this call (``dim`` >= 0)."""
    key = ("bias_act", x.dtype, x.device, x.ndim, dim, act, alpha, gain, clamp, has_bias)
    verdict = _cache().get(key)
    if verdict is not None and verdict.ok:
        return True
    return _decide(key, x.device, forced,
                   lambda: check_bias_act(x.dtype, x.device, x.ndim, dim, act, alpha, gain, clamp, has_bias))


def _hashable(v: Scaling | Padding) -> int | tuple[int, ...]:
    return v if isinstance(v, int) else tuple(v)


def upfirdn2d_passes(x: torch.Tensor, f: torch.Tensor | None, up: Scaling, down: Scaling, padding: Padding,
                     flip_filter: bool, gain: float, forced: bool = False) -> bool:
    """Whether :func:`~pti.stylegan2.ops.upfirdn2d.upfirdn2d` may run the kernel for this call."""
    f_shape = None if f is None else tuple(f.shape)
    key = ("upfirdn2d", x.dtype, x.device, f_shape, _hashable(up), _hashable(down), _hashable(padding),
           flip_filter, gain)
    verdict = _cache().get(key)
    if verdict is not None and verdict.ok:
        return True
    return _decide(key, x.device, forced,
                   lambda: check_upfirdn2d(x.dtype, x.device, f_shape, up, down, padding, flip_filter, gain))


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _check_mode(device: torch.device) -> Iterator[None]:
    """Gradients on (even inside no_grad/inference_mode), autocast off, no TF32 in the reference's convolutions."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
        if device.type == "cuda":
            stack.enter_context(torch.backends.cudnn.flags(
                enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                deterministic=torch.backends.cudnn.deterministic, allow_tf32=False))
        yield


def _compute_eps(dtype: torch.dtype) -> float:
    return torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps


def _relative(a: torch.Tensor, truth: torch.Tensor) -> float:
    a = a.detach().double()
    if not bool(torch.isfinite(a).all()):
        return math.inf
    return float((a - truth).norm() / truth.norm().clamp_min(1e-300))


def _compare(got: dict[str, Any], ref: dict[str, Any], truth: dict[str, Any],
             dtype: torch.dtype) -> tuple[str, dict[str, list[float]]]:
    """The first failure (``''`` if none) and ``{name: [kernel error, reference error, allowed]}``."""
    errors: dict[str, list[float]] = {}
    failure = ""
    for name, expected in truth.items():
        value = got[name]
        if expected is None:
            continue
        if value.shape != expected.shape:
            failure = failure or f"{name} has shape {tuple(value.shape)}, the reference {tuple(expected.shape)}"
            continue
        if value.dtype != dtype:
            failure = failure or f"{name} is {value.dtype}, expected {dtype}"
            continue
        e_kernel, e_ref = _relative(value, expected), _relative(ref[name], expected)
        allowed = ERROR_RATIO * e_ref + FLOOR_EPS * _compute_eps(dtype)
        errors[name] = [e_kernel, e_ref, allowed]
        if not e_kernel <= allowed:  # also catches NaN
            failure = failure or (f"{name} differs from the float64 reference by {e_kernel:.3g} (relative L2), "
                                  f"allowed {allowed:.3g} (the reference in {str(dtype).replace('torch.', '')} "
                                  f"is off by {e_ref:.3g})")
    return failure, errors


def _seed(*parts: Any) -> int:
    return zlib.crc32(repr(parts).encode())


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else repr(exc)}"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bias_act_shape(ndim: int, dim: int) -> list[int]:
    """A small shape with 7 channels along ``dim`` and more than 256 elements (several CUDA blocks)."""
    shape = [7 if i == dim else 3 for i in range(ndim)]
    other = next((i for i in range(ndim) if i != dim), None)
    while other is not None and math.prod(shape) < 600:
        shape[other] += 3
    return shape


Runner = Callable[[Callable[..., torch.Tensor], torch.dtype], dict[str, Any]]


def _verdict(op: str, dtype: torch.dtype, device: torch.device, flags: str, reference: Callable[..., torch.Tensor],
             kernel: Callable[..., torch.Tensor], make_runner: Callable[[torch.Generator], Runner]) -> Verdict:
    """Run ``reference`` in float64 and in ``dtype``, then ``kernel`` in ``dtype``, on the inputs that
    ``make_runner`` draws; compare (see the module doc). Any exception fails the check."""
    name = str(dtype).replace("torch.", "")
    t0 = time.perf_counter()
    try:
        with _check_mode(device):
            run = make_runner(torch.Generator().manual_seed(_seed(op, name, flags)))
            truth = run(reference, torch.float64)
            ref = run(reference, dtype)
            got = run(kernel, dtype)  # after the references, which stay alive: no reused buffer can hold the answer
            _synchronize(device)
            failure, errors = _compare(got, ref, truth, dtype)
    except Exception as exc:  # a kernel that raises fails its check
        failure, errors = _short(exc), {}
    return Verdict(op, name, str(device), flags, not failure, failure, errors, time.perf_counter() - t0)


def check_bias_act(dtype: torch.dtype, device: torch.device | str, ndim: int, dim: int, act: str,
                   alpha: float | None = None, gain: float | None = None, clamp: float | None = None,
                   has_bias: bool = True, kernel: Callable[..., torch.Tensor] | None = None) -> Verdict:
    """Check ``kernel`` (default: the CUDA bias_act) against :func:`bias_act_ref`; never raises."""
    device = torch.device(device)
    resolved = bias_act_args(ndim, dim, act, alpha, gain, clamp)
    flags = (f"act={act}, alpha={resolved.alpha:g}, gain={resolved.gain:g}, clamp={clamp}, "
             f"dim={dim} of a {ndim}-D tensor, {'with' if has_bias else 'no'} bias")
    kwargs = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)

    def make_runner(gen: torch.Generator) -> Runner:
        shape = _bias_act_shape(ndim, dim)
        # With a clamp, scale the inputs so that a good part of the outputs is clamped (tanh and
        # sigmoid are bounded by |gain|: larger inputs would only saturate them).
        scale = 1.0 if clamp is None or act in _BOUNDED else max(1.0, 1.5 * clamp / max(abs(resolved.gain), 1e-6))
        x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
        b = (torch.randn(shape[dim], generator=gen, dtype=torch.float64) * 0.5 * scale).to(dtype) if has_bias else None
        z = x.double() + (along(b.double(), dim, ndim) if has_bias else 0)
        keep = z.abs() > BOUNDARY_BAND * scale
        if clamp is not None:
            pre = bias_act_ref(z, None, dim=dim, act=act, alpha=alpha, gain=gain)
            keep &= (pre.abs() - clamp).abs() > BOUNDARY_BAND * max(clamp, 1e-6)
        dy = (torch.randn(shape, generator=gen, dtype=torch.float64) * keep).to(dtype).to(device)
        x = x.to(device)
        b = b.to(device) if b is not None else None

        def run(fn: Callable[..., torch.Tensor], dt: torch.dtype) -> dict[str, Any]:
            xi = x.to(dt).requires_grad_(True)
            bi = b.to(dt).requires_grad_(True) if b is not None else None
            y = fn(xi, bi, **kwargs)
            if y.shape != xi.shape:  # reported by _compare
                return {"y": y.detach(), "dx": xi.detach(), "db": bi.detach() if bi is not None else None}
            grads = torch.autograd.grad(y, [xi] + ([bi] if bi is not None else []), dy.to(y.dtype))
            return {"y": y.detach(), "dx": grads[0], "db": grads[1] if bi is not None else None}

        return run

    return _verdict("bias_act", dtype, device, flags, bias_act_ref, kernel or _cuda_ops.bias_act_cuda, make_runner)


def check_upfirdn2d(dtype: torch.dtype, device: torch.device | str, f_shape: tuple[int, ...] | None,
                    up: Scaling = 1, down: Scaling = 1, padding: Padding = 0, flip_filter: bool = False,
                    gain: float = 1.0, kernel: Callable[..., torch.Tensor] | None = None) -> Verdict:
    """Check ``kernel`` (default: the CUDA upfirdn2d) against :func:`upfirdn2d_ref`; never raises.

    The filter is random (positive, summing to 1) with the call's shape: the verdict holds for
    any filter of that shape.
    """
    device = torch.device(device)
    flags = (f"up={_hashable(up)}, down={_hashable(down)}, padding={_hashable(padding)}, "
             f"filter {'none' if f_shape is None else list(f_shape)}, flip_filter={bool(flip_filter)}, gain={gain:g}")
    kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)

    def make_runner(gen: torch.Generator) -> Runner:
        f = None
        if f_shape is not None:
            f = torch.rand(f_shape, generator=gen) + 0.25
            f = (f / f.sum()).to(device)
        (upx, upy), (downx, downy) = parse_scaling(up), parse_scaling(down)
        x0, x1, y0, y1 = parse_padding(padding)
        fw, fh = filter_size(f)
        h, w = 11, 13  # odd, unequal, > 256 samples per [N, C] batch
        while (h * upy + y0 + y1 - fh) // downy + 1 < 2 and h < 512:
            h += 8
        while (w * upx + x0 + x1 - fw) // downx + 1 < 2 and w < 512:
            w += 8
        x = torch.randn([2, 3, h, w], generator=gen, dtype=torch.float64).to(dtype).to(device)
        y_shape = upfirdn2d_ref(x[:1, :1].double(), f, **kwargs).shape
        dy = torch.randn([2, 3, *y_shape[2:]], generator=gen, dtype=torch.float64).to(dtype).to(device)

        def run(fn: Callable[..., torch.Tensor], dt: torch.dtype) -> dict[str, Any]:
            xi = x.to(dt).requires_grad_(True)
            y = fn(xi, f, **kwargs)
            if y.shape != dy.shape:  # reported by _compare
                return {"y": y.detach(), "dx": xi.detach()}
            (dx,) = torch.autograd.grad(y, [xi], dy.to(y.dtype))
            return {"y": y.detach(), "dx": dx}

        return run

    return _verdict("upfirdn2d", dtype, device, flags, upfirdn2d_ref, kernel or _cuda_ops.upfirdn2d_cuda, make_runner)


__all__ = ["ERROR_RATIO", "FLOOR_EPS", "Verdict", "bias_act_passes", "check_bias_act", "check_upfirdn2d", "reset",
           "upfirdn2d_passes", "verdicts"]
