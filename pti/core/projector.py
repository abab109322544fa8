"""The projector: find the pivot ``w_p`` (and noise maps) whose image best matches one photo.

This is StyleGAN2's projector (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", CVPR 2020, appendix D) as PTI uses it for the pivot (Roich et al. 2022, Sec. 3.1,
Eq. 1)::

    w_p, n = argmin_{w, n}  L_LPIPS(x, G(w, n; θ)) + λ_n · L_n(n)

``w`` starts at the mean of ``w_avg_samples`` mapped codes; Adam with a linear learning-rate
warm-up and a cosine ramp-down; Gaussian noise on ``w`` whose scale (``w_std · w_noise_factor``)
decays quadratically to zero over ``w_noise_ramp`` of the steps; the noise maps are renormalised to
zero mean and unit variance after every step. ``space='w'`` optimises one ``w`` for all layers (the
paper), ``space='w+'`` one per layer.

:func:`project` is the whole algorithm in one loop, fp32, ``torch.optim.Adam``, one host sync
per step (as the official code). :mod:`pti.fast` inverts several photos at once, with autocast,
compilation or fewer syncs, and is tested equal to this function.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from pti.core.conditioning import Label, class_label
from pti.core.config import InversionConfig, config_to_dict, validate
from pti.core.divergence import output_rms
from pti.images import prepare_target
from pti.core.losses import PerceptualLoss, l2_loss, noise_regularization
from pti.core.pivot import Pivot, check_step
from pti.progress import progress_bar


@torch.no_grad()
def w_statistics(G: torch.nn.Module, num_samples: int, seed: int, device: torch.device | str,
                 batch: int = 1000, c: Label = None) -> tuple[torch.Tensor, float]:
    """Mean ``[1, 1, w_dim]`` and scalar std (RMS distance to the mean) of ``num_samples`` mapped z.

    ``c``: the class (index or label, see :func:`pti.core.conditioning.class_label`) every sample is mapped
    with; required for a conditional generator (raises :class:`~pti.core.conditioning.ConditioningError`
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


def w_noise_scale(step: int, w_std: float, cfg: InversionConfig) -> float:
    """Std of the Gaussian noise added to ``w`` at ``step``: ``w_std · w_noise_factor``, decaying quadratically."""
    if cfg.w_noise_ramp <= 0:
        return 0.0
    return w_std * cfg.w_noise_factor * max(0.0, 1.0 - step / (cfg.steps * cfg.w_noise_ramp)) ** 2


def initial_w(G: torch.nn.Module, w_init: torch.Tensor | None, w_avg: torch.Tensor, cfg: InversionConfig,
              device: torch.device | str) -> torch.Tensor:
    """The start of the optimisation: ``[1, 1, w_dim]`` ('w') or ``[1, num_ws, w_dim]`` ('w+').

    ``w_init`` (``[w_dim]``, ``[1, w_dim]`` or ``[1, num_ws, w_dim]``, e.g. an encoder's code) or ``w_avg``;
    a W+ start is averaged over the layers for ``space='w'``. Raises ``ValueError`` on other shapes.
    """
    if cfg.space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {cfg.space!r}")
    num_ws, start = G.num_ws, w_avg
    if w_init is not None:
        start = w_init.detach().to(device=device, dtype=torch.float32).reshape(1, -1, G.w_dim)
        if start.shape[1] not in (1, num_ws):
            raise ValueError(f"w_init must have 1 or {num_ws} rows of {G.w_dim}, got {tuple(w_init.shape)}")
        if cfg.space == "w" and start.shape[1] == num_ws:
            start = start.mean(dim=1, keepdim=True)
    return start.expand(1, num_ws, G.w_dim) if cfg.space == "w+" else start


def project(G: torch.nn.Module, target: torch.Tensor, cfg: InversionConfig | None = None, *,
            init: torch.nn.Module | None = None, w_init: torch.Tensor | None = None, c: Label = None,
            perceptual: PerceptualLoss | None = None, progress: bool = True,
            callback: Callable[[int, dict[str, float]], None] | None = None) -> Pivot:
    """Invert one photo into ``G``'s W (or W+) space: the pivot (PTI Eq. 1).

    Args:
        G: a :class:`~pti.stylegan2.Generator` (not modified; no gradients reach its weights).
        target: ``[C, H, W]`` or ``[1, C, H, W]`` in [-1, 1] (C = 3 or 1), square; resized to
            ``G.img_resolution`` and converted to ``G.img_channels`` (:func:`pti.images.prepare_target`).
        cfg: the :class:`~pti.core.config.InversionConfig` (paper defaults when None).
        init: an encoder with ``encode(images) -> [1, num_ws, w_dim]`` (e.g. :func:`pti.encoders.load_e4e`): the
            start is its W+ code for the photo (e4e pivots, as the official PTI's ``w+`` option), refined by
            ``cfg.steps`` projector steps (0 allowed: the code itself); ``Pivot.origin`` is 'e4e'.
        w_init: or a given start (see :func:`initial_w`); default: the mean w. 0 steps are allowed with either.
        c: the photo's class for a conditional generator (an index or a label ``[c_dim]``): the w statistics
            are mapped with it; required when ``c_dim > 0``, refused otherwise
            (:class:`~pti.core.conditioning.ConditioningError`); kept in ``Pivot.c``.
        perceptual: a ready :class:`~pti.core.losses.PerceptualLoss` (built from ``cfg`` when None).
        callback: ``callback(step, {'loss', 'perceptual', 'lr'})`` after every step.
    Returns: a :class:`~pti.core.pivot.Pivot`. Raises :class:`~pti.core.pivot.NonFiniteLossError` if the loss becomes
    NaN/inf and :class:`~pti.core.divergence.DivergenceError` if the image leaves any sane range.
    """
    cfg = cfg or InversionConfig()
    validate(cfg)  # every field in its range (pti.core.config.ranged) before any work
    if cfg.steps < (0 if init is not None or w_init is not None else 1):
        raise ValueError(f"steps must be >= 1 (>= 0 from an encoder or w_init), got {cfg.steps}")
    if target.ndim == 4 and target.shape[0] != 1:
        raise ValueError(f"target must be [C, H, W] or [1, C, H, W], got {tuple(target.shape)}; "
                         "use pti.fast.project_batch for several photos")
    device = next(G.parameters()).device
    label = class_label(G, c, 1, device)  # raises before any work
    t0 = time.perf_counter()
    x = prepare_target(target, G.img_resolution, device, G.img_channels)
    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)
    target_features = perceptual.target_features(x)  # the photo's features, once (as NVIDIA's projector)
    if init is not None:  # an encoder's code for the photo is the start
        with torch.no_grad():
            w_init = init.encode(x)
    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed, device, c=label)
    w_opt = initial_w(G, w_init, w_avg, cfg, device).clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(cfg.seed)  # the noise maps' start, then each step's w noise
    noise = [torch.randn([1, 1, layer.resolution, layer.resolution], generator=gen).to(device).requires_grad_(True)
             for layer in G.synthesis.noise_layers()] if cfg.optimize_noise else []
    optimizer = torch.optim.Adam([w_opt] + noise, lr=cfg.lr, betas=(0.9, 0.999))
    from pti.stylegan2.checkpoints import weights_fingerprint
    pivot = Pivot(w=w_opt, space=cfg.space, perceptual_name=perceptual.name, config=config_to_dict(cfg),
                  generator=weights_fingerprint(G), c=label,
                  origin="e4e" if init is not None else "projector" if w_init is None else "w_init")

    bar = progress_bar(range(cfg.steps), desc=f"invert ({cfg.space})", disable=not progress, leave=False)
    for step in bar:
        lr = learning_rate(step, cfg.steps, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale(step, w_std, cfg)
        ws = (w_opt + w_noise).expand(-1, G.num_ws, -1)
        image = G.synthesis(ws, noise_mode="const", force_fp32=True, noise=noise or None)
        dist = perceptual.distance_to(image, target_features).float()  # L_LPIPS(x, G(w, n))
        loss = dist.sum()
        if noise:  # λ_n · L_n: StyleGAN2's noise autocorrelation penalty
            loss = loss + cfg.noise_reg_weight * noise_regularization(noise)
        if cfg.l2_weight:  # optional pixel term (not in the paper's Eq. 1)
            loss = loss + cfg.l2_weight * l2_loss(image.float(), x)
        loss_value = float(loss.detach())
        check_step("inversion", step, loss_value, float(output_rms(image).max()))  # NaN/inf loss, diverged image
        pivot.loss_history.append(loss_value)
        pivot.perceptual_history.append(float(dist.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # keep the noise maps zero-mean, unit-variance
            for n in noise:
                n -= n.mean()
                n *= n.square().mean().rsqrt()
        bar.set_postfix(loss=f"{loss_value:.4f}", dist=f"{pivot.perceptual_history[-1]:.4f}")
        if callback is not None:
            callback(step, {"loss": loss_value, "perceptual": pivot.perceptual_history[-1], "lr": lr})

    pivot.w = w_opt.detach().expand(1, G.num_ws, G.w_dim).clone()
    pivot.noise = [n.detach().clone() for n in noise] if cfg.steps else []  # 0 steps: none optimised
    pivot.steps, pivot.seconds = cfg.steps, time.perf_counter() - t0
    return pivot
