"""Batched inversion: K photos projected at once through one generator, with the execution paths.

:func:`project_batch` runs one batched synthesis per step; each photo keeps its own w, noise maps,
random stream (seeded as a single-photo run: its noise maps, then each step's w noise, exactly
as :func:`pti.projector.project` draws them) and Adam state, so photo k's pivot equals
``pti.projector.project(G, targets[k])`` up to float rounding. :class:`~pti.fast.ExecutionConfig`
adds autocast (fp16 with per-photo loss scaling through the masked :class:`~pti.fast.optim.FlatAdam`),
channels_last, the Adam implementation, torch.compile and host syncs every N steps.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import torch

from pti.conditioning import Label, class_label
from pti.config import InversionConfig, config_to_dict
from pti.divergence import DivergenceError, diverged_message, first_diverged, output_rms
from pti.fast.config import ExecutionConfig, check_execution
from pti.fast.execution import (DeferredHistory, autocast, channels_last, first_non_finite, maybe_compile,
                                needs_loss_scaling, tf32, to_channels_last, traceable_ops)
from pti.fast.graphs import StepGraphs
from pti.fast.optim import DeviceLossScaler, FlatAdam, make_adam
from pti.images import prepare_target
from pti.losses import PerceptualLoss, l2_per_image, noise_regularization_per_image
from pti.pivot import NonFiniteLossError, Pivot
from pti.progress import progress_bar
from pti.projector import initial_w, learning_rate, w_noise_scale, w_statistics


def _target_list(targets: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(targets, torch.Tensor):
        return list(targets.unbind(0)) if targets.ndim == 4 else [targets]
    return list(targets)


def project_batch(
    G: torch.nn.Module,
    targets: torch.Tensor | Sequence[torch.Tensor],
    cfg: InversionConfig | None = None,
    *,
    w_init: Sequence[torch.Tensor | None] | None = None,
    c: Label = None,
    perceptual: PerceptualLoss | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    execution: ExecutionConfig | None = None,
) -> list[Pivot]:
    """Invert K photos at once (one batched synthesis per step); photo k's pivot equals ``project(G, targets[k])``.

    Args:
        targets: ``[K, C, H, W]`` or a list of K ``[C, H, W]``/``[1, C, H, W]``, in [-1, 1] (C = 3 or 1).
        w_init: None, or one start (or None) per photo, as :func:`project`'s ``w_init``.
        c: as :func:`project`'s ``c``: one class for all K photos (they share the w statistics).
        callback: ``callback(step, {'loss': [K], 'perceptual': [K], 'output_rms': [K], 'lr': float})`` (with
            ``execution.sync_every > 1``: for each step, in order, at every sync).
        execution: how the steps are computed (:class:`~pti.fast.ExecutionConfig`; default: as the core).
    Returns: K :class:`Pivot` in the order of ``targets``. Raises :class:`NonFiniteLossError` (naming the
    photo) if a loss becomes NaN/inf, :class:`~pti.divergence.DivergenceError` (naming it too) if its image
    leaves any sane range (:mod:`pti.divergence`).
    """
    cfg = cfg or InversionConfig()
    ex = execution or ExecutionConfig()
    if cfg.space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {cfg.space!r}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    check_execution(ex)
    device = next(G.parameters()).device
    label = class_label(G, c, 1, device)  # [1, c_dim] or None; raises before any work
    t0 = time.perf_counter()
    x = torch.cat([prepare_target(t, G.img_resolution, device, G.img_channels) for t in _target_list(targets)])
    k_photos = x.shape[0]
    inits = list(w_init) if w_init is not None else [None] * k_photos
    if len(inits) != k_photos:
        raise ValueError(f"got {k_photos} targets but {len(inits)} w_init entries")
    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)

    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed, device, c=label)
    num_ws = G.num_ws
    start = torch.cat([initial_w(G, w, w_avg, cfg, device) for w in inits])  # [K, 1 or num_ws, w_dim]

    # Each photo has its own random stream, seeded as a single-photo run: its noise maps, then per-step w noise.
    noise_layers = G.synthesis.noise_layers()
    noise_init: list[list[torch.Tensor]] = [[] for _ in noise_layers]
    w_noise_unit = []
    for _ in range(k_photos):
        gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.optimize_noise:
            for maps, layer in zip(noise_init, noise_layers):
                maps.append(torch.randn([1, 1, layer.resolution, layer.resolution], generator=gen))
        w_noise_unit.append(torch.stack([torch.randn([1, *start.shape[1:]], generator=gen) for _ in range(cfg.steps)]))
    w_noise_unit_all = torch.cat(w_noise_unit, dim=1).to(device)  # [steps, K, 1 or num_ws, w_dim]
    noise = [torch.cat(maps).to(device) for maps in noise_init] if cfg.optimize_noise else []

    scaler = DeviceLossScaler(device) if needs_loss_scaling(ex, device) else None
    flat: FlatAdam | None = None
    if scaler is not None or ex.cuda_graphs:  # fp16 overflow skipping, or graph-safe steps: the masked Adam
        flat = FlatAdam([start] + noise, lr=cfg.lr, compile_update=ex.compile)
        w_opt, *noise = flat.params
        optimizer = None
    else:
        w_opt = start.clone().requires_grad_(True)
        for n in noise:
            n.requires_grad_(True)
        optimizer = make_adam([w_opt] + noise, lr=cfg.lr, impl=ex.adam)

    def forward(w_opt: torch.Tensor, w_noise: torch.Tensor, noise: list[torch.Tensor], x: torch.Tensor,
                target: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-photo losses ``[K]``, perceptual distances ``[K]`` and image RMS values ``[K]`` (divergence);
        ``target``: the photos' cached perceptual features."""
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

    step_loss = maybe_compile(forward, ex.compile, ex.compile_mode)
    from pti.stylegan2.checkpoints import weights_fingerprint

    fingerprint = weights_fingerprint(G)
    pivots = [Pivot(w=start[k:k + 1], space=cfg.space, perceptual_name=perceptual.name, config=config_to_dict(cfg),
                    generator=fingerprint, c=label) for k in range(k_photos)]
    history = DeferredHistory(ex.sync_every)
    desc = f"invert ({cfg.space})" + (f" x{k_photos}" if k_photos > 1 else "")
    bar = progress_bar(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    w_noise = torch.zeros_like(w_noise_unit_all[0])  # this step's w noise, where the step (or its graph) reads it
    target: list[torch.Tensor] = []

    def whole_step(_: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward, backward, Adam and the noise maps' renormalisation; graph-safe with the masked Adam."""
        loss, dist, rms = step_loss(w_opt, w_noise, noise, x, target)
        total = loss.sum()
        if flat is not None:
            flat.zero_grad()
            (scaler.scale_loss(total) if scaler is not None else total).backward()
            flat.step(scaler=scaler)
        else:
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        with torch.no_grad():  # keep each photo's noise maps zero-mean, unit-variance
            for n in noise:
                n -= n.mean(dim=(1, 2, 3), keepdim=True)
                n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        return loss, dist, rms

    run_step = StepGraphs(whole_step, device, enabled=ex.cuda_graphs, what="inversion step")
    with traceable_ops(device, ex.compile), channels_last([perceptual], [G], enabled=ex.channels_last), \
            tf32(ex.tf32):
        with autocast(device, ex.precision):  # the photos' features, once (as NVIDIA's projector)
            target += perceptual.target_features(to_channels_last(x, ex.channels_last))
        for step in bar:
            lr = learning_rate(step, cfg.steps, cfg)
            if flat is not None:
                flat.set_lr(lr)  # a device-side fill: no sync, read by the captured step
            else:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            w_noise.copy_(w_noise_unit_all[step] * w_noise_scale(step, w_std, cfg))
            loss, dist, rms = run_step()
            history.record(step, loss=loss, perceptual=dist, output_rms=rms)
            if history.due(step) or step == cfg.steps - 1:
                _consume(history.flush(), pivots, bar, callback, cfg)

    seconds = (time.perf_counter() - t0) / k_photos
    for k, pivot in enumerate(pivots):
        pivot.w = w_opt.detach()[k:k + 1].expand(1, num_ws, G.w_dim).clone()
        pivot.noise = [n.detach()[k:k + 1].clone() for n in noise]
        pivot.steps = cfg.steps
        pivot.seconds = seconds
    return pivots


def _consume(rows: list[tuple[int, dict[str, Any]]], pivots: list[Pivot], bar: Any,
             callback: Callable[[int, dict[str, Any]], None] | None, cfg: InversionConfig) -> None:
    """Append flushed per-step values to the pivots' histories; raise on a non-finite loss or a diverged
    image (:mod:`pti.divergence`), whichever comes first."""
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
    """:func:`pti.projector.project` through :func:`project_batch` (K = 1) with ``execution``'s speed paths;
    the same arguments, returns and errors. Equal to the core within the tolerances of tests/test_speed_paths.py.
    0 steps (from an encoder or ``w_init``) have no step to speed up: the core returns the start."""
    from pti.projector import project as core_project

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
