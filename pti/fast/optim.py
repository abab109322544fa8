"""Adam for PTI's loops: torch's implementations, and a flat one with per-image masks.

- :func:`make_adam`: ``torch.optim.Adam`` with its for-loop (what the official code ran),
  foreach or fused implementation.
- :class:`FlatAdam`: Adam over tensors that share a leading "slot" dimension ``K`` (one slot
  per photo), stored in one flat ``[K, P]`` buffer. ``step(active)`` updates only the slots
  whose ``active`` flag (a device tensor) is set, so early stopping and fp16 overflow
  skipping need no host synchronisation. Its arithmetic is ``torch.optim.Adam``'s.
- :class:`DeviceLossScaler`: dynamic loss scaling for fp16 (like ``torch.amp.GradScaler``)
  that keeps its state on the device and reports overflow per slot.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from pti.fast.config import ADAM_IMPLS


def make_adam(params: Iterable[torch.Tensor], lr: float, impl: str = "auto",
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Adam:
    """``torch.optim.Adam`` with ``impl``: 'auto' (torch's choice), 'loop', 'foreach' or 'fused'.

    'fused' falls back to 'foreach' with a warning where torch has no fused kernel for the device.
    """
    if impl not in ADAM_IMPLS:
        raise ValueError(f"adam implementation must be one of {ADAM_IMPLS}, got {impl!r}")
    params = list(params)
    kwargs: dict[str, bool] = {}
    if impl == "loop":
        kwargs["foreach"] = False
    elif impl == "foreach":
        kwargs["foreach"] = True
    elif impl == "fused":
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
        except RuntimeError as exc:
            warnings.warn(f"pti: fused Adam unavailable here ({exc}); using foreach", RuntimeWarning, stacklevel=2)
            kwargs["foreach"] = True
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, **kwargs)


class DeviceLossScaler:
    """Dynamic loss scaling for fp16 with all state on the device (no host syncs).

    Multiply the loss by :attr:`scale` before ``backward``; :meth:`unscale_` divides the flat
    gradients ``[K, P]`` by it, zeroes the slots that overflowed and returns which slots are
    finite (``[K]`` bool). The scale halves after any overflow and doubles after
    ``growth_interval`` clean steps.
    """

    def __init__(self, device: torch.device | str, init_scale: float = 2.0 ** 14, growth_interval: int = 200,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5) -> None:
        self.scale = torch.full([], float(init_scale), device=device)
        self._clean_steps = torch.zeros([], device=device)
        self.growth_interval, self.growth_factor, self.backoff_factor = growth_interval, growth_factor, backoff_factor

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale

    @torch.no_grad()
    def unscale_(self, grads: torch.Tensor) -> torch.Tensor:
        """``grads [K, P]`` (in place) -> finite ``[K]``; non-finite slots are zeroed."""
        grads.div_(self.scale)
        finite = grads.isfinite().all(dim=1)
        grads.mul_(finite.unsqueeze(1)).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        all_finite = finite.all()
        # in place: a captured step (pti.fast.graphs) reads and writes these tensors at fixed addresses
        self._clean_steps.copy_(torch.where(all_finite, self._clean_steps + 1, torch.zeros_like(self._clean_steps)))
        grow = self._clean_steps >= self.growth_interval
        factor = torch.where(all_finite, torch.where(grow, self.growth_factor, 1.0), self.backoff_factor)
        self.scale.copy_(self.scale * factor)
        self._clean_steps.copy_(torch.where(grow, torch.zeros_like(self._clean_steps), self._clean_steps))
        return finite


def _adam_update(flat: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, grads: torch.Tensor,
                 steps: torch.Tensor, active: torch.Tensor, lr: torch.Tensor, beta1: float, beta2: float,
                 eps: float) -> None:
    """One masked Adam update of the flat ``[K, P]`` state, in place (see :class:`FlatAdam`); ``grads`` (a
    temporary of the caller's) is overwritten. One full-size temporary: on a CPU each fresh ``[K, P]``
    buffer costs its page faults (8.4M parameters, one thread: 90 ms with four of them, 36 ms with one)."""
    mask = active.to(flat.dtype)                      # [K]
    steps.add_(mask)
    t = steps.clamp(min=1.0)
    bias1 = 1 - beta1 ** t
    bias2_sqrt = (1 - beta2 ** t).sqrt()
    m = mask.unsqueeze(1)
    exp_avg.lerp_(grads, (1 - beta1) * m)
    exp_avg_sq.lerp_(grads.mul_(grads), (1 - beta2) * m)
    denom = exp_avg_sq.sqrt().div_(bias2_sqrt.unsqueeze(1)).add_(eps)
    # flat -= step_size * exp_avg / denom; step_size 0 for inactive slots: denom / -0 = -inf, exp_avg / -inf = -0,
    # so their weights stay exactly as they are
    flat.addcdiv_(exp_avg, denom.div_(-(lr * mask / bias1).unsqueeze(1)))


class FlatAdam:
    """Adam over ``tensors``, each ``[K, ...]`` with slot ``k`` belonging to photo ``k``.

    The tensors are copied into one flat float32 buffer ``[K, P]``; :attr:`params` are leaf
    ``nn.Parameter`` views of it (same shapes as ``tensors``) to compute with. Gradients are
    read from :attr:`params` (or from ``grad_sources`` given to :meth:`step`): after
    :meth:`zero_grad` they accumulate directly in one flat ``[K, P]`` buffer, otherwise they are
    gathered into one (a missing gradient counts as zero, which leaves a parameter that never
    gets one unchanged), and one vectorised update runs. Slots whose ``active``
    flag is False keep their weights, moments and step count exactly.

    Per element this is ``torch.optim.Adam`` (no weight decay, no amsgrad) with a per-slot step
    count; results agree with it to float rounding.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, compile_update: bool = False) -> None:
        if not tensors:
            raise ValueError("FlatAdam needs at least one tensor")
        self.num_slots = int(tensors[0].shape[0])
        if any(t.shape[0] != self.num_slots for t in tensors):
            raise ValueError(f"all tensors need the same leading slot dimension {self.num_slots}")
        device = tensors[0].device
        self.flat = torch.cat([t.detach().reshape(self.num_slots, -1).to(torch.float32) for t in tensors], dim=1)
        self.shapes = [tuple(t.shape) for t in tensors]
        # gradients land in one flat buffer too: zero_grad points each source's .grad at its view, backward
        # accumulates into it in place, and step reads the buffer without gathering (fixed addresses, which
        # a captured step also needs)
        self.grad_flat = torch.zeros_like(self.flat)
        self.params: list[nn.Parameter] = []
        self._grad_views: list[torch.Tensor] = []
        offset = 0
        for shape in self.shapes:
            size = math.prod(shape[1:])
            self.params.append(nn.Parameter(self.flat[:, offset:offset + size].view(shape)))
            self._grad_views.append(self.grad_flat[:, offset:offset + size].view(shape))
            offset += size
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = torch.zeros([self.num_slots], device=device)
        self.lr = torch.full([], float(lr), device=device)
        self.beta1, self.beta2, self.eps = float(betas[0]), float(betas[1]), float(eps)
        self._update: Callable[..., None] = _adam_update
        if compile_update:
            self._update = torch.compile(_adam_update, dynamic=False)

    def _views_for(self, sources: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The gradient buffer's views shaped like ``sources`` (with or, for K = 1, without the slot dimension)."""
        return [v if tuple(p.shape) == tuple(v.shape) else v.view(p.shape) for p, v in zip(sources, self._grad_views)]

    def set_lr(self, lr: float) -> None:
        """Set the learning rate (a device-side fill; no recompilation, no sync)."""
        self.lr.fill_(float(lr))

    def zero_grad(self, grad_sources: Sequence[torch.Tensor] | None = None) -> None:
        """Zero the flat gradient buffer and make it every source's ``.grad`` (backward then accumulates there)."""
        sources = list(grad_sources) if grad_sources is not None else self.params
        if len(sources) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} gradient sources, got {len(sources)}")
        self.grad_flat.zero_()
        for p, view in zip(sources, self._views_for(sources)):
            p.grad = view

    def gather_grads(self, grad_sources: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The gradients as one ``[K, P]`` tensor (zeros where a source has no gradient)."""
        sources = grad_sources if grad_sources is not None else self.params
        if len(sources) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} gradient sources, got {len(sources)}")
        parts = [(p.grad if p.grad is not None else torch.zeros(shape, device=self.flat.device))
                 .reshape(self.num_slots, -1).to(torch.float32) for p, shape in zip(sources, self.shapes)]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None, scaler: DeviceLossScaler | None = None,
             grad_sources: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Update the active slots; returns the slots actually updated (``[K]`` bool, on the device).

        ``active``: ``[K]`` (or 0-dim) bool, default all. ``scaler``: unscale the gradients first and
        skip slots whose gradients overflowed. ``grad_sources``: tensors whose ``.grad`` to use
        (shaped like ``tensors``, or without the slot dimension when ``K == 1``).
        """
        sources = grad_sources if grad_sources is not None else self.params
        in_buffer = all(p.grad is not None and p.grad.data_ptr() == v.data_ptr()
                        for p, v in zip(sources, self._grad_views))
        grads = self.grad_flat if in_buffer else self.gather_grads(grad_sources)  # the update overwrites it
        updated = torch.ones([self.num_slots], dtype=torch.bool, device=self.flat.device)
        if active is not None:
            updated = updated & active.reshape(-1).to(self.flat.device)
        if scaler is not None:
            updated = updated & scaler.unscale_(grads)
        self._update(self.flat, self.exp_avg, self.exp_avg_sq, grads, self.steps, updated, self.lr,
                     self.beta1, self.beta2, self.eps)
        return updated

    def slot(self, k: int) -> list[torch.Tensor]:
        """Detached copies of slot ``k`` of every tensor (shapes without the slot dimension)."""
        return [p.detach()[k].clone() for p in self.params]


def bind_module_parameters(module: nn.Module, compile_update: bool = False, lr: float = 1e-3) -> FlatAdam:
    """A one-slot :class:`FlatAdam` whose flat buffer becomes the storage of ``module``'s parameters.

    After this call ``module``'s parameters are views of the optimiser's buffer (their
    ``.data`` is replaced; the Parameter objects stay the same), so gradients computed with the
    module are passed as ``grad_sources=list(module.parameters())`` to :meth:`FlatAdam.step`.
    """
    params = list(module.parameters())
    opt = FlatAdam([p.detach().unsqueeze(0) for p in params], lr=lr, compile_update=compile_update)
    for p, view in zip(params, opt.params):
        p.data = view.detach()[0]
    return opt


class AdamStep:
    """One optimiser update of a fast loop: ``torch.optim.Adam`` (the core's control flow: ``optimizer``), or the
    masked :class:`FlatAdam` (``flat``: graph-safe, with device-side learning rate, early-stop mask and fp16 loss
    scaling by ``scaler``). ``grad_sources``: the tensors whose ``.grad`` the flat Adam reads (a module bound
    by :func:`bind_module_parameters`); None: its own ``params``."""

    def __init__(self, flat: FlatAdam | None = None, optimizer: torch.optim.Optimizer | None = None,
                 scaler: DeviceLossScaler | None = None, grad_sources: Sequence[torch.Tensor] | None = None) -> None:
        if (flat is None) == (optimizer is None):
            raise ValueError("AdamStep needs exactly one of flat and optimizer")
        self.flat, self.optimizer, self.scaler, self.grad_sources = flat, optimizer, scaler, grad_sources

    def set_lr(self, lr: float) -> None:
        """This step's learning rate (with the flat Adam a device-side fill: no sync, read by a captured step)."""
        if self.flat is not None:
            self.flat.set_lr(lr)
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def update(self, loss: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Zero the gradients, backpropagate the scalar ``loss`` (scaled when there is a scaler) and update
        (only the ``active`` slots with the flat Adam)."""
        if self.flat is not None:
            self.flat.zero_grad(self.grad_sources)
            (self.scaler.scale_loss(loss) if self.scaler is not None else loss).backward()
            self.flat.step(active=active, scaler=self.scaler, grad_sources=self.grad_sources)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

