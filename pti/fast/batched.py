"""Batched pivotal tuning: K photos tuned at once, each with its own copy of the generator weights.

Every synthesis parameter is stacked along a new leading dimension ``K`` (one slot per photo)
and the unchanged synthesis network is evaluated once per step for all photos with
``torch.func.vmap`` over ``torch.func.functional_call``. StyleGAN2's modulated convolution is
already a grouped convolution over per-sample weights, so per-photo weights cost nothing
extra there: vmap turns each layer into one grouped convolution over the K photos. The
perceptual network runs on the K images as one batch.

Photo k's result equals ``pti.core.tuning.pivotal_tune(G, targets[k], pivots[k], cfg)`` up to float rounding: its own
loss (the sum over photos has independent gradients), its own Adam moments and step count
(:class:`~pti.fast.optim.FlatAdam`, one slot per photo), its own random stream for locality
samples, and its own early stop: once its perceptual distance reaches the threshold its
weights stop changing (decided on the device; the host looks only every ``sync_every``
steps and the loop ends when every photo has stopped). ``cfg.batch_size`` (several photos
sharing one generator) does not apply here and is ignored.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from pti.core.config import TuningConfig
from pti.core.divergence import DivergenceError, output_rms
from pti.fast.config import ExecutionConfig
from pti.fast.execution import (DeferredHistory, autocast, cached_target_features, loss_scaler, maybe_compile,
                                step_environment, to_channels_last)
from pti.fast.graphs import StepGraphs
from pti.fast.optim import AdamStep, FlatAdam
from pti.core.losses import LocalityRegularizer, PerceptualLoss, l2_per_image
from pti.core.pivot import NonFiniteLossError, Pivot, step_failure
from pti.progress import progress_bar
from pti.core.tuning import batch_noise
from pti.fast.tuning import start_tuning


@dataclass
class BatchedTuningResult:
    """K tuned weight sets and what happened to each photo.

    ``weights``: synthesis parameter name -> ``[K, ...]`` (detached). Per photo: ``steps`` (updates
    applied), ``stopped_early``, ``loss_history`` / ``perceptual_history`` / ``locality_history``
    (per step, as :class:`~pti.core.tuning.TuningResult`), ``errors`` (None, or why the photo was
    abandoned: a non-finite loss or a diverged image, see :mod:`pti.core.divergence`; its weights are then
    meaningless). ``seconds``: wall time of the batch.
    """

    original: nn.Module
    weights: dict[str, torch.Tensor]
    steps: list[int]
    stopped_early: list[bool]
    loss_history: list[list[float]]
    perceptual_history: list[list[float]]
    locality_history: list[list[float]]
    errors: list[str | None]
    seconds: float = 0.0
    perceptual_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, original: nn.Module, k: int, perceptual_name: str) -> "BatchedTuningResult":
        """The record of ``k`` photos before their first step."""
        return cls(original=original, weights={}, steps=[0] * k, stopped_early=[False] * k,
                   loss_history=[[] for _ in range(k)], perceptual_history=[[] for _ in range(k)],
                   locality_history=[[] for _ in range(k)], errors=[None] * k, perceptual_name=perceptual_name)

    def __len__(self) -> int:
        return len(self.steps)

    def generator(self, k: int) -> nn.Module:
        """Photo ``k``'s tuned generator: a copy of the original with slot ``k`` of the synthesis weights."""
        if not 0 <= k < len(self):
            raise IndexError(f"photo index {k} out of range for {len(self)} photos")
        G = copy.deepcopy(self.original)
        with torch.no_grad():
            for name, p in G.synthesis.named_parameters():
                p.copy_(self.weights[name][k])
        return G.requires_grad_(False)

    def generators(self) -> list[nn.Module]:
        return [self.generator(k) for k in range(len(self))]


def stack_synthesis_parameters(G: nn.Module, k: int) -> tuple[list[str], list[torch.Tensor]]:
    """Names and ``[k, ...]`` stacked copies (expanded views) of ``G.synthesis``'s parameters."""
    names, tensors = [], []
    for name, p in G.synthesis.named_parameters():
        names.append(name)
        tensors.append(p.detach().unsqueeze(0).expand(k, *p.shape))
    return names, tensors


def tune_batched(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor], pivots: Sequence[Pivot] | torch.Tensor,
                 cfg: TuningConfig | None = None, *, c: Any = None, perceptual: PerceptualLoss | None = None,
                 progress: bool = True, callback: Callable[[int, dict[str, Any]], None] | None = None,
                 execution: ExecutionConfig | None = None) -> BatchedTuningResult:
    """Pivotal tuning of K photos at once, photo k with its own weights (see the module doc).

    Args:
        G: the original generator (left unchanged).
        targets: ``[K, C, H, W]`` or K images ``[C, H, W]`` in [-1, 1] (C = 3 or 1).
        pivots: K :class:`~pti.core.pivot.Pivot` (or ws ``[K, num_ws, w_dim]``), in the order of ``targets``.
        cfg: :class:`~pti.core.config.TuningConfig` (paper defaults when None).
        c: conditional generators: the class(es) of the locality codes, as :func:`pti.core.tuning.pivotal_tune`'s ``c``.
        execution: :class:`~pti.fast.ExecutionConfig` (every field applies; default: the core's).
        callback: ``callback(step, {'loss': [K], 'perceptual': [K], 'active': [K]})`` per step, at syncs.
    Returns: :class:`BatchedTuningResult`; a photo whose loss becomes non-finite or whose image diverges
    (:mod:`pti.core.divergence`) is frozen and named in ``errors`` (the others go on).
    """
    cfg, ex, device, t0, prepared = start_tuning(G, targets, pivots, cfg, execution, c, perceptual)
    x, ws, noises, perceptual, regularizer = prepared
    k_photos = x.shape[0]
    names, stacked = stack_synthesis_parameters(G, k_photos)  # θ* of photo k: slot k, starting at θ
    flat = FlatAdam(stacked, lr=cfg.lr, compile_update=ex.compile)
    params = dict(zip(names, flat.params))
    noise = None
    if cfg.use_pivot_noise:  # per layer [K, 1, 1, R, R]: each photo renders its one image with its own maps
        noise = [n.unsqueeze(1) for n in batch_noise(noises, list(range(k_photos)))]
    adam = AdamStep(flat=flat, scaler=loss_scaler(ex, device))
    generators = [torch.Generator().manual_seed(cfg.seed) for _ in range(k_photos)]
    step_loss, locality_penalty = _batched_losses(G, perceptual, regularizer, cfg, ex, k_photos, noise is not None)
    result = BatchedTuningResult.start(G, k_photos, perceptual.name)
    running = [True] * k_photos  # the host's view: photos not yet stopped or abandoned
    active = torch.ones([k_photos], dtype=torch.bool, device=device)  # the device's: photos still updated
    history = DeferredHistory(ex.sync_every)
    interval = cfg.locality.interval
    z_all, pivot_of = draw_locality_ahead(regularizer, generators, cfg.steps, interval, device)
    z_step = z_all[0].clone() if z_all is not None else None  # this step's draw, where the (captured) step reads it
    target: list[torch.Tensor] = []  # the photos' features, filled below

    def whole_step(regularize: bool) -> tuple[torch.Tensor, ...]:
        """Eq. 4 per photo, its early-stop mask, L_R (Eq. 5-7), backward and the masked Adam: graph-safe."""
        loss, dist, rms = step_loss(params, ws, x, target, noise)
        if cfg.lpips_threshold is not None:
            active.logical_and_(dist.detach() > cfg.lpips_threshold)
        reg = torch.zeros([k_photos], device=device)
        if regularize:
            w_r = regularizer.codes(ws, z_step, pivot_of).unflatten(0, (k_photos, -1))  # [K, S, num_ws, w_dim]
            reg = locality_penalty(params, w_r)
            loss = loss + reg
        adam.update(loss.sum(), active)
        return loss, dist, rms, reg

    run_step = StepGraphs(whole_step, device, enabled=ex.cuda_graphs, what="batched tuning step")
    bar = progress_bar(range(cfg.steps), desc=f"tune (batched x{k_photos})", disable=not progress, leave=False)
    # vmap and torch.compile need the pure-PyTorch ops (the CUDA kernels' autograd functions have no vmap rule)
    with step_environment(ex, device, perceptual, G, traceable=True):
        target += cached_target_features(perceptual, x, ex, device)  # the photos never change: once
        for step in bar:
            regularize = regularizer is not None and step % interval == 0
            if regularize:
                z_step.copy_(z_all[step // interval])
            loss, dist, rms, reg = run_step(regularize)
            history.record(step, loss=loss, perceptual=dist, active=active, output_rms=rms,
                           **({"locality": reg} if regularize else {}))
            if _consume(history.flush_if_due(step, cfg.steps), result, running, active, bar, callback):
                break

    result.weights = {name: p.detach() for name, p in params.items()}
    result.seconds = time.perf_counter() - t0
    return result


def _batched_losses(G: nn.Module, perceptual: PerceptualLoss, regularizer: LocalityRegularizer | None,
                    cfg: TuningConfig, ex: ExecutionConfig, k_photos: int,
                    pivot_noise: bool) -> tuple[Callable[..., Any], Callable[..., torch.Tensor]]:
    """The K photos' losses over stacked weights ``p`` (``vmap`` of ``functional_call`` of ``G.synthesis``):
    ``forward(p, ws, x, target, maps) -> (loss [K], dist [K], rms [K])``, Eq. 4 per photo with its perceptual
    distance and image RMS (:mod:`pti.core.divergence`); ``locality_penalty(p, w_r [K, S, num_ws, w_dim]) -> [K]``,
    L_R (Eq. 5-7) against the original's images of ``w_r``. Both compiled when ``ex.compile``."""
    device = next(G.parameters()).device
    buffers = dict(G.synthesis.named_buffers())

    def render(noise_mode: str) -> Callable[..., torch.Tensor]:
        def one_photo(p: dict[str, torch.Tensor], w: torch.Tensor, maps: list[torch.Tensor] | None) -> torch.Tensor:
            return functional_call(G.synthesis, (p, buffers), (w,),
                                   {"noise_mode": noise_mode, "force_fp32": ex.force_fp32, "noise": maps})
        return one_photo

    render_pivots = vmap(render(cfg.noise_mode), in_dims=(0, 0, 0 if pivot_noise else None))
    render_locality = vmap(render(cfg.locality.noise_mode), in_dims=(0, 0, None))

    def forward(p: dict[str, torch.Tensor], ws: torch.Tensor, x: torch.Tensor, target: list[torch.Tensor],
                maps: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with autocast(device, ex.precision):
            image = render_pivots(p, ws.unsqueeze(1), maps)[:, 0]
            dist = perceptual.distance_to(to_channels_last(image, ex.channels_last), target).float()
        return cfg.l2_weight * l2_per_image(image.float(), x) + cfg.lpips_weight * dist, dist, output_rms(image)

    def locality(p: dict[str, torch.Tensor], w_r: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        with autocast(device, ex.precision):
            rendered = render_locality(p, w_r, None).flatten(0, 1)
            return regularizer.penalty_per_group(rendered, reference, groups=k_photos)

    step_locality = maybe_compile(locality, ex.compile, ex.compile_mode)

    def locality_penalty(p: dict[str, torch.Tensor], w_r: torch.Tensor) -> torch.Tensor:
        with autocast(device, ex.precision):
            reference = regularizer.reference(w_r.flatten(0, 1), ex.force_fp32)
        return step_locality(p, w_r, reference)

    return maybe_compile(forward, ex.compile, ex.compile_mode), locality_penalty


def draw_locality_ahead(regularizer: LocalityRegularizer | None, generators: Sequence[torch.Generator], steps: int,
                        interval: int, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The locality samples of the whole run, drawn ahead, on ``device``: ``z [draws, K * num_samples, z_dim]``,
    photo k's from ``generators[k]`` as a single-photo run draws them
    (:meth:`~pti.core.losses.LocalityRegularizer.draw`; its pivot indices, always 0, are drawn and dropped), and
    the pivot of each sample ``[K * num_samples]`` (photo k's step from pivot k) for
    :meth:`~pti.core.losses.LocalityRegularizer.codes`; ``(None, None)`` without locality."""
    draws = [torch.cat([regularizer.draw(1, gen)[0] for gen in generators]) for step in range(steps)
             if regularizer is not None and step % interval == 0]
    if not draws:
        return None, None
    pivot_of = torch.arange(len(generators), device=device).repeat_interleave(regularizer.cfg.num_samples)
    return torch.stack(draws).to(device), pivot_of


def _consume(rows: list[tuple[int, dict[str, Any]]], result: BatchedTuningResult, running: list[bool],
             active: torch.Tensor, bar: Any, callback: Callable[[int, dict[str, Any]], None] | None) -> bool:
    """Append flushed steps to each running photo's record; photos whose loss became non-finite or whose image
    diverged are abandoned (frozen on the device through ``active``). True once every photo has stopped."""
    if not rows:
        return False
    abandoned = []
    for step, row in rows:
        for k in range(len(running)):
            if not running[k]:
                continue
            result.perceptual_history[k].append(row["perceptual"][k])
            result.loss_history[k].append(row["loss"][k])
            if not row["active"][k]:  # reached the threshold at this step: no update was applied
                running[k] = False
                result.stopped_early[k] = True
                continue
            error = step_failure("tuning", step, row["loss"][k], row["output_rms"][k])
            if error is not None:
                running[k] = False
                result.errors[k] = str(error)
                abandoned.append(k)
                continue
            if "locality" in row:
                result.locality_history[k].append(row["locality"][k])
            result.steps[k] = step + 1
        if callback is not None:
            callback(step, {"loss": row["loss"], "perceptual": row["perceptual"],
                            "active": [bool(a) for a in row["active"]]})
    if abandoned:  # freeze photos whose loss became non-finite; the others go on
        active[abandoned] = False
    bar.set_postfix(running=sum(running))
    return not any(running)


def pivotal_tune_batched(G: nn.Module, targets: torch.Tensor | Sequence[torch.Tensor],
                         pivots: Sequence[Pivot] | torch.Tensor, cfg: TuningConfig | None = None,
                         **kwargs: Any) -> list[nn.Module]:
    """Like :func:`tune_batched` but returns the K tuned generators; raises
    :class:`~pti.core.pivot.NonFiniteLossError` naming every photo whose loss became non-finite
    (:class:`~pti.core.divergence.DivergenceError`, its base class, when some images diverged instead)."""
    result = tune_batched(G, targets, pivots, cfg, **kwargs)
    failed = [f"photo {k}: {err}" for k, err in enumerate(result.errors) if err is not None]
    if failed:
        non_finite = all(err.startswith("tuning loss became") for err in result.errors if err is not None)
        raise (NonFiniteLossError if non_finite else DivergenceError)("; ".join(failed))
    return result.generators()
