"""Losses of inversion and pivotal tuning.

- :func:`l2_loss`: mean squared error of [-1, 1] images (``torch.nn.MSELoss`` as the paper).
- :func:`noise_regularization`: StyleGAN2's projector penalty on noise-map autocorrelation.
- :class:`PerceptualLoss`: LPIPS through the ``lpips`` package, or the named offline
  fallback of :mod:`pti.perceptual`, on images optionally area-downsampled first.
- :class:`LocalityRegularizer`: PTI's locality regularisation (Sec. 3.3).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pti.config import LocalityConfig


def l2_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (scalar)."""
    return F.mse_loss(x, y)


def noise_regularization(noise_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and pyramid levels of squared horizontal and vertical autocorrelations.

    Each map ``[1, 1, R, R]`` is repeatedly 2x average-pooled down to 8x8; at each level the
    squared mean of ``v * roll(v, 1)`` along both axes is added. Zero for white noise in
    expectation; grows when a map starts to encode image structure.
    """
    total = torch.zeros([], device=noise_maps[0].device if noise_maps else "cpu")
    for v in noise_maps:
        v = v.reshape(1, 1, *v.shape[-2:])
        while True:
            total = total + (v * torch.roll(v, shifts=1, dims=3)).mean() ** 2
            total = total + (v * torch.roll(v, shifts=1, dims=2)).mean() ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return total


def downsample_to(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Area-downsample ``[N, C, H, W]`` so that H <= ``resolution`` (no-op when None or smaller)."""
    if resolution is None or x.shape[-1] <= resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="area")


class PerceptualLoss(nn.Module):
    """Perceptual distance between [-1, 1] image batches, per image: ``[N]``.

    Wraps :func:`pti.perceptual.load_perceptual` (real LPIPS when its backbone weights can
    be had, else a named offline fallback that is never called "LPIPS"). ``name`` says which.
    """

    def __init__(self, net: str = "alex", resolution: int | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from pti.perceptual import load_perceptual

        self.distance = load_perceptual(net=net, device=device)
        self.resolution = resolution
        self.name: str = self.distance.name

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(downsample_to(x, self.resolution), downsample_to(y, self.resolution))


def step_towards(w_pivot: torch.Tensor, w_target: torch.Tensor, alpha: float, norm: str = "paper") -> torch.Tensor:
    """``w_r = w_p + alpha * (w_z - w_p) / ||w_z - w_p||``.

    Args:
        w_pivot: ``[1, num_ws, w_dim]``.
        w_target: ``[K, num_ws, w_dim]``.
        norm: 'paper' normalises each layer's difference (a distance of ``alpha`` in W);
            'official' normalises the whole stacked ``[num_ws, w_dim]`` difference.
    Returns: ``[K, num_ws, w_dim]``.
    """
    diff = w_target - w_pivot
    if norm == "paper":
        length = diff.norm(dim=2, keepdim=True)
    elif norm == "official":
        length = diff.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    else:
        raise ValueError(f"norm must be 'paper' or 'official', got {norm!r}")
    return w_pivot + alpha * diff / length.clamp_min(1e-8)


class LocalityRegularizer:
    """PTI's locality regularisation, ``L_R = λ_L2 ||G(w_r;θ*) - G(w_r;θ)||² + λ_LPIPS LPIPS(·,·)``.

    ``w_z = mapping(z)`` (truncation ``cfg.truncation_psi``), ``w_r`` lies ``alpha`` from the
    pivot towards ``w_z``; the frozen original generator renders the reference without
    gradients. The loss is averaged over ``cfg.num_samples`` samples.
    """

    def __init__(self, original: nn.Module, perceptual: nn.Module, cfg: LocalityConfig) -> None:
        self.original = original
        self.perceptual = perceptual
        self.cfg = cfg

    def sample_w(self, w_pivots: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``w_r`` for each of ``num_samples`` random ``w_z``, around randomly chosen pivots."""
        G = self.original
        device = w_pivots.device
        k = self.cfg.num_samples
        z = torch.randn([k, G.z_dim], generator=generator, device="cpu").to(device)
        c = torch.zeros([k, G.c_dim], device=device) if G.c_dim > 0 else None
        with torch.no_grad():
            w_z = G.mapping(z, c, truncation_psi=self.cfg.truncation_psi)
        idx = torch.randint(0, w_pivots.shape[0], [k], generator=generator).to(device)
        return torch.stack([step_towards(w_pivots[i:i + 1], w_z[j:j + 1], self.cfg.alpha, self.cfg.norm)[0]
                            for j, i in enumerate(idx.tolist())])

    def __call__(self, tuned: nn.Module, w_pivots: torch.Tensor, generator: torch.Generator,
                 force_fp32: bool = True) -> torch.Tensor:
        w_r = self.sample_w(w_pivots, generator)
        with torch.no_grad():
            reference = self.original.synthesis(w_r, noise_mode=self.cfg.noise_mode, force_fp32=force_fp32)
        rendered = tuned.synthesis(w_r, noise_mode=self.cfg.noise_mode, force_fp32=force_fp32)
        loss = torch.zeros([], device=w_r.device)
        if self.cfg.l2_weight:
            loss = loss + self.cfg.l2_weight * l2_loss(rendered, reference)
        if self.cfg.lpips_weight:
            loss = loss + self.cfg.lpips_weight * self.perceptual(rendered, reference).mean()
        return loss


def is_finite(x: torch.Tensor) -> bool:
    """Whether a scalar loss is finite (one host sync)."""
    return math.isfinite(float(x))
