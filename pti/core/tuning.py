"""Pivotal tuning (PTI Sec. 3.2-3.3): fine-tune the generator so that ``G(w_p; θ*)`` reproduces each photo.

With the pivots ``w_p`` frozen, the generator's weights θ minimise (Eq. 2-4)::

    L_pt = λ_L2 · L_L2(x, G(w_p; θ)) + λ_LPIPS · L_LPIPS(x, G(w_p; θ))

over the photos of each step's batch (all of them by default: multi-image PTI, Sec. 3.4), with Adam
at lr 3e-4, stopping early once every photo's LPIPS is at most ``lpips_threshold`` (0.06). The
locality regulariser (Sec. 3.3, Eq. 5-7) draws ``w_z = mapping(z)``, steps from a pivot towards it
by α, ``w_r = w_p + α (w_z - w_p) / ||w_z - w_p||``, and adds::

    L_R = λ_R^L2 · L_L2(G(w_r; θ*), G(w_r; θ)) + λ_R^LPIPS · L_LPIPS(G(w_r; θ*), G(w_r; θ))

where θ are the original (frozen) weights and θ* the ones being tuned.

:func:`pivotal_tune` is that loop, fp32, ``torch.optim.Adam``, one host sync per step (as the
official code). :mod:`pti.fast` runs the same loop with autocast, compilation, deferred syncs or
K photos with K weight copies at once, and is tested equal to it. The original generator is
never modified and is copied exactly once (into the tuned copy).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pti.core.conditioning import Label, class_label
from pti.core.config import TuningConfig, validate
from pti.core.divergence import output_rms
from pti.images import prepare_target
from pti.core.losses import LocalityRegularizer, PerceptualLoss, l2_loss
from pti.core.pivot import Pivot, check_step
from pti.progress import progress_bar


@dataclass
class TuningResult:
    """The tuned generator and what happened while tuning.

    ``loss_history``/``perceptual_history``: per step, the total loss and the batch's mean
    perceptual distance (before that step's update); ``locality_history``: ``L_R`` at the regularised
    steps; ``stopped_early``: the threshold was reached before ``steps``; ``steps``: updates applied;
    ``seconds``: wall time.
    """

    generator: nn.Module
    loss_history: list[float] = field(default_factory=list)
    perceptual_history: list[float] = field(default_factory=list)
    locality_history: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    perceptual_name: str = ""


def _stack_pivots(pivots: Sequence[Pivot] | Pivot | torch.Tensor, num_ws: int, w_dim: int,
                  device: torch.device) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Pivots -> ws ``[N, num_ws, w_dim]`` and their noise maps (per pivot, may be empty)."""
    if isinstance(pivots, Pivot):
        pivots = [pivots]
    if isinstance(pivots, torch.Tensor):
        ws = pivots.reshape(-1, num_ws, w_dim) if pivots.ndim == 3 else pivots.reshape(1, num_ws, w_dim)
        return ws.detach().to(device=device, dtype=torch.float32), [[] for _ in range(ws.shape[0])]
    ws = []
    for p in pivots:
        if tuple(p.w.shape) != (1, num_ws, w_dim):
            raise ValueError(f"pivot w must be [1, {num_ws}, {w_dim}] for this generator, got {tuple(p.w.shape)}")
        ws.append(p.w)
    return torch.cat(ws).detach().to(device=device, dtype=torch.float32), [list(p.noise) for p in pivots]


def prepare_inputs(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                   pivots: Sequence[Pivot] | Pivot | torch.Tensor,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
    """Targets ``[N, C, R, R]`` (C = ``G.img_channels``), pivot ws ``[N, num_ws, w_dim]`` and per-pivot noise
    maps, all on ``device``."""
    if isinstance(targets, torch.Tensor) and targets.ndim == 4:
        target_list = list(targets.unbind(0))
    elif isinstance(targets, torch.Tensor):
        target_list = [targets]
    else:
        target_list = list(targets)
    x = torch.cat([prepare_target(t, G.img_resolution, device, G.img_channels) for t in target_list])
    ws, noises = _stack_pivots(pivots, G.num_ws, G.w_dim, device)
    if ws.shape[0] != x.shape[0]:
        raise ValueError(f"got {x.shape[0]} targets but {ws.shape[0]} pivots")
    return x, ws, [[n.to(device) for n in maps] for maps in noises]


def pivot_labels(G: nn.Module, pivots: Sequence[Pivot] | Pivot | torch.Tensor, c: Label, n: int,
                 device: torch.device) -> torch.Tensor | None:
    """Class labels ``[n, c_dim]`` of the n pivots (None for an unconditional ``G``): ``c`` when given (an index
    or a label ``[c_dim]`` for all, or ``[n, c_dim]``), else the labels the pivots were inverted with
    (``Pivot.c``). Raises :class:`~pti.core.conditioning.ConditioningError` when ``G`` is conditional and neither
    says the class, or when a label is given for an unconditional ``G``."""
    if c is None and getattr(G, "c_dim", 0) and not isinstance(pivots, torch.Tensor):
        given = [pivots] if isinstance(pivots, Pivot) else list(pivots)
        if given and all(p.c is not None for p in given):
            c = torch.cat([p.c.detach().reshape(1, -1).to(device) for p in given])
    return class_label(G, c, n, device)


def prepare_tuning(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                   pivots: Sequence[Pivot] | Pivot | torch.Tensor, cfg: TuningConfig, c: Label,
                   perceptual: PerceptualLoss | None, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]], PerceptualLoss,
                              LocalityRegularizer | None]:
    """What a tuning loop (this one, :mod:`pti.fast`'s) starts from: the photos ``x [N, C, R, R]``, their pivot
    ws ``[N, num_ws, w_dim]`` and noise maps (:func:`prepare_inputs`), the perceptual loss (``perceptual``, or
    one built from ``cfg``) and L_R's :class:`~pti.core.losses.LocalityRegularizer` (None when ``cfg.locality``
    is off). The pivots' classes (:func:`pivot_labels`) are checked first where locality or ``c`` needs them."""
    x, ws, noises = prepare_inputs(G, targets, pivots, device)
    labels = pivot_labels(G, pivots, c, x.shape[0], device) if cfg.locality.enabled or c is not None else None
    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)
    regularizer = LocalityRegularizer(G, perceptual, cfg.locality, labels) if cfg.locality.enabled else None
    return x, ws, noises, perceptual, regularizer


def batch_noise(noises: list[list[torch.Tensor]], idx: list[int]) -> list[torch.Tensor]:
    """Per noise layer, the chosen pivots' maps concatenated: ``[len(idx), 1, R, R]``."""
    chosen = [noises[i] for i in idx]
    if any(len(n) == 0 for n in chosen):
        raise ValueError("use_pivot_noise=True but a pivot has no optimised noise maps")
    return [torch.cat([n[layer] for n in chosen]) for layer in range(len(chosen[0]))]


def batch_indices(n: int, batch: int, order: list[int], gen: torch.Generator) -> tuple[list[int], list[int]]:
    """The next multi-image batch: all ``n`` photos, or ``batch`` of them from a shuffled ``order`` (refilled
    with ``torch.randperm(n, generator=gen)`` when it runs short). Returns ``(indices, rest of order)``."""
    if batch == n:
        return list(range(n)), order
    if len(order) < batch:
        order = order + torch.randperm(n, generator=gen).tolist()
    return order[:batch], order[batch:]


def select_features(features: list[torch.Tensor], idx: list[int], n: int) -> list[torch.Tensor]:
    """The photos ``idx`` of ``n`` photos' cached perceptual features (all of them as they are)."""
    return features if idx == list(range(n)) else [f[idx] for f in features]


def pivotal_tune(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                 pivots: Sequence[Pivot] | Pivot | torch.Tensor, cfg: TuningConfig | None = None, *,
                 c: Label = None, perceptual: PerceptualLoss | None = None, progress: bool = True,
                 callback: Callable[[int, dict[str, float]], None] | None = None,
                 checkpoint: Any = None) -> TuningResult:
    """Pivotal tuning of one generator for one or several photos (PTI Eq. 2-7).

    Args:
        G: the original generator (left unchanged).
        targets: ``[N, C, H, W]`` or a list of ``[C, H, W]``/``[1, C, H, W]`` in [-1, 1] (C = 3 or 1); resized to
            G's resolution and converted to its ``img_channels``.
        pivots: ``N`` :class:`~pti.core.pivot.Pivot` (or ws ``[N, num_ws, w_dim]``), in the order of ``targets``.
        cfg: :class:`~pti.core.config.TuningConfig` (paper defaults when None).
        c: conditional generators only: the class the locality codes ``w_z`` are mapped with (an index, a label
            ``[c_dim]`` or ``[N, c_dim]``); default: the pivots' ``Pivot.c``. With locality on, a conditional
            generator needs one or the other (:class:`~pti.core.conditioning.ConditioningError`).
        callback: ``callback(step, {'loss', 'perceptual', 'perceptual_max', 'output_rms'})`` after every update.
        checkpoint: saves and restores the loop's state (:class:`pti.jobs.multi_id.TuningCheckpoint`):
            ``checkpoint.restore(tuned, optimizer, gen, result) -> (first step, batch order)`` before the first
            step and ``checkpoint.after_step(step, tuned, optimizer, gen, result, order)`` after every update.
    Returns: :class:`TuningResult`. Raises ``ValueError`` for mismatched inputs,
    :class:`~pti.core.pivot.NonFiniteLossError` on NaN/inf and :class:`~pti.core.divergence.DivergenceError` when the
    rendered images leave any sane range (:mod:`pti.core.divergence`).
    """
    cfg = cfg or TuningConfig()
    validate(cfg)  # every field in its range (pti.core.config.ranged) before any work
    device = next(G.parameters()).device
    t0 = time.perf_counter()
    x, ws, noises, perceptual, regularizer = prepare_tuning(G, targets, pivots, cfg, c, perceptual, device)
    n = x.shape[0]
    batch = n if cfg.batch_size is None else max(1, min(cfg.batch_size, n))
    target_features = perceptual.target_features(x)  # the photos never change: their features, once
    tuned = copy.deepcopy(G).train(G.training).requires_grad_(True)  # θ*, starting at θ
    optimizer = torch.optim.Adam(tuned.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and locality samples
    result, order = TuningResult(generator=tuned, perceptual_name=perceptual.name), []
    start, order = checkpoint.restore(tuned, optimizer, gen, result) if checkpoint is not None else (0, order)

    bar = progress_bar(range(start, cfg.steps), desc=f"tune ({n} image{'s' if n > 1 else ''})",
                       disable=not progress, leave=False)
    for step in bar:
        idx, order = batch_indices(n, batch, order, gen)
        noise = batch_noise(noises, idx) if cfg.use_pivot_noise else None
        image = tuned.synthesis(ws[idx], noise_mode=cfg.noise_mode, force_fp32=True, noise=noise)
        dist = perceptual.distance_to(image, select_features(target_features, idx, n)).float()  # L_LPIPS per photo
        loss = cfg.l2_weight * l2_loss(image.float(), x[idx]) + cfg.lpips_weight * dist.mean()  # Eq. 4
        dist_max = float(dist.detach().max())
        result.perceptual_history.append(float(dist.detach().mean()))
        if cfg.lpips_threshold is not None and batch == n and dist_max <= cfg.lpips_threshold:  # early stop
            result.stopped_early = True
            result.loss_history.append(float(loss.detach()))
            break
        if regularizer is not None and step % cfg.locality.interval == 0:  # L_R, Eq. 5-7
            reg = regularizer(tuned, ws, gen)
            result.locality_history.append(float(reg.detach()))
            loss = loss + reg
        loss_value, rms = float(loss.detach()), float(output_rms(image).max())
        result.loss_history.append(loss_value)
        check_step("tuning", step, loss_value, rms)  # NaN/inf loss, diverged image
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.steps = step + 1
        if checkpoint is not None:
            checkpoint.after_step(step, tuned, optimizer, gen, result, order)
        bar.set_postfix(loss=f"{loss_value:.4f}", dist=f"{dist_max:.4f}")
        if callback is not None:
            callback(step, {"loss": loss_value, "perceptual": result.perceptual_history[-1],
                            "perceptual_max": dist_max, "output_rms": rms})

    tuned.requires_grad_(False)
    result.seconds = time.perf_counter() - t0
    return result
