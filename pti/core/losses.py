"""Losses of inversion and pivotal tuning.

- :func:`l2_loss`: mean squared error of [-1, 1] images (``torch.nn.MSELoss`` as the paper);
  :func:`l2_per_image` the same per image.
- :func:`noise_regularization`: StyleGAN2's projector penalty on noise-map autocorrelation
  (:func:`noise_regularization_per_image` for a batch of photos' maps).
- :class:`PerceptualLoss`: LPIPS through the ``lpips`` package, or the named offline
  fallback of :mod:`pti.core.perceptual`, on images optionally area-downsampled first.
- :class:`LocalityRegularizer`: PTI's locality regularisation (Sec. 3.3).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pti.core.conditioning import ConditioningError
from pti.core.config import LocalityConfig


def l2_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (scalar)."""
    return F.mse_loss(x, y)


def l2_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image of ``[N, ...]`` batches: ``[N]``."""
    return (x - y).square().flatten(1).mean(dim=1)


def noise_regularization_per_image(noise_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`noise_regularization` of each photo's maps: maps ``[N, 1, R, R]`` -> ``[N]``.

    Computed one pyramid level at a time for all maps at once: at side r, the maps of side r and the
    larger maps pooled down to r are stacked as channels ``[N, M, r, r]``, both autocorrelations take
    a few ops, and the stack is pooled to r/2 (while r > 8). The same terms as StyleGAN2's loop over
    maps and levels, summed in another order (equal within float rounding: tests/test_perceptual.py).
    """
    if not noise_maps:
        return torch.zeros([1])
    n = noise_maps[0].shape[0]
    by_side: dict[int, list[torch.Tensor]] = {}
    for v in noise_maps:
        by_side.setdefault(int(v.shape[-1]), []).append(v.reshape(n, 1, *v.shape[-2:]))
    total = torch.zeros([n], device=noise_maps[0].device)
    carried: list[torch.Tensor] = []  # larger maps pooled down to the current side
    for side in sorted(set(by_side) | _pyramid_sides(by_side), reverse=True):
        stack = torch.cat(carried + by_side.get(side, []), dim=1)  # [N, M, r, r]
        horizontal = (stack * torch.roll(stack, shifts=1, dims=3)).mean(dim=(2, 3))
        vertical = (stack * torch.roll(stack, shifts=1, dims=2)).mean(dim=(2, 3))
        total = total + (horizontal.square() + vertical.square()).sum(dim=1)
        carried = [F.avg_pool2d(stack, kernel_size=2)] if side > 8 else []
    return total


def _pyramid_sides(by_side: dict[int, list[torch.Tensor]]) -> set[int]:
    """Every side a map of ``by_side`` passes through while halved down to 8 (or its own side if smaller)."""
    sides = set()
    for side in by_side:
        while side > 8:
            side //= 2
            sides.add(side)
    return sides


def noise_regularization(noise_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and pyramid levels of squared horizontal and vertical autocorrelations.

    Each map ``[1, 1, R, R]`` is repeatedly 2x average-pooled down to 8x8; at each level the
    squared mean of ``v * roll(v, 1)`` along both axes is added. Zero for white noise in
    expectation; grows when a map starts to encode image structure. (Maps ``[N, 1, R, R]``
    give the sum over the N photos.)
    """
    if not noise_maps:
        return torch.zeros([])
    return noise_regularization_per_image(noise_maps).sum()


def downsample_to(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Area-downsample ``[N, C, H, W]`` so that H <= ``resolution`` (no-op when None or smaller)."""
    if resolution is None or x.shape[-1] <= resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="area")


class PerceptualLoss(nn.Module):
    """Perceptual distance between [-1, 1] image batches, per image: ``[N]``.

    Wraps :func:`pti.core.perceptual.load_perceptual` (real LPIPS when its backbone weights can
    be had, else a named offline fallback that is never called "LPIPS"). ``name`` says which.
    """

    def __init__(self, net: str = "alex", resolution: int | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from pti.core.perceptual import load_perceptual

        self.distance = load_perceptual(net=net, device=device)
        self.resolution = resolution
        self.name: str = self.distance.name

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = downsample_to(x, self.resolution), downsample_to(y, self.resolution)
        return self.distance(x, y)

    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        """The fixed side's features (``y``: ``[N, C, H, W]`` in [-1, 1]), computed once without gradients:
        a list of ``[N, ...]`` tensors for :meth:`distance_to` (``[f[idx] for f in features]`` selects photos)."""
        return self.distance.target_features(downsample_to(y, self.resolution))

    def distance_to(self, x: torch.Tensor, target: list[torch.Tensor]) -> torch.Tensor:
        """``forward(x, y)`` for the ``y`` whose :meth:`target_features` are ``target``: ``[N]``. Bit-equal to
        ``forward`` for LPIPS (tests/test_perceptual.py)."""
        return self.distance.distance_to(downsample_to(x, self.resolution), target)


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

    ``w_z = mapping(z, c)`` (truncation ``cfg.truncation_psi``), ``w_r`` lies ``alpha`` from the
    pivot towards ``w_z``; the frozen original generator renders the reference without
    gradients. The loss is averaged over ``cfg.num_samples`` samples.

    ``labels``: for a conditional ``original`` (``c_dim > 0``), the class labels ``[N, c_dim]`` of the
    N pivots (:func:`pti.core.conditioning.class_label`); a code around pivot k is mapped with pivot k's
    label. Required for a conditional generator (:class:`~pti.core.conditioning.ConditioningError`).
    """

    def __init__(self, original: nn.Module, perceptual: nn.Module, cfg: LocalityConfig,
                 labels: torch.Tensor | None = None) -> None:
        if getattr(original, "c_dim", 0) and labels is None:
            raise ConditioningError(f"the locality regulariser of a conditional generator (c_dim {original.c_dim}) "
                                    "needs the pivots' class labels")
        self.original = original
        self.perceptual = perceptual
        self.cfg = cfg
        self.labels = labels

    def sample_w(self, w_pivots: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``w_r [num_samples, num_ws, w_dim]`` for random ``w_z``, around randomly chosen pivots.

        Draws ``z`` then the pivot indices from the CPU ``generator`` (no host sync on CUDA).
        """
        z, idx = self.draw(w_pivots.shape[0], generator)
        return self.codes(w_pivots, z.to(w_pivots.device, non_blocking=True), idx.to(w_pivots.device, non_blocking=True))

    def draw(self, num_pivots: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The random numbers of one :meth:`sample_w`: ``z [num_samples, z_dim]`` then the pivot indices
        ``[num_samples]``, from the CPU ``generator`` (so they can be drawn ahead of a run)."""
        k = self.cfg.num_samples
        z = torch.randn([k, self.original.z_dim], generator=generator, device="cpu")
        return z, torch.randint(0, num_pivots, [k], generator=generator)

    def codes(self, w_pivots: torch.Tensor, z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``w_r`` for drawn ``z`` and pivot indices ``idx`` (on ``w_pivots``' device; no host sync)."""
        c = None if self.labels is None else self.labels.to(w_pivots.device)[idx]
        with torch.no_grad():
            w_z = self.original.mapping(z, c, truncation_psi=self.cfg.truncation_psi)
        return step_towards(w_pivots[idx], w_z, self.cfg.alpha, self.cfg.norm)

    @torch.no_grad()
    def reference(self, w_r: torch.Tensor, force_fp32: bool = True) -> torch.Tensor:
        """The original generator's images of ``w_r`` (no gradients)."""
        return self.original.synthesis(w_r, noise_mode=self.cfg.noise_mode, force_fp32=force_fp32)

    def penalty_per_group(self, rendered: torch.Tensor, reference: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """``L_R`` of ``groups`` equal consecutive groups of images (one group per photo): ``[groups]``."""
        loss = torch.zeros([groups], device=rendered.device)
        if self.cfg.l2_weight:
            loss = loss + self.cfg.l2_weight * l2_per_image(rendered.float(), reference.float()).reshape(groups, -1).mean(1)
        if self.cfg.lpips_weight:
            dist = self.perceptual(rendered, reference).float()
            loss = loss + self.cfg.lpips_weight * dist.reshape(groups, -1).mean(1)
        return loss

    def __call__(self, tuned: nn.Module, w_pivots: torch.Tensor, generator: torch.Generator,
                 force_fp32: bool = True) -> torch.Tensor:
        w_r = self.sample_w(w_pivots, generator)
        reference = self.reference(w_r, force_fp32)
        rendered = tuned.synthesis(w_r, noise_mode=self.cfg.noise_mode, force_fp32=force_fp32)
        return self.penalty_per_group(rendered, reference)[0]


def is_finite(x: torch.Tensor) -> bool:
    """Whether a scalar loss is finite (one host sync)."""
    return math.isfinite(float(x))
