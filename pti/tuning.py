"""Pivotal tuning: fine-tune the generator so that ``G(w_p; θ*)`` reproduces each photo.

Loss per step (PTI Sec. 3.2-3.3), over the images of the step's batch:
``λ_L2 · MSE(G(w_p; θ), x) + λ_LPIPS · LPIPS(G(w_p; θ), x)`` plus, when enabled, the
locality regulariser of :class:`~pti.losses.LocalityRegularizer`. Adam, lr 3e-4; tuning
stops early once every image of the batch is within ``lpips_threshold``. The original
generator is never modified and is copied exactly once (into the tuned copy).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from pti.config import TuningConfig
from pti.inversion import NonFiniteLossError, Pivot, prepare_target
from pti.losses import LocalityRegularizer, PerceptualLoss, l2_loss


@dataclass
class TuningResult:
    """The tuned generator and what happened while tuning.

    ``loss_history``/``perceptual_history``: per step, the total loss and the batch's mean
    perceptual distance (before that step's update); ``final_perceptual``: per image, from the
    last evaluation; ``stopped_early``: the threshold was reached before ``steps``.
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


def _batch_noise(noises: list[list[torch.Tensor]], idx: list[int], device: torch.device) -> list[torch.Tensor] | None:
    chosen = [noises[i] for i in idx]
    if any(len(n) == 0 for n in chosen):
        raise ValueError("use_pivot_noise=True but a pivot has no optimised noise maps")
    return [torch.cat([n[layer] for n in chosen]).to(device) for layer in range(len(chosen[0]))]


def tune(
    G: nn.Module,
    targets: torch.Tensor | Sequence[torch.Tensor],
    pivots: Sequence[Pivot] | Pivot | torch.Tensor,
    cfg: TuningConfig | None = None,
    *,
    perceptual: PerceptualLoss | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TuningResult:
    """Pivotal tuning for one or several images (one generator for all of them).

    Args:
        G: the original generator (left unchanged).
        targets: ``[N, 3, H, W]`` or a list of ``[3, H, W]``/``[1, 3, H, W]`` in [-1, 1]; resized to G's resolution.
        pivots: ``N`` :class:`~pti.inversion.Pivot` (or ws ``[N, num_ws, w_dim]``), in the order of ``targets``.
        cfg: :class:`~pti.config.TuningConfig` (paper defaults when None).
    Returns: :class:`TuningResult`. Raises :class:`~pti.inversion.NonFiniteLossError` on NaN/inf.
    """
    cfg = cfg or TuningConfig()
    device = next(G.parameters()).device
    t0 = time.perf_counter()
    if isinstance(targets, torch.Tensor) and targets.ndim == 4:
        target_list = list(targets.unbind(0))
    elif isinstance(targets, torch.Tensor):
        target_list = [targets]
    else:
        target_list = list(targets)
    x = torch.cat([prepare_target(t, G.img_resolution, device) for t in target_list])
    ws, noises = _stack_pivots(pivots, G.num_ws, G.w_dim, device)
    if ws.shape[0] != x.shape[0]:
        raise ValueError(f"got {x.shape[0]} targets but {ws.shape[0]} pivots")
    n = x.shape[0]
    batch = n if cfg.batch_size is None else max(1, min(cfg.batch_size, n))

    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)
    tuned = copy.deepcopy(G).train(G.training)
    tuned.requires_grad_(True)
    optimizer = torch.optim.Adam([p for p in tuned.parameters()], lr=cfg.lr)
    regularizer = LocalityRegularizer(G, perceptual, cfg.locality) if cfg.locality.enabled else None
    gen = torch.Generator().manual_seed(cfg.seed)

    result = TuningResult(generator=tuned, perceptual_name=perceptual.name)
    order: list[int] = []
    bar = tqdm(range(cfg.steps), desc=f"tune ({n} image{'s' if n > 1 else ''})", disable=not progress, leave=False)
    for step in bar:
        if batch == n:
            idx = list(range(n))
        else:
            if len(order) < batch:
                order += torch.randperm(n, generator=gen).tolist()
            idx, order = order[:batch], order[batch:]
        noise = _batch_noise(noises, idx, device) if cfg.use_pivot_noise else None
        image = tuned.synthesis(ws[idx], noise_mode=cfg.noise_mode, force_fp32=cfg.force_fp32, noise=noise)
        dist = perceptual(image, x[idx])  # [B]
        loss = cfg.l2_weight * l2_loss(image, x[idx]) + cfg.lpips_weight * dist.mean()
        dist_max = float(dist.detach().max())
        result.perceptual_history.append(float(dist.detach().mean()))
        if cfg.lpips_threshold is not None and dist_max <= cfg.lpips_threshold and batch == n:
            result.stopped_early = True
            result.loss_history.append(float(loss.detach()))
            break
        if regularizer is not None and step % cfg.locality.interval == 0:
            reg = regularizer(tuned, ws, gen, force_fp32=cfg.force_fp32)
            result.locality_history.append(float(reg.detach()))
            loss = loss + reg
        loss_value = float(loss.detach())
        result.loss_history.append(loss_value)
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(f"tuning loss became {loss_value} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.steps = step + 1
        bar.set_postfix(loss=f"{loss_value:.4f}", dist=f"{dist_max:.4f}")
        if callback is not None:
            callback(step, {"loss": loss_value, "perceptual": float(dist.detach().mean()), "perceptual_max": dist_max})

    tuned.requires_grad_(False)
    result.seconds = time.perf_counter() - t0
    return result


def pivotal_tune(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                 pivots: Sequence[Pivot] | Pivot | torch.Tensor, cfg: TuningConfig | None = None,
                 **kwargs) -> nn.Module:
    """Like :func:`tune` but returns only the tuned generator."""
    return tune(G, targets, pivots, cfg, **kwargs).generator
