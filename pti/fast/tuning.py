"""Pivotal tuning with the execution paths: autocast, loss scaling, channels_last, compile, deferred syncs.

The loop of :func:`pti.core.tuning.pivotal_tune` with :class:`~pti.fast.ExecutionConfig`. With
``sync_every > 1`` (or fp16 loss scaling) the early stop is decided on the device and the weights
are frozen there from that step on (:class:`pti.fast.optim.FlatAdam`), so the result is the
one-sync-per-step result while the host reads values back only every N steps.
:mod:`pti.fast.batched` tunes K photos at once, each with its own copy of the weights.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pti.core.conditioning import Label
from pti.core.config import TuningConfig
from pti.core.divergence import output_rms
from pti.fast.config import ExecutionConfig, check_execution
from pti.fast.execution import (DeferredHistory, autocast, cached_target_features, loss_scaler, maybe_compile,
                                step_environment, to_channels_last)
from pti.fast.graphs import StepGraphs
from pti.fast.optim import AdamStep, bind_module_parameters, make_adam
from pti.core.losses import LocalityRegularizer, PerceptualLoss, l2_loss
from pti.core.pivot import Pivot, check_step
from pti.progress import progress_bar
from pti.core.tuning import TuningResult, batch_indices, batch_noise, prepare_tuning, select_features


def start_tuning(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                 pivots: Sequence[Pivot] | Pivot | torch.Tensor, cfg: TuningConfig | None,
                 execution: ExecutionConfig | None, c: Label, perceptual: PerceptualLoss | None
                 ) -> tuple[TuningConfig, ExecutionConfig, torch.device, float, tuple]:
    """The fast tuning loops' common start (:func:`pivotal_tune`, :func:`pti.fast.batched.tune_batched`): the
    configs (defaults: the paper's and the core's execution; the execution checked), G's device, the start time
    (``time.perf_counter()``) and the core's :func:`~pti.core.tuning.prepare_tuning` of the inputs."""
    cfg = cfg or TuningConfig()
    ex = execution or ExecutionConfig()
    check_execution(ex)
    device = next(G.parameters()).device
    t0 = time.perf_counter()
    return cfg, ex, device, t0, prepare_tuning(G, targets, pivots, cfg, c, perceptual, device)


def pivotal_tune(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                 pivots: Sequence[Pivot] | Pivot | torch.Tensor, cfg: TuningConfig | None = None, *,
                 c: Label = None, perceptual: PerceptualLoss | None = None, progress: bool = True,
                 callback: Callable[[int, dict[str, float]], None] | None = None,
                 execution: ExecutionConfig | None = None) -> TuningResult:
    """:func:`pti.core.tuning.pivotal_tune` with ``execution``'s speed paths (one generator for all photos).

    The same arguments, returns and errors as the core (its docstring says them), plus ``execution``
    (:class:`~pti.fast.ExecutionConfig`; default: the core's execution) and without ``checkpoint``. With
    ``execution.sync_every > 1`` the ``callback`` is called for each step, in order, at every sync. Equal to the
    core within the tolerances of tests/test_speed_paths.py.
    """
    cfg, ex, device, t0, prepared = start_tuning(G, targets, pivots, cfg, execution, c, perceptual)
    x, ws, noises, perceptual, regularizer = prepared
    n = x.shape[0]
    batch = n if cfg.batch_size is None else max(1, min(cfg.batch_size, n))
    tuned = copy.deepcopy(G).train(G.training).requires_grad_(True)  # θ*, starting at θ
    adam = _tuning_adam(tuned, cfg, ex, device)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and locality samples
    step_loss, locality_penalty = _tuning_losses(tuned, perceptual, regularizer, cfg, ex, device)
    result, order = TuningResult(generator=tuned, perceptual_name=perceptual.name), []
    bar = progress_bar(range(cfg.steps), desc=f"tune ({n} image{'s' if n > 1 else ''})", disable=not progress,
                       leave=False)
    with step_environment(ex, device, perceptual, tuned, traceable=ex.compile):
        photos = _Photos(x, ws, noises, cached_target_features(perceptual, x, ex, device), batch, cfg.use_pivot_noise)
        if adam.flat is not None:  # device-side control flow: graph-safe steps, captured when asked
            _tune_on_device(photos, cfg, ex, gen, regularizer, step_loss, locality_penalty, adam, result, bar,
                            callback, device)
        else:
            for step in bar:  # the official control flow: read the values back every step
                idx, order = batch_indices(n, batch, order, gen)
                loss, dist, rms = step_loss(*photos.of(idx))  # Eq. 4 for the batch; L_LPIPS per photo
                dist_max = float(dist.detach().max())
                result.perceptual_history.append(float(dist.detach().mean()))
                if photos.all_at_once and cfg.lpips_threshold is not None and dist_max <= cfg.lpips_threshold:
                    result.stopped_early = True  # early stop
                    result.loss_history.append(float(loss.detach()))
                    break
                reg = {}
                if regularizer is not None and step % cfg.locality.interval == 0:  # L_R, Eq. 5-7
                    penalty = locality_penalty(regularizer.sample_w(ws, gen))
                    loss, reg = loss + penalty, {"locality": float(penalty.detach())}
                loss_value, rms_max = float(loss.detach()), float(rms.max())
                result.loss_history.append(loss_value)
                check_step("tuning", step, loss_value, rms_max)
                adam.update(loss)
                _finish_step(step, {"loss": loss_value, "perceptual": result.perceptual_history[-1],
                                    "perceptual_max": dist_max, "output_rms": rms_max, **reg}, result, bar, callback)

    tuned.requires_grad_(False)
    result.seconds = time.perf_counter() - t0
    return result


@dataclass
class _Photos:
    """The photos ``x [N, C, R, R]``, their pivots ``ws [N, num_ws, w_dim]``, noise maps and cached perceptual
    features ``target``; :meth:`of` gives a step's batch as :func:`_tuning_losses`' ``forward`` takes it."""

    x: torch.Tensor
    ws: torch.Tensor
    noises: list[list[torch.Tensor]]
    target: list[torch.Tensor]
    batch: int
    use_pivot_noise: bool

    @property
    def all_at_once(self) -> bool:  # every step sees every photo: the early stop applies
        return self.batch == self.x.shape[0]

    def of(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None]:
        return (self.ws[idx], self.x[idx], select_features(self.target, idx, self.x.shape[0]),
                batch_noise(self.noises, idx) if self.use_pivot_noise else None)


def _tuning_adam(tuned: nn.Module, cfg: TuningConfig, ex: ExecutionConfig, device: torch.device) -> AdamStep:
    """Adam over θ*: the masked :class:`FlatAdam` bound to ``tuned``'s parameters where the control flow lives on
    the device (``sync_every > 1``, fp16 loss scaling, CUDA graphs), else ``ex.adam``'s ``torch.optim.Adam``."""
    params = list(tuned.parameters())
    scaler = loss_scaler(ex, device)
    if ex.sync_every > 1 or scaler is not None or ex.cuda_graphs:  # updates are masked on the device
        flat = bind_module_parameters(tuned, compile_update=ex.compile, lr=cfg.lr)
        return AdamStep(flat=flat, scaler=scaler, grad_sources=params)
    return AdamStep(optimizer=make_adam(params, lr=cfg.lr, impl=ex.adam))


def _tuning_losses(tuned: nn.Module, perceptual: PerceptualLoss, regularizer: LocalityRegularizer | None,
                   cfg: TuningConfig, ex: ExecutionConfig,
                   device: torch.device) -> tuple[Callable[..., Any], Callable[[torch.Tensor], torch.Tensor]]:
    """``forward(ws, x, target, noise) -> (loss, dist [B], rms [B])``: Eq. 4 (``λ_L2 · L_L2 + λ_LPIPS · L_LPIPS``,
    the batch mean), the per-image perceptual distances and image RMS values (:mod:`pti.core.divergence`); and
    ``locality_penalty(w_r)``: L_R (Eq. 5-7) against the original's images of ``w_r``. Both compiled when asked."""
    def forward(ws_b: torch.Tensor, x_b: torch.Tensor, target_b: list[torch.Tensor],
                noise_b: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with autocast(device, ex.precision):
            image = tuned.synthesis(ws_b, noise_mode=cfg.noise_mode, force_fp32=ex.force_fp32, noise=noise_b)
            dist = perceptual.distance_to(to_channels_last(image, ex.channels_last), target_b).float()
        return cfg.l2_weight * l2_loss(image.float(), x_b) + cfg.lpips_weight * dist.mean(), dist, output_rms(image)

    def locality(w_r: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        with autocast(device, ex.precision):
            rendered = tuned.synthesis(w_r, noise_mode=cfg.locality.noise_mode, force_fp32=ex.force_fp32)
            return regularizer.penalty_per_group(rendered, reference)[0]

    step_locality = maybe_compile(locality, ex.compile, ex.compile_mode)

    def locality_penalty(w_r: torch.Tensor) -> torch.Tensor:
        with autocast(device, ex.precision):
            reference = regularizer.reference(w_r, ex.force_fp32)
        return step_locality(w_r, reference)

    return maybe_compile(forward, ex.compile, ex.compile_mode), locality_penalty


def _finish_step(step: int, row: dict[str, float], result: TuningResult, bar: Any,
                 callback: Callable[[int, dict[str, float]], None] | None) -> None:
    """After an applied update: its L_R into the history, the step count, the progress bar and the callback."""
    if "locality" in row:
        result.locality_history.append(row["locality"])
    result.steps = step + 1
    bar.set_postfix(loss=f"{row['loss']:.4f}", dist=f"{row['perceptual_max']:.4f}")
    if callback is not None:
        callback(step, {key: row[key] for key in ("loss", "perceptual", "perceptual_max", "output_rms")})


def draw_ahead(n: int, batch: int, steps: int, regularizer: LocalityRegularizer | None, interval: int,
               gen: torch.Generator) -> tuple[list[list[int]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every step's photos and every regularised step's locality draw, in the order the core's loop draws them
    from ``gen`` (:func:`pti.core.tuning.batch_indices`, then :meth:`~pti.core.losses.LocalityRegularizer.draw`), so a
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


def _tune_on_device(photos: _Photos, cfg: TuningConfig, ex: ExecutionConfig, gen: torch.Generator,
                    regularizer: LocalityRegularizer | None, step_loss: Callable[..., Any],
                    locality_penalty: Callable[[torch.Tensor], torch.Tensor], adam: AdamStep, result: TuningResult,
                    bar: Any, callback: Callable[[int, dict[str, float]], None] | None, device: torch.device) -> None:
    """The tuning loop with its control flow on the device: the early stop freezes the weights through the
    masked Adam, values are read back every ``sync_every`` steps, and each step is graph-safe (its inputs are
    copied into fixed tensors before it runs, its random numbers drawn ahead), so ``ex.cuda_graphs`` can
    capture it (:class:`~pti.fast.graphs.StepGraphs`: one graph for plain steps, one for regularised ones)."""
    n = photos.x.shape[0]
    early_stop = cfg.lpips_threshold is not None and photos.all_at_once
    batches, draws = draw_ahead(n, photos.batch, cfg.steps, regularizer, cfg.locality.interval, gen)
    z_all = torch.stack([z for z, _ in draws]).to(device) if draws else None
    pivot_all = torch.stack([i for _, i in draws]).to(device) if draws else None
    inputs = _StepInputs()
    active = torch.ones([], dtype=torch.bool, device=device)

    def whole_step(regularize: bool) -> tuple[torch.Tensor, ...]:
        loss, dist, rms = step_loss(*inputs.photos)
        if early_stop:  # the threshold reached: this and every later update is masked out
            active.logical_and_(dist.detach().max() > cfg.lpips_threshold)
        reg = torch.zeros([], device=device)
        if regularize:
            reg = locality_penalty(regularizer.codes(photos.ws, inputs.z, inputs.pivot))
            loss = loss + reg
        adam.update(loss, active)
        return loss, dist, rms, reg

    run_step = StepGraphs(whole_step, device, enabled=ex.cuda_graphs, what="tuning step")
    history = DeferredHistory(ex.sync_every)
    draw = -1
    for step in bar:
        regularize = regularizer is not None and step % cfg.locality.interval == 0
        draw += regularize
        if not inputs.photos or not photos.all_at_once:  # the same tensors every step (a captured step reads them)
            inputs.set_photos(photos.of(batches[step]))
        if regularize:
            inputs.set_draw(z_all[draw], pivot_all[draw])
        loss, dist, rms, reg = run_step(regularize)
        history.record(step, loss=loss, perceptual=dist.mean(), perceptual_max=dist.max(), active=active,
                       output_rms=rms.max(), **({"locality": reg} if regularize else {}))
        if _consume(history.flush_if_due(step, cfg.steps), result, bar, callback):
            break


class _StepInputs:
    """The fixed tensors a graph-safe tuning step reads: ``photos`` (as :meth:`_Photos.of` gives them) and the
    locality draw ``z``, ``pivot``; the first values are kept, later ones copied into them."""

    def __init__(self) -> None:
        self.photos: tuple[Any, ...] = ()
        self.z: torch.Tensor | None = None
        self.pivot: torch.Tensor | None = None

    def set_photos(self, values: tuple[Any, ...]) -> None:
        if not self.photos:
            self.photos = values
            return
        for dst, src in zip(self.photos, values):
            _copy_into(dst, src)

    def set_draw(self, z: torch.Tensor, pivot: torch.Tensor) -> None:
        if self.z is None:
            self.z, self.pivot = z.clone(), pivot.clone()
            return
        self.z.copy_(z)
        self.pivot.copy_(pivot)


def _consume(rows: list[tuple[int, dict]], result: TuningResult, bar: Any,
             callback: Callable[[int, dict[str, float]], None] | None) -> bool:
    """Append flushed steps to ``result`` (device-decided early stop); True when tuning has stopped."""
    for step, row in rows:
        result.perceptual_history.append(row["perceptual"])
        result.loss_history.append(row["loss"])
        if not row["active"]:  # the threshold was reached at this step: no update was applied
            result.stopped_early = True
            return True
        check_step("tuning", step, row["loss"], row["output_rms"])
        _finish_step(step, row, result, bar, callback)
    return False
