"""Pivotal tuning with the execution paths: autocast, loss scaling, channels_last, compile, deferred syncs.

The loop of :func:`pti.tuning.pivotal_tune` with :class:`~pti.fast.ExecutionConfig`. With
``sync_every > 1`` (or fp16 loss scaling) the early stop is decided on the device and the weights
are frozen there from that step on (:class:`pti.fast.optim.FlatAdam`), so the result is the
one-sync-per-step result while the host reads values back only every N steps.
:mod:`pti.fast.batched` tunes K photos at once, each with its own copy of the weights.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pti.conditioning import Label
from pti.config import TuningConfig
from pti.divergence import DivergenceError, diverged_message, is_diverged, output_rms
from pti.fast.config import ExecutionConfig, check_execution
from pti.fast.execution import (DeferredHistory, autocast, channels_last, first_non_finite, maybe_compile,
                                needs_loss_scaling, tf32, to_channels_last, traceable_ops)
from pti.fast.graphs import StepGraphs
from pti.fast.optim import DeviceLossScaler, FlatAdam, bind_module_parameters, make_adam
from pti.losses import LocalityRegularizer, PerceptualLoss, l2_loss
from pti.pivot import NonFiniteLossError, Pivot
from pti.progress import progress_bar
from pti.tuning import TuningResult, batch_indices, batch_noise, pivot_labels, prepare_inputs, select_features


def pivotal_tune(
    G: nn.Module,
    targets: torch.Tensor | Sequence[torch.Tensor],
    pivots: Sequence[Pivot] | Pivot | torch.Tensor,
    cfg: TuningConfig | None = None,
    *,
    c: Label = None,
    perceptual: PerceptualLoss | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    execution: ExecutionConfig | None = None,
) -> TuningResult:
    """:func:`pti.tuning.pivotal_tune` with ``execution``'s speed paths (one generator for all photos).

    The same arguments, returns and errors as the core, plus ``execution``
    (:class:`~pti.fast.ExecutionConfig`). Equal to the core within the tolerances of
    tests/test_speed_paths.py.

    Args:
        G: the original generator (left unchanged).
        targets: ``[N, C, H, W]`` or a list of ``[C, H, W]``/``[1, C, H, W]`` in [-1, 1] (C = 3 or 1); resized to
            G's resolution and converted to its ``img_channels``.
        pivots: ``N`` :class:`~pti.pivot.Pivot` (or ws ``[N, num_ws, w_dim]``), in the order of ``targets``.
        cfg: :class:`~pti.config.TuningConfig` (paper defaults when None).
        c: conditional generators only: the class that the locality regulariser's codes ``w_z`` are mapped
            with (an index ``K``, a label ``[c_dim]``, or ``[N, c_dim]``, one per pivot); default: the pivots'
            own ``Pivot.c``. With locality on, a conditional generator needs one or the other
            (:class:`~pti.conditioning.ConditioningError`); it is refused for an unconditional generator.
        callback: ``callback(step, {'loss', 'perceptual', 'perceptual_max', 'output_rms'})`` after every update
            (with ``sync_every > 1``: for each step, in order, at every sync).
    Returns: :class:`TuningResult`. Raises :class:`~pti.pivot.NonFiniteLossError` on NaN/inf and
    :class:`~pti.divergence.DivergenceError` when the rendered images leave any sane range (:mod:`pti.divergence`).
    """
    cfg = cfg or TuningConfig()
    ex = execution or ExecutionConfig()
    check_execution(ex)
    device = next(G.parameters()).device
    t0 = time.perf_counter()
    x, ws, noises = prepare_inputs(G, targets, pivots, device)
    n = x.shape[0]
    labels = pivot_labels(G, pivots, c, n, device) if cfg.locality.enabled or c is not None else None
    batch = n if cfg.batch_size is None else max(1, min(cfg.batch_size, n))
    early_stop = cfg.lpips_threshold is not None and batch == n

    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)
    tuned = copy.deepcopy(G).train(G.training)
    tuned.requires_grad_(True)
    params = list(tuned.parameters())
    scaler = DeviceLossScaler(device) if needs_loss_scaling(ex, device) else None
    flat: FlatAdam | None = None
    optimizer = None
    if ex.sync_every > 1 or scaler is not None or ex.cuda_graphs:  # updates are masked on the device
        flat = bind_module_parameters(tuned, compile_update=ex.compile, lr=cfg.lr)
    else:
        optimizer = make_adam(params, lr=cfg.lr, impl=ex.adam)
    regularizer = LocalityRegularizer(G, perceptual, cfg.locality, labels) if cfg.locality.enabled else None
    gen = torch.Generator().manual_seed(cfg.seed)

    def forward(ws_b: torch.Tensor, x_b: torch.Tensor, target_b: list[torch.Tensor],
                noise_b: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reconstruction loss (scalar), the per-image perceptual distances ``[B]`` and image RMS values
        ``[B]`` (divergence, see :mod:`pti.divergence`); ``target_b``: the photos' cached perceptual features."""
        with autocast(device, ex.precision):
            image = tuned.synthesis(ws_b, noise_mode=cfg.noise_mode, force_fp32=ex.force_fp32, noise=noise_b)
            dist = perceptual.distance_to(to_channels_last(image, ex.channels_last), target_b).float()
        return cfg.l2_weight * l2_loss(image.float(), x_b) + cfg.lpips_weight * dist.mean(), dist, output_rms(image)

    def locality(w_r: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        with autocast(device, ex.precision):
            rendered = tuned.synthesis(w_r, noise_mode=cfg.locality.noise_mode, force_fp32=ex.force_fp32)
            return regularizer.penalty_per_group(rendered, reference)[0]

    step_loss = maybe_compile(forward, ex.compile, ex.compile_mode)
    step_locality = maybe_compile(locality, ex.compile, ex.compile_mode)

    result = TuningResult(generator=tuned, perceptual_name=perceptual.name)
    history = DeferredHistory(ex.sync_every)
    active = torch.ones([], dtype=torch.bool, device=device)
    order: list[int] = []
    bar = progress_bar(range(cfg.steps), desc=f"tune ({n} image{'s' if n > 1 else ''})", disable=not progress,
                       leave=False)
    with traceable_ops(device, ex.compile), channels_last([perceptual], [tuned], enabled=ex.channels_last), \
            tf32(ex.tf32):
        with autocast(device, ex.precision):  # the photos never change: their features, once
            target = perceptual.target_features(to_channels_last(x, ex.channels_last))
        if flat is not None:  # device-side control flow: graph-safe steps, captured when asked
            _tune_on_device(cfg, ex, n, batch, gen, regularizer, result, history, bar, callback, active, flat, scaler,
                            params, ws, x, target, noises, step_loss, step_locality, device)
            tuned.requires_grad_(False)
            result.seconds = time.perf_counter() - t0
            return result
        for step in bar:  # the official control flow: read the values back every step
            idx, order = batch_indices(n, batch, order, gen)
            noise = batch_noise(noises, idx) if cfg.use_pivot_noise else None
            loss, dist, rms = step_loss(ws[idx], x[idx], select_features(target, idx, n), noise)
            dist_max = float(dist.detach().max())
            result.perceptual_history.append(float(dist.detach().mean()))
            if early_stop and dist_max <= cfg.lpips_threshold:
                result.stopped_early = True
                result.loss_history.append(float(loss.detach()))
                break
            reg = None
            if regularizer is not None and step % cfg.locality.interval == 0:
                w_r = regularizer.sample_w(ws, gen)
                with autocast(device, ex.precision):
                    reference = regularizer.reference(w_r, ex.force_fp32)
                reg = step_locality(w_r, reference)
                loss = loss + reg
                result.locality_history.append(float(reg.detach()))
            loss_value = float(loss.detach())
            result.loss_history.append(loss_value)
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(f"tuning loss became {loss_value} at step {step}")
            rms_max = float(rms.max())
            if is_diverged(rms_max):
                raise DivergenceError(diverged_message("tuning", step, rms_max))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            result.steps = step + 1
            bar.set_postfix(loss=f"{loss_value:.4f}", dist=f"{dist_max:.4f}")
            if callback is not None:
                callback(step, {"loss": loss_value, "perceptual": result.perceptual_history[-1],
                                "perceptual_max": dist_max, "output_rms": rms_max})

    tuned.requires_grad_(False)
    result.seconds = time.perf_counter() - t0
    return result


def draw_ahead(n: int, batch: int, steps: int, regularizer: LocalityRegularizer | None, interval: int,
               gen: torch.Generator) -> tuple[list[list[int]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every step's photos and every regularised step's locality draw, in the order the core's loop draws them
    from ``gen`` (:func:`pti.tuning.batch_indices`, then :meth:`~pti.losses.LocalityRegularizer.draw`), so a
    run that draws them ahead uses the same numbers."""
    order: list[int] = []
    photos, draws = [], []
    for step in range(steps):
        idx, order = batch_indices(n, batch, order, gen)
        photos.append(idx)
        if regularizer is not None and step % interval == 0:
            draws.append(regularizer.draw(n, gen))
    return photos, draws


def _copy_into(dst: Any, src: Any) -> None:
    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    elif dst is not None:
        for d, s in zip(dst, src):
            d.copy_(s)


def _tune_on_device(cfg: TuningConfig, ex: ExecutionConfig, n: int, batch: int, gen: torch.Generator,
                    regularizer: LocalityRegularizer | None, result: TuningResult, history: DeferredHistory, bar: Any,
                    callback: Callable[[int, dict[str, float]], None] | None, active: torch.Tensor, flat: FlatAdam,
                    scaler: DeviceLossScaler | None, params: list[torch.Tensor], ws: torch.Tensor, x: torch.Tensor,
                    target: list[torch.Tensor], noises: list[list[torch.Tensor]], step_loss: Callable[..., Any],
                    step_locality: Callable[..., Any], device: torch.device) -> None:
    """The tuning loop with its control flow on the device: the early stop freezes the weights through the
    masked Adam, values are read back every ``sync_every`` steps, and each step is graph-safe (its inputs are
    copied into fixed tensors before it runs, its random numbers drawn ahead), so ``ex.cuda_graphs`` can
    capture it (:class:`~pti.fast.graphs.StepGraphs`: one graph for plain steps, one for regularised ones)."""
    early_stop = cfg.lpips_threshold is not None and batch == n
    photos, draws = draw_ahead(n, batch, cfg.steps, regularizer, cfg.locality.interval, gen)
    z_all = torch.stack([z for z, _ in draws]).to(device) if draws else None
    pivot_all = torch.stack([i for _, i in draws]).to(device) if draws else None
    inputs: dict[str, Any] = {}

    def set_inputs(idx: list[int], draw: int | None) -> None:
        if not inputs or batch != n:
            fresh = {"ws": ws[idx], "x": x[idx], "target": select_features(target, idx, n),
                     "noise": batch_noise(noises, idx) if cfg.use_pivot_noise else None}
            for key, value in fresh.items():
                if key in inputs:  # the same tensors every step (a captured step reads them there)
                    _copy_into(inputs[key], value)
                else:
                    inputs[key] = value
        if draw is not None:
            if "z" not in inputs:
                inputs["z"], inputs["pivot"] = z_all[draw].clone(), pivot_all[draw].clone()
            inputs["z"].copy_(z_all[draw])
            inputs["pivot"].copy_(pivot_all[draw])

    def whole_step(regularize: bool) -> tuple[torch.Tensor, ...]:
        loss, dist, rms = step_loss(inputs["ws"], inputs["x"], inputs["target"], inputs["noise"])
        if early_stop:  # the threshold reached: this and every later update is masked out
            active.logical_and_(dist.detach().max() > cfg.lpips_threshold)
        reg = torch.zeros([], device=device)
        if regularize:
            w_r = regularizer.codes(ws, inputs["z"], inputs["pivot"])
            with autocast(device, ex.precision):
                reference = regularizer.reference(w_r, ex.force_fp32)
            reg = step_locality(w_r, reference)
            loss = loss + reg
        flat.zero_grad(params)
        (scaler.scale_loss(loss) if scaler is not None else loss).backward()
        flat.step(active=active, scaler=scaler, grad_sources=params)
        return loss, dist, rms, reg

    run_step = StepGraphs(whole_step, device, enabled=ex.cuda_graphs, what="tuning step")
    draw = -1
    for step in bar:
        regularize = regularizer is not None and step % cfg.locality.interval == 0
        draw += regularize
        set_inputs(photos[step], draw if regularize else None)
        loss, dist, rms, reg = run_step(regularize)
        history.record(step, loss=loss, perceptual=dist.mean(), perceptual_max=dist.max(), active=active,
                       output_rms=rms.max(), **({"locality": reg} if regularize else {}))
        if (history.due(step) or step == cfg.steps - 1) and _consume(history.flush(), result, bar, callback):
            break


def _consume(rows: list[tuple[int, dict]], result: TuningResult, bar: Any,
             callback: Callable[[int, dict[str, float]], None] | None) -> bool:
    """Append flushed steps to ``result`` (device-decided early stop); True when tuning has stopped."""
    bad = first_non_finite(rows, "loss")
    for step, row in rows:
        result.perceptual_history.append(row["perceptual"])
        result.loss_history.append(row["loss"])
        if not row["active"]:  # the threshold was reached at this step: no update was applied
            result.stopped_early = True
            return True
        if bad is not None and bad[0] == step:
            raise NonFiniteLossError(f"tuning loss became {bad[1]} at step {step}")
        if is_diverged(row["output_rms"]):
            raise DivergenceError(diverged_message("tuning", step, row["output_rms"]))
        if "locality" in row:
            result.locality_history.append(row["locality"])
        result.steps = step + 1
        bar.set_postfix(loss=f"{row['loss']:.4f}", dist=f"{row['perceptual_max']:.4f}")
        if callback is not None:
            callback(step, {"loss": row["loss"], "perceptual": row["perceptual"],
                            "perceptual_max": row["perceptual_max"], "output_rms": row["output_rms"]})
    return False
