"""Inversion: find the pivot ``w_p`` (and noise maps) whose image best matches a photo.

Implements the StyleGAN2 projector schedule as PTI uses it: w initialised at the mean of
``w_avg_samples`` mapping outputs; Adam with a linear lr warm-up and cosine ramp-down;
Gaussian noise on w whose scale (``w_std * w_noise_factor``) decays quadratically to zero;
perceptual loss plus the noise-map autocorrelation penalty; noise maps re-normalised to
zero mean and unit variance after every step. ``space='w'`` optimises one w broadcast to
all ``num_ws`` layers (the paper); ``space='w+'`` one w per layer.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pti.config import InversionConfig, config_to_dict
from pti.losses import PerceptualLoss, l2_loss, noise_regularization


class NonFiniteLossError(RuntimeError):
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
        steps: steps run; seconds: wall time; config: the InversionConfig as a dict.
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

    def to(self, device: torch.device | str) -> "Pivot":
        return Pivot(**{**self.__dict__, "w": self.w.to(device), "noise": [n.to(device) for n in self.noise]})

    def save(self, path: str | Path) -> None:
        """Write a ``weights_only``-loadable torch file atomically."""
        from pti.io_utils import atomic_torch_save

        atomic_torch_save({**self.__dict__, "w": self.w.detach().cpu(),
                           "noise": [n.detach().cpu() for n in self.noise], "format": "pti-pivot-v1"}, path)

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


def prepare_target(target: torch.Tensor, resolution: int, device: torch.device | str) -> torch.Tensor:
    """``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1] -> ``[1, 3, R, R]`` on ``device`` (area/bicubic resize)."""
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
        raise ValueError(f"target must be [3, H, W] or [1, 3, H, W], got {tuple(target.shape)}")
    target = target.to(device=device, dtype=torch.float32)
    if target.shape[-2:] != (resolution, resolution):
        if target.shape[-2] != target.shape[-1]:
            raise ValueError(f"target must be square (align it first), got {tuple(target.shape[-2:])}")
        mode = "area" if target.shape[-1] > resolution else "bicubic"
        target = F.interpolate(target, size=(resolution, resolution), mode=mode).clamp(-1, 1)
    return target


@torch.no_grad()
def w_statistics(G: torch.nn.Module, num_samples: int, seed: int, device: torch.device | str,
                 batch: int = 1000) -> tuple[torch.Tensor, float]:
    """Mean ``[1, 1, w_dim]`` and scalar std (RMS distance to the mean) of ``num_samples`` mapped z."""
    gen = torch.Generator().manual_seed(seed)
    ws = []
    for start in range(0, num_samples, batch):
        n = min(batch, num_samples - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        c = torch.zeros([n, G.c_dim], device=device) if G.c_dim > 0 else None
        ws.append(G.mapping(z, c)[:, :1, :].float())
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


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    cfg: InversionConfig | None = None,
    *,
    w_init: torch.Tensor | None = None,
    perceptual: PerceptualLoss | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> Pivot:
    """Invert ``target`` into ``G``'s W (or W+) space.

    Args:
        G: a :class:`~pti.stylegan2.Generator` (not modified; no gradients reach its weights).
        target: ``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1], square; resized to ``G.img_resolution``.
        cfg: the :class:`~pti.config.InversionConfig` (paper defaults when None).
        w_init: optional start ``[w_dim]``, ``[1, w_dim]`` or ``[1, num_ws, w_dim]`` (e.g. an encoder's output);
            default: the mean of the mapping samples.
        perceptual: a ready :class:`~pti.losses.PerceptualLoss` (built from ``cfg`` when None).
        callback: called as ``callback(step, {'loss', 'perceptual', 'lr'})`` after every step.
    Returns: a :class:`Pivot`. Raises :class:`NonFiniteLossError` if the loss becomes NaN/inf.
    """
    cfg = cfg or InversionConfig()
    if cfg.space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {cfg.space!r}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    device = next(G.parameters()).device
    t0 = time.perf_counter()
    target = prepare_target(target, G.img_resolution, device)
    perceptual = perceptual or PerceptualLoss(cfg.perceptual_net, cfg.perceptual_resolution, device)
    gen = torch.Generator().manual_seed(cfg.seed)

    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed, device)
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
    w_opt = start.clone().requires_grad_(True)  # [1, 1 or num_ws, w_dim]

    noise_layers = G.synthesis.noise_layers()
    noise = [torch.randn([1, 1, layer.resolution, layer.resolution], generator=gen).to(device)
             for layer in noise_layers] if cfg.optimize_noise else []
    for n in noise:
        n.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + noise, betas=(0.9, 0.999), lr=cfg.lr)

    pivot = Pivot(w=w_opt.detach(), space=cfg.space, perceptual_name=perceptual.name, config=config_to_dict(cfg))
    bar = tqdm(range(cfg.steps), desc=f"invert ({cfg.space})", disable=not progress, leave=False)
    for step in bar:
        lr = learning_rate(step, cfg.steps, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        w_noise_scale = w_std * cfg.w_noise_factor * max(0.0, 1.0 - step / (cfg.steps * cfg.w_noise_ramp)) ** 2 \
            if cfg.w_noise_ramp > 0 else 0.0
        w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale
        ws = (w_opt + w_noise).expand(1, num_ws, G.w_dim)
        image = G.synthesis(ws, noise_mode="const", noise=noise if noise else None)
        dist = perceptual(image, target).sum()
        loss = dist
        if noise:
            loss = loss + cfg.noise_reg_weight * noise_regularization(noise)
        if cfg.l2_weight:
            loss = loss + cfg.l2_weight * l2_loss(image, target)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(f"inversion loss became {loss_value} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # keep noise maps zero-mean, unit-variance
            for n in noise:
                n -= n.mean()
                n *= n.square().mean().rsqrt()
        pivot.loss_history.append(loss_value)
        dist_value = float(dist.detach())
        pivot.perceptual_history.append(dist_value)
        bar.set_postfix(loss=f"{loss_value:.4f}", dist=f"{dist_value:.4f}")
        if callback is not None:
            callback(step, {"loss": loss_value, "perceptual": dist_value, "lr": lr})

    pivot.w = w_opt.detach().expand(1, num_ws, G.w_dim).clone()
    pivot.noise = [n.detach().clone() for n in noise]
    pivot.steps = cfg.steps
    pivot.seconds = time.perf_counter() - t0
    return pivot
