"""Inversion: find the pivot ``w_p`` (and noise maps) whose image best matches a photo.

Implements the StyleGAN2 projector schedule as PTI uses it: w initialised at the mean of
``w_avg_samples`` mapping outputs; Adam with a linear lr warm-up and cosine ramp-down;
Gaussian noise on w whose scale (``w_std * w_noise_factor``) decays quadratically to zero;
perceptual loss plus the noise-map autocorrelation penalty; noise maps re-normalised to
zero mean and unit variance after every step. ``space='w'`` optimises one w broadcast to
all ``num_ws`` layers (the paper); ``space='w+'`` one w per layer.

:func:`project_batch` inverts K photos at once through the same generator (one batched
synthesis per step; each photo keeps its own w, noise maps, random stream and Adam state, so
the result equals K calls of :func:`project` up to float rounding); :func:`project` is the
K = 1 case. The execution fields of the config (autocast, channels_last, Adam
implementation, torch.compile, host syncs every N steps) change only how a step is computed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from pti.conditioning import Label, class_label
from pti.config import InversionConfig, check_execution, config_to_dict
from pti.divergence import DivergenceError, diverged_message, first_diverged, output_rms
from pti.execution import (DeferredHistory, autocast, channels_last, first_non_finite, maybe_compile,
                           needs_loss_scaling, traceable_ops)
from pti.images import to_channels
from pti.losses import PerceptualLoss, l2_per_image, noise_regularization_per_image
from pti.optim import DeviceLossScaler, FlatAdam, make_adam
from pti.progress import progress_bar


class NonFiniteLossError(DivergenceError):
    """A loss became NaN or infinite; the image is abandoned and nothing is written for it."""


@dataclass
class Pivot:
    """The result of inversion.

    Attributes:
        w: ``[1, num_ws, w_dim]`` float32 (all rows equal for ``space='w'``).
        noise: optimised noise maps, one ``[1, 1, R, R]`` per ``G.synthesis.noise_layers()`` entry
            (empty when noise was not optimised).
        space: 'w' or 'w+'.
        loss_history: per-step total loss.
        perceptual_history: per-step perceptual distance.
        steps: steps run; seconds: wall time (of a batch from :func:`project_batch`: its wall time
            divided by the number of photos); config: the InversionConfig as a dict.
        c: the class label ``[1, c_dim]`` it was inverted with (conditional generators), else None.
    """

    w: torch.Tensor
    noise: list[torch.Tensor] = field(default_factory=list)
    space: str = "w"
    loss_history: list[float] = field(default_factory=list)
    perceptual_history: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    perceptual_name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    generator: str = ""  # weights_fingerprint of the generator it was inverted with ("" in older files)
    c: torch.Tensor | None = None

    def check_fits(self, G: torch.nn.Module, what: str = "the generator") -> None:
        """Raise ValueError unless ``w`` is ``[1, G.num_ws, G.w_dim]`` and the noise maps match G's noise layers."""
        if tuple(self.w.shape) != (1, int(G.num_ws), int(G.w_dim)):
            raise ValueError(f"the pivot's w has shape {tuple(self.w.shape)} but {what} needs "
                             f"[1, {int(G.num_ws)}, {int(G.w_dim)}] (num_ws, w_dim): it was made with another generator")
        if self.noise:
            wanted = [(int(layer.resolution),) * 2 for layer in G.synthesis.noise_layers()]
            have = [tuple(n.shape[-2:]) for n in self.noise]
            if have != wanted:
                raise ValueError(f"the pivot's {len(have)} noise maps do not match the {len(wanted)} noise layers "
                                 f"of {what}: it was made with another generator")

    def to(self, device: torch.device | str) -> "Pivot":
        return Pivot(**{**self.__dict__, "w": self.w.to(device), "noise": [n.to(device) for n in self.noise],
                        "c": None if self.c is None else self.c.to(device)})

    def save(self, path: str | Path) -> None:
        """Write a ``weights_only``-loadable torch file atomically."""
        from pti.io_utils import atomic_torch_save

        atomic_torch_save({**self.__dict__, "w": self.w.detach().cpu(),
                           "noise": [n.detach().cpu() for n in self.noise],
                           "c": None if self.c is None else self.c.detach().cpu(), "format": "pti-pivot-v1"}, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "Pivot":
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable pti pivot file (expected a torch file written by "
                             f"Pivot.save): {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != "pti-pivot-v1" or "w" not in data:
            raise ValueError(f"{path}: not a pti pivot file (expected format 'pti-pivot-v1')")
        data.pop("format")
        return cls(**data)


def prepare_target(target: torch.Tensor, resolution: int, device: torch.device | str,
                   channels: int = 3) -> torch.Tensor:
    """``[C, H, W]`` or ``[1, C, H, W]`` in [-1, 1], C = 3 (RGB) or 1 (gray) -> ``[1, channels, R, R]`` on
    ``device`` (area/bicubic resize; RGB -> gray by BT.601 luma, gray -> RGB by repetition, see
    :func:`pti.images.to_channels`). ``channels``: the generator's ``img_channels``."""
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] not in (1, 3):
        raise ValueError(f"target must be [3, H, W] or [1, 3, H, W] (RGB) or [1, H, W] or [1, 1, H, W] (gray), "
                         f"got {tuple(target.shape)}")
    target = to_channels(target.to(device=device, dtype=torch.float32), channels)
    if target.shape[-2:] != (resolution, resolution):
        if target.shape[-2] != target.shape[-1]:
            raise ValueError(f"target must be square (align it first), got {tuple(target.shape[-2:])}")
        mode = "area" if target.shape[-1] > resolution else "bicubic"
        target = F.interpolate(target, size=(resolution, resolution), mode=mode).clamp(-1, 1)
    return target


@torch.no_grad()
def w_statistics(G: torch.nn.Module, num_samples: int, seed: int, device: torch.device | str,
                 batch: int = 1000, c: Label = None) -> tuple[torch.Tensor, float]:
    """Mean ``[1, 1, w_dim]`` and scalar std (RMS distance to the mean) of ``num_samples`` mapped z.

    ``c``: the class (index or label, see :func:`pti.conditioning.class_label`) every sample is mapped
    with; required for a conditional generator (raises :class:`~pti.conditioning.ConditioningError`
    without it), refused for an unconditional one.
    """
    label = class_label(G, c, 1, device)
    gen = torch.Generator().manual_seed(seed)
    ws = []
    for start in range(0, num_samples, batch):
        n = min(batch, num_samples - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        ws.append(G.mapping(z, None if label is None else label.expand(n, -1))[:, :1, :].float())
    w = torch.cat(ws)
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float(((w - w_avg).square().sum() / num_samples) ** 0.5)
    return w_avg, w_std


def learning_rate(step: int, steps: int, cfg: InversionConfig) -> float:
    """The projector's schedule: linear warm-up over ``lr_rampup``, cosine ramp-down over ``lr_rampdown``."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown) if cfg.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup > 0:
        ramp *= min(1.0, t / cfg.lr_rampup)
    return cfg.lr * ramp


def _initial_w(G: torch.nn.Module, w_init: torch.Tensor | None, w_avg: torch.Tensor, cfg: InversionConfig,
               device: torch.device) -> torch.Tensor:
    """The start of the optimisation: ``[1, 1, w_dim]`` ('w') or ``[1, num_ws, w_dim]`` ('w+')."""
    num_ws = G.num_ws
    if w_init is not None:
        start = w_init.detach().to(device=device, dtype=torch.float32).reshape(1, -1, G.w_dim)
        if start.shape[1] not in (1, num_ws):
            raise ValueError(f"w_init must have 1 or {num_ws} rows of {G.w_dim}, got {tuple(w_init.shape)}")
        if cfg.space == "w" and start.shape[1] == num_ws:
            start = start.mean(dim=1, keepdim=True)
    else:
        start = w_avg
    if cfg.space == "w+":
        start = start.expand(1, num_ws, G.w_dim)
    return start


def _target_list(targets: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(targets, torch.Tensor):
        return list(targets.unbind(0)) if targets.ndim == 4 else [targets]
    return list(targets)


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    cfg: InversionConfig | None = None,
    *,
    w_init: torch.Tensor | None = None,
    c: Label = None,
    perceptual: PerceptualLoss | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> Pivot:
    """Invert ``target`` into ``G``'s W (or W+) space.

    Args:
        G: a :class:`~pti.stylegan2.Generator` (not modified; no gradients reach its weights).
        target: ``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1], square; resized to ``G.img_resolution`` and
            converted to ``G.img_channels`` (RGB -> gray for a grayscale generator, see :func:`prepare_target`).
        cfg: the :class:`~pti.config.InversionConfig` (paper defaults when None).
        w_init: optional start ``[w_dim]``, ``[1, w_dim]`` or ``[1, num_ws, w_dim]`` (e.g. an encoder's output);
            default: the mean of the mapping samples.
        c: the photo's class for a conditional generator (``c_dim > 0``): an index ``K`` or a label
            ``[c_dim]``; the mapping samples of the w statistics are drawn for it. Required for a conditional
            generator, refused for an unconditional one (:class:`~pti.conditioning.ConditioningError`);
            kept in ``Pivot.c``.
        perceptual: a ready :class:`~pti.losses.PerceptualLoss` (built from ``cfg`` when None).
        callback: called as ``callback(step, {'loss', 'perceptual', 'lr'})`` after every step (with
            ``cfg.sync_every > 1``: for each step, in order, at every sync).
    Returns: a :class:`Pivot`. Raises :class:`NonFiniteLossError` if the loss becomes NaN/inf and
    :class:`~pti.divergence.DivergenceError` if the image leaves any sane range (see :mod:`pti.divergence`).
    """
    if target.ndim == 4 and target.shape[0] != 1:
        raise ValueError(f"target must be [3, H, W] or [1, 3, H, W], got {tuple(target.shape)}; "
                         "use project_batch for several photos")
    single_callback = None
    if callback is not None:
        def single_callback(step: int, values: dict[str, Any]) -> None:
            callback(step, {"loss": values["loss"][0], "perceptual": values["perceptual"][0], "lr": values["lr"]})
    return project_batch(G, [target], cfg, w_init=None if w_init is None else [w_init], c=c, perceptual=perceptual,
                         progress=progress, callback=single_callback)[0]


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
) -> list[Pivot]:
    """Invert K photos at once (one batched synthesis per step); photo k's pivot equals ``project(G, targets[k])``.

    Args:
        targets: ``[K, C, H, W]`` or a list of K ``[C, H, W]``/``[1, C, H, W]``, in [-1, 1] (C = 3 or 1).
        w_init: None, or one start (or None) per photo, as :func:`project`'s ``w_init``.
        c: as :func:`project`'s ``c``: one class for all K photos (they share the w statistics).
        callback: ``callback(step, {'loss': [K], 'perceptual': [K], 'output_rms': [K], 'lr': float})``.
    Returns: K :class:`Pivot` in the order of ``targets``. Raises :class:`NonFiniteLossError` (naming the
    photo) if a loss becomes NaN/inf, :class:`~pti.divergence.DivergenceError` (naming it too) if its image
    leaves any sane range (:mod:`pti.divergence`).
    """
    cfg = cfg or InversionConfig()
    if cfg.space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {cfg.space!r}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    check_execution(cfg)
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
    start = torch.cat([_initial_w(G, w, w_avg, cfg, device) for w in inits])  # [K, 1 or num_ws, w_dim]

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

    scaler = DeviceLossScaler(device) if needs_loss_scaling(cfg, device) else None
    flat: FlatAdam | None = None
    if scaler is not None:  # fp16: per-photo overflow skipping needs the masked Adam
        flat = FlatAdam([start] + noise, lr=cfg.lr, compile_update=cfg.compile)
        w_opt, *noise = flat.params
        optimizer = None
    else:
        w_opt = start.clone().requires_grad_(True)
        for n in noise:
            n.requires_grad_(True)
        optimizer = make_adam([w_opt] + noise, lr=cfg.lr, impl=cfg.adam)

    def forward(w_opt: torch.Tensor, w_noise: torch.Tensor, noise: list[torch.Tensor],
                x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-photo losses ``[K]``, perceptual distances ``[K]`` and image RMS values ``[K]`` (divergence)."""
        ws = (w_opt + w_noise).expand(-1, num_ws, -1)
        with autocast(device, cfg.precision):
            image = G.synthesis(ws, noise_mode="const", force_fp32=cfg.force_fp32, noise=noise if noise else None)
            dist = perceptual(image, x).float()
        loss = dist
        if noise:
            loss = loss + cfg.noise_reg_weight * noise_regularization_per_image(noise)
        if cfg.l2_weight:
            loss = loss + cfg.l2_weight * l2_per_image(image.float(), x)
        return loss, dist, output_rms(image)

    step_loss = maybe_compile(forward, cfg.compile, cfg.compile_mode)
    from pti.stylegan2.checkpoints import weights_fingerprint

    fingerprint = weights_fingerprint(G)
    pivots = [Pivot(w=start[k:k + 1], space=cfg.space, perceptual_name=perceptual.name, config=config_to_dict(cfg),
                    generator=fingerprint, c=label) for k in range(k_photos)]
    history = DeferredHistory(cfg.sync_every)
    desc = f"invert ({cfg.space})" + (f" x{k_photos}" if k_photos > 1 else "")
    bar = progress_bar(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    with traceable_ops(device, cfg.compile), channels_last([perceptual], [G], enabled=cfg.channels_last):
        for step in bar:
            lr = learning_rate(step, cfg.steps, cfg)
            if flat is not None:
                flat.set_lr(lr)
            else:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            w_noise_scale = w_std * cfg.w_noise_factor * max(0.0, 1.0 - step / (cfg.steps * cfg.w_noise_ramp)) ** 2 \
                if cfg.w_noise_ramp > 0 else 0.0
            loss, dist, rms = step_loss(w_opt, w_noise_unit_all[step] * w_noise_scale, noise, x)
            history.record(step, loss=loss, perceptual=dist, output_rms=rms)
            if history.due(step) or step == cfg.steps - 1:  # check before this step's update, as one-sync-per-step did
                _consume(history.flush(), pivots, bar, callback, cfg)
            total = loss.sum()
            if flat is not None:
                flat.zero_grad()
                scaler.scale_loss(total).backward()
                flat.step(scaler=scaler)
            else:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
            with torch.no_grad():  # keep each photo's noise maps zero-mean, unit-variance
                for n in noise:
                    n -= n.mean(dim=(1, 2, 3), keepdim=True)
                    n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()

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
