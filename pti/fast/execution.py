"""How PTI's steps run: autocast, memory format, op implementation, compilation, host syncs.

These helpers turn the fields of :class:`~pti.fast.ExecutionConfig` into context managers and
wrappers; none of them changes what a step computes beyond float rounding. :class:`DeferredHistory`
keeps per-step values on the device and reads them back in one sync every N steps. What the three
fast loops (:mod:`pti.fast.projector`, :mod:`pti.fast.tuning`, :mod:`pti.fast.batched`) share is here
too: the block they run in (:func:`step_environment`), the photos' cached perceptual features
(:func:`cached_target_features`) and the fp16 loss scaler (:func:`loss_scaler`); the error a failed step
raises or records is the core's (:func:`pti.core.pivot.step_failure`).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from pti.fast.config import ExecutionConfig
from pti.fast.optim import DeviceLossScaler

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for 'bf16'/'fp16' on ``device``'s type; a no-op for 'fp32'.

    Its cast cache is off: captured steps (CUDA graphs) need that (torch.cuda.graph's documentation), and a
    PTI step uses each weight once per autocast region, so the cache saved nothing anyway."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in _DTYPES:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision], cache_enabled=False)


def needs_loss_scaling(cfg: ExecutionConfig, device: torch.device | str) -> bool:
    """fp16 gradients underflow without loss scaling: autocast fp16, or the network's own fp16 layers on CUDA."""
    return cfg.precision == "fp16" or (not cfg.force_fp32 and torch.device(device).type == "cuda")


def loss_scaler(cfg: ExecutionConfig, device: torch.device | str) -> DeviceLossScaler | None:
    """A :class:`~pti.fast.optim.DeviceLossScaler` on ``device`` where :func:`needs_loss_scaling`, else None."""
    return DeviceLossScaler(device) if needs_loss_scaling(cfg, device) else None


@contextlib.contextmanager
def traceable_ops(device: torch.device | str, needed: bool) -> Iterator[None]:
    """Run StyleGAN2's ops with the pure-PyTorch reference inside the block when ``needed``.

    ``torch.func.vmap`` and ``torch.compile`` cannot see into the CUDA kernels' autograd
    functions; the reference ops are plain PyTorch (and torch.compile fuses them). Only CUDA
    tensors would use the kernels, so elsewhere this is a no-op.
    """
    if not needed or torch.device(device).type != "cuda":
        yield
        return
    try:
        from pti.stylegan2.ops._backend import auto_impl
    except ImportError as exc:  # pragma: no cover - depends on the ops module's version
        raise RuntimeError("pti/stylegan2/ops/_backend.py has no auto_impl(); batched or compiled PTI on CUDA "
                           "needs it to select the reference ops") from exc
    with auto_impl("ref"):
        yield


@contextlib.contextmanager
def channels_last(modules: Sequence[nn.Module], generators: Sequence[nn.Module] = (),
                  enabled: bool = True) -> Iterator[None]:
    """Within the block, ``modules`` (perceptual networks) hold NHWC weights (their callers pass NHWC inputs,
    :func:`to_channels_last`) and ``generators``' synthesis blocks keep NHWC activations (the blocks'
    ``channels_last`` attribute, as NVIDIA's); all is restored afterwards.

    Generators only honour it in their fp16 blocks on CUDA (``force_fp32=False``): the network
    converts fp32 blocks' activations to NCHW (see pti/stylegan2/networks.py).
    """
    if not enabled:
        yield
        return
    flagged = [b for G in generators for b in G.synthesis.blocks()]
    saved = [b.channels_last for b in flagged]
    for m in modules:
        m.to(memory_format=torch.channels_last)
    for b in flagged:
        b.channels_last = True
    try:
        yield
    finally:
        for b, flag in zip(flagged, saved):
            b.channels_last = flag
        for m in modules:
            m.to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def tf32(mode: str) -> Iterator[None]:
    """Within the block, fp32 convolutions (cuDNN) and matmuls (cuBLAS) use TF32 ('on') or not ('off');
    'default' leaves torch's settings as they are. The previous settings are restored afterwards."""
    if mode == "default":
        yield
        return
    if mode not in ("on", "off"):
        raise ValueError(f"tf32 must be 'default', 'on' or 'off', got {mode!r}")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "on"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def to_channels_last(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``x`` in NHWC memory order when ``enabled`` and 4-D (values unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if enabled and x.ndim == 4 else x


@contextlib.contextmanager
def step_environment(ex: ExecutionConfig, device: torch.device | str, perceptual: nn.Module, generator: nn.Module,
                     traceable: bool) -> Iterator[None]:
    """The block a fast loop runs in: the pure-PyTorch ops when ``traceable`` (:func:`traceable_ops`),
    ``ex.channels_last`` for ``perceptual`` and ``generator`` (:func:`channels_last`) and ``ex.tf32`` (:func:`tf32`)."""
    with traceable_ops(device, traceable), channels_last([perceptual], [generator], enabled=ex.channels_last), \
            tf32(ex.tf32):
        yield


def cached_target_features(perceptual: Any, x: torch.Tensor, ex: ExecutionConfig,
                           device: torch.device | str) -> list[torch.Tensor]:
    """The photos' perceptual features ``x [N, C, R, R]`` -> per layer ``[N, ...]``, computed once (the photos
    never change; as NVIDIA's projector), under ``ex``'s autocast and memory format."""
    with autocast(device, ex.precision):
        return list(perceptual.target_features(to_channels_last(x, ex.channels_last)))


def maybe_compile(fn: Callable[..., Any], enabled: bool, mode: str = "default") -> Callable[..., Any]:
    """``torch.compile(fn, mode=mode)`` when ``enabled``, else ``fn``."""
    if not enabled:
        return fn
    return torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)


class DeferredHistory:
    """Per-step scalar records kept as device tensors and read back in one sync every ``sync_every`` steps.

    ``record(step, **values)`` stores 0-dim or 1-D tensors; ``due(step)`` says whether to
    :meth:`flush` after this step; ``flush()`` returns ``[(step, {name: float or list})]`` for
    every step recorded since the last flush, in order. Steps may record different names (e.g. a
    regulariser applied every other step): each row holds exactly the names recorded at its step.
    """

    def __init__(self, sync_every: int) -> None:
        self.sync_every = max(1, int(sync_every))
        self._pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def record(self, step: int, **values: torch.Tensor) -> None:
        # copies: outputs of a CUDA-graph replay are overwritten by the next replay
        self._pending.append((step, {k: v.detach().clone() for k, v in values.items()}))

    def due(self, step: int) -> bool:
        return (step + 1) % self.sync_every == 0

    def flush_if_due(self, step: int, steps: int) -> list[tuple[int, dict[str, Any]]]:
        """:meth:`flush` after a due step or the run's last (``steps - 1``); ``[]`` (no sync) otherwise."""
        return self.flush() if self.due(step) or step == steps - 1 else []

    def flush(self) -> list[tuple[int, dict[str, Any]]]:
        if not self._pending:
            return []
        # one device-to-host copy for all values: each row's tensors flattened into one buffer
        flat = [v.float().reshape(-1) for _, vals in self._pending for v in vals.values()]
        host = torch.cat(flat).cpu().tolist() if flat else []
        out, pos = [], 0
        for step, vals in self._pending:
            row: dict[str, Any] = {}
            for name, v in vals.items():
                size = v.numel()
                row[name] = host[pos] if v.ndim == 0 else host[pos:pos + size]
                pos += size
            out.append((step, row))
        self._pending = []
        return out


def first_non_finite(rows: Sequence[tuple[int, dict[str, Any]]], key: str) -> tuple[int, float] | None:
    """The first ``(step, value)`` among flushed rows whose ``key`` (a float or a list) is not finite
    (rows without ``key`` are skipped)."""
    for step, row in rows:
        if key not in row:
            continue
        values = row[key] if isinstance(row[key], list) else [row[key]]
        for v in values:
            if not math.isfinite(v):
                return step, v
    return None
