"""Batched inversion: K photos projected at once through one generator, with the execution paths.

:func:`project_batch` runs one batched synthesis per step; each photo keeps its own w, noise maps,
random stream (seeded as a single-photo run: its noise maps, then each step's w noise, exactly
as :func:`pti.core.projector.project` draws them) and Adam state, so photo k's pivot equals
``pti.core.projector.project(G, targets[k])`` up to float rounding. :class:`~pti.fast.ExecutionConfig`
adds autocast (fp16 with per-photo loss scaling through the masked :class:`~pti.fast.optim.FlatAdam`),
channels_last, the Adam implementation, torch.compile and host syncs every N steps.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import torch

from pti.core.conditioning import Label, class_label
from pti.core.config import InversionConfig, config_to_dict
from pti.core.divergence import DivergenceError, diverged_message, first_diverged, output_rms
from pti.fast.config import ExecutionConfig, check_execution
from pti.fast.execution import (DeferredHistory, autocast, cached_target_features, first_non_finite, loss_scaler,
                                maybe_compile, step_environment, to_channels_last)
from pti.fast.graphs import StepGraphs
from pti.fast.optim import AdamStep, FlatAdam, make_adam
from pti.images import prepare_target
from pti.core.losses import PerceptualLoss, l2_per_image, noise_regularization_per_image
from pti.core.pivot import NonFiniteLossError, Pivot
from pti.progress import progress_bar
from pti.core.projector import initial_w, learning_rate, w_noise_scale, w_statistics


def _target_list(targets: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(targets, torch.Tensor):
        return list(targets.unbind(0)) if targets.ndim == 4 else [targets]
    return list(targets)


def project_batch(G: torch.nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                  cfg: InversionConfig | None = None, *, w_init: Sequence[torch.Tensor | None] | None = None,
                  c: Label = None, perceptual: PerceptualLoss | None = None, progress: bool = True,
                  callback: Callable[[int, dict[str, Any]], None] | None = None,
                  execution: ExecutionConfig | None = None) -> list[Pivot]:
    """Invert K photos at once (one batched synthesis per step); photo k's pivot equals ``project(G, targets[k])``.

    Args:
        targets: ``[K, C, H, W]`` or a list of K ``[C, H, W]``/``[1, C, H, W]``, in [-1, 1] (C = 3 or 1).
        w_init: None, or one start (or None) per photo, as :func:`project`'s ``w_init``.
        c: as :func:`project`'s ``c``: one class for all K photos (they share the w statistics).
        callback: ``callback(step, {'loss': [K], 'perceptual': [K], 'output_rms': [K], 'lr': float})`` (with
            ``execution.sync_every > 1``: for each step, in order, at every sync).
        execution: how the steps are computed (:class:`~pti.fast.ExecutionConfig`; default: as the core).
    Returns: K :class:`Pivot` in the order of ``targets``. Raises :class:`NonFiniteLossError` (naming the
    photo) if a loss becomes NaN/inf, :class:`~pti.core.divergence.DivergenceError` (naming it too) if its image
    leaves any sane range (:mod:`pti.core.divergence`).
    """
    cfg = cfg or InversionConfig()
    ex = execution or ExecutionConfig()
    _check_arguments(cfg, ex)
    device = next(G.parameters()).device
    label = class_label(G, c, 1, device)  # [1, c_dim] or None; raises before any work
    t0 = time.perf_counter()
    x = torch.cat([prepare_target(t, G.img_resolution, device, G.img_channels) for t in _target_list(targets)])
    k_photos = x.shape[0]
    inits = _per_photo(w_init, k_photos)
    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)
    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed, device, c=label)
    start = torch.cat([initial_w(G, w, w_avg, cfg, device) for w in inits])  # [K, 1 or num_ws, w_dim]
    noise, w_noise_unit = _draw_ahead(G, cfg, k_photos, start.shape[1:], device)  # noise maps n, the w noise
    adam, w_opt, noise = _inversion_adam(start, noise, cfg, ex, device)
    from pti.stylegan2.checkpoints import weights_fingerprint

    fingerprint = weights_fingerprint(G)
    pivots = [Pivot(w=start[k:k + 1], space=cfg.space, perceptual_name=perceptual.name, config=config_to_dict(cfg),
                    generator=fingerprint, c=label) for k in range(k_photos)]
    history = DeferredHistory(ex.sync_every)
    desc = f"invert ({cfg.space})" + (f" x{k_photos}" if k_photos > 1 else "")
    bar = progress_bar(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    w_noise = torch.zeros_like(w_noise_unit[0])  # this step's w noise, where the step (or its graph) reads it
    target: list[torch.Tensor] = []  # the photos' features, filled below
    step_loss = maybe_compile(_inversion_loss(G, perceptual, cfg, ex, device), ex.compile, ex.compile_mode)
    whole_step = _inversion_step(step_loss, adam, w_opt, w_noise, noise, x, target)
    run_step = StepGraphs(whole_step, device, enabled=ex.cuda_graphs, what="inversion step")
    with step_environment(ex, device, perceptual, G, traceable=ex.compile):
        target += cached_target_features(perceptual, x, ex, device)  # once (as NVIDIA's projector)
        for step in bar:
            adam.set_lr(learning_rate(step, cfg.steps, cfg))  # warm-up, cosine ramp-down
            w_noise.copy_(w_noise_unit[step] * w_noise_scale(step, w_std, cfg))  # decaying noise on w
            loss, dist, rms = run_step()  # L_LPIPS + λ_n · L_n (Eq. 1), Adam, the noise maps renormalised
            history.record(step, loss=loss, perceptual=dist, output_rms=rms)
            _consume(history.flush_if_due(step, cfg.steps), pivots, bar, callback, cfg)

    _finish(pivots, w_opt, noise, G, cfg, (time.perf_counter() - t0) / k_photos)
    return pivots


def _check_arguments(cfg: InversionConfig, ex: ExecutionConfig) -> None:
    if cfg.space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {cfg.space!r}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    check_execution(ex)


def _per_photo(w_init: Sequence[torch.Tensor | None] | None, k_photos: int) -> list[torch.Tensor | None]:
    inits = list(w_init) if w_init is not None else [None] * k_photos
    if len(inits) != k_photos:
        raise ValueError(f"got {k_photos} targets but {len(inits)} w_init entries")
    return inits


def _draw_ahead(G: torch.nn.Module, cfg: InversionConfig, k_photos: int, w_shape: torch.Size,
                device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every random number of the run, drawn ahead: per noise layer the K photos' starting maps
    ``[K, 1, R, R]`` (none without ``optimize_noise``), and the unit w noise ``[steps, K, *w_shape]``.
    Each photo has its own stream, seeded as a single-photo run of :func:`pti.core.projector.project`: its noise
    maps, then each step's w noise."""
    noise_layers = G.synthesis.noise_layers()
    noise_init: list[list[torch.Tensor]] = [[] for _ in noise_layers]
    w_noise_unit = []
    for _ in range(k_photos):
        gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.optimize_noise:
            for maps, layer in zip(noise_init, noise_layers):
                maps.append(torch.randn([1, 1, layer.resolution, layer.resolution], generator=gen))
        w_noise_unit.append(torch.stack([torch.randn([1, *w_shape], generator=gen) for _ in range(cfg.steps)]))
    noise = [torch.cat(maps).to(device) for maps in noise_init] if cfg.optimize_noise else []
    return noise, torch.cat(w_noise_unit, dim=1).to(device)


def _inversion_adam(start: torch.Tensor, noise: list[torch.Tensor], cfg: InversionConfig, ex: ExecutionConfig,
                    device: torch.device) -> tuple[AdamStep, torch.Tensor, list[torch.Tensor]]:
    """Adam over ``w`` and the noise maps, and the tensors it optimises (``w_opt``, the maps): the masked
    :class:`FlatAdam` for fp16 overflow skipping or graph-safe steps, else ``ex.adam``'s ``torch.optim.Adam``."""
    scaler = loss_scaler(ex, device)
    if scaler is not None or ex.cuda_graphs:
        flat = FlatAdam([start] + noise, lr=cfg.lr, compile_update=ex.compile)
        w_opt, *noise = flat.params
        return AdamStep(flat=flat, scaler=scaler), w_opt, noise
    w_opt = start.clone().requires_grad_(True)
    for n in noise:
        n.requires_grad_(True)
    return AdamStep(optimizer=make_adam([w_opt] + noise, lr=cfg.lr, impl=ex.adam)), w_opt, noise


def _inversion_loss(G: torch.nn.Module, perceptual: PerceptualLoss, cfg: InversionConfig, ex: ExecutionConfig,
                    device: torch.device) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``forward(w_opt, w_noise, noise, x, target)``: per-photo losses ``[K]`` (PTI Eq. 1: L_LPIPS, plus
    λ_n · L_n and the optional pixel term), perceptual distances ``[K]`` and image RMS values ``[K]``
    (divergence); ``target``: the photos' cached perceptual features."""
    num_ws = G.num_ws

    def forward(w_opt: torch.Tensor, w_noise: torch.Tensor, noise: list[torch.Tensor], x: torch.Tensor,
                target: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ws = (w_opt + w_noise).expand(-1, num_ws, -1)
        with autocast(device, ex.precision):
            image = G.synthesis(ws, noise_mode="const", force_fp32=ex.force_fp32, noise=noise if noise else None)
            dist = perceptual.distance_to(to_channels_last(image, ex.channels_last), target).float()
        loss = dist
        if noise:
            loss = loss + cfg.noise_reg_weight * noise_regularization_per_image(noise)
        if cfg.l2_weight:
            loss = loss + cfg.l2_weight * l2_per_image(image.float(), x)
        return loss, dist, output_rms(image)

    return forward


def _inversion_step(step_loss: Callable[..., Any], adam: AdamStep, w_opt: torch.Tensor, w_noise: torch.Tensor,
                    noise: list[torch.Tensor], x: torch.Tensor,
                    target: list[torch.Tensor]) -> Callable[[Any], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The whole step: forward, backward, Adam and the noise maps' renormalisation; it reads only the fixed
    tensors it is given (the caller copies each step's values into them), so it is graph-safe with the
    masked Adam."""
    def whole_step(_: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, dist, rms = step_loss(w_opt, w_noise, noise, x, target)
        adam.update(loss.sum())
        renormalize_noise(noise)
        return loss, dist, rms

    return whole_step


@torch.no_grad()
def renormalize_noise(noise: list[torch.Tensor]) -> None:
    """Keep each photo's noise maps ``[K, 1, R, R]`` zero-mean, unit-variance (in place; StyleGAN2's projector)."""
    for n in noise:
        n -= n.mean(dim=(1, 2, 3), keepdim=True)
        n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def _finish(pivots: list[Pivot], w_opt: torch.Tensor, noise: list[torch.Tensor], G: torch.nn.Module,
            cfg: InversionConfig, seconds: float) -> None:
    """Each photo's optimised w (broadcast to ``[1, num_ws, w_dim]``), noise maps, step count and time."""
    for k, pivot in enumerate(pivots):
        pivot.w = w_opt.detach()[k:k + 1].expand(1, G.num_ws, G.w_dim).clone()
        pivot.noise = [n.detach()[k:k + 1].clone() for n in noise]
        pivot.steps = cfg.steps
        pivot.seconds = seconds


def _consume(rows: list[tuple[int, dict[str, Any]]], pivots: list[Pivot], bar: Any,
             callback: Callable[[int, dict[str, Any]], None] | None, cfg: InversionConfig) -> None:
    """Append flushed per-step values to the pivots' histories; raise on a non-finite loss or a diverged
    image (:mod:`pti.core.divergence`), whichever comes first."""
    bad = first_non_finite(rows, "loss")
    diverged = first_diverged(rows)
    if bad is not None and (diverged is None or bad[0] <= diverged[0]):
        step, value = bad
        row = dict(rows)[step]
        photo = next(k for k, v in enumerate(row["loss"]) if not math.isfinite(v))
        which = f" (photo {photo})" if len(pivots) > 1 else ""
        raise NonFiniteLossError(f"inversion loss became {value} at step {step}{which}")
    if diverged is not None:
        step, rms, photo = diverged
        raise DivergenceError(diverged_message("inversion" + (f" (photo {photo})" if len(pivots) > 1 else ""),
                                               step, rms))
    for step, row in rows:
        for k, pivot in enumerate(pivots):
            pivot.loss_history.append(row["loss"][k])
            pivot.perceptual_history.append(row["perceptual"][k])
        if callback is not None:
            callback(step, {**row, "lr": learning_rate(step, cfg.steps, cfg)})
    if rows:
        last = rows[-1][1]
        bar.set_postfix(loss=f"{max(last['loss']):.4f}", dist=f"{max(last['perceptual']):.4f}")


def project(G: torch.nn.Module, target: torch.Tensor, cfg: InversionConfig | None = None, *,
            execution: ExecutionConfig | None = None, init: torch.nn.Module | None = None,
            w_init: torch.Tensor | None = None, c: Label = None, perceptual: PerceptualLoss | None = None,
            progress: bool = True, callback: Callable[[int, dict[str, float]], None] | None = None) -> Pivot:
    """:func:`pti.core.projector.project` through :func:`project_batch` (K = 1) with ``execution``'s speed paths;
    the same arguments, returns and errors. Equal to the core within the tolerances of tests/test_speed_paths.py.
    0 steps (from an encoder or ``w_init``) have no step to speed up: the core returns the start."""
    from pti.core.projector import project as core_project

    cfg = cfg or InversionConfig()
    if target.ndim == 4 and target.shape[0] != 1:
        raise ValueError(f"target must be [C, H, W] or [1, C, H, W], got {tuple(target.shape)}; "
                         "use project_batch for several photos")
    if cfg.steps == 0:
        return core_project(G, target, cfg, init=init, w_init=w_init, c=c, perceptual=perceptual, progress=progress)
    if init is not None:  # the encoder's code for the photo is the start
        device = next(G.parameters()).device
        with torch.no_grad():
            w_init = init.encode(prepare_target(target, G.img_resolution, device, G.img_channels))
    single_callback = None
    if callback is not None:
        def single_callback(step: int, values: dict[str, Any]) -> None:
            callback(step, {"loss": values["loss"][0], "perceptual": values["perceptual"][0], "lr": values["lr"]})
    pivot = project_batch(G, [target], cfg, w_init=None if w_init is None else [w_init], c=c, perceptual=perceptual,
                          progress=progress, callback=single_callback, execution=execution)[0]
    pivot.origin = "e4e" if init is not None else "projector" if w_init is None else "w_init"
    return pivot
