"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for discriminator inputs.

Applied to both real and generated images before the discriminator; every op is
differentiable with respect to the image, so generator gradients flow through it.
Policies (the ones Projected GAN uses): ``color`` (random brightness, saturation,
contrast), ``translation`` (shift by up to 1/8 of the size, zero fill) and ``cutout``
(one zeroed square of half the size). Images are ``[N, C, H, W]`` in about [-1, 1];
all randomness comes from the ``generator`` argument.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policies(text: str) -> tuple[str, ...]:
    """``"none"`` -> ``()``; ``"color,cutout"`` -> ``("color", "cutout")`` (a command line's ``--augment``).

    Raises ``ValueError`` for an empty list or a name not in :data:`POLICIES`.
    """
    if text.strip() == "none":
        return ()
    policies = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise ValueError(f"takes 'none' or policies from {','.join(POLICIES)}, got {text!r}")
    return policies


def _rand(n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) of shape [n, 1, 1, 1], drawn on the generator's device then moved."""
    dev = generator.device if generator is not None else like.device
    return torch.rand([n, 1, 1, 1], generator=generator, device=dev).to(like.device, like.dtype)


def augment_color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5) (DiffAugment's ranges,
    applied, as there, to images in [-1, 1])."""
    n = x.shape[0]
    x = x + (_rand(n, x, generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(n, x, generator) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * (_rand(n, x, generator) + 0.5) + mean
    return x


def augment_translation(x: torch.Tensor, ratio: float = 0.125,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by integer offsets in [-ratio*size, ratio*size], filling with zeros."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = generator.device if generator is not None else x.device
    ty = torch.randint(-sh, sh + 1, [n], generator=generator, device=dev).to(x.device)
    tx = torch.randint(-sw, sw + 1, [n], generator=generator, device=dev).to(x.device)
    padded = F.pad(x, [sw, sw, sh, sh])
    rows = (torch.arange(h, device=x.device).view(1, h) - ty.view(n, 1) + sh)  # [n, h]
    cols = (torch.arange(w, device=x.device).view(1, w) - tx.view(n, 1) + sw)  # [n, w]
    idx_rows = rows.view(n, 1, h, 1).expand(n, x.shape[1], h, padded.shape[3])
    out = padded.gather(2, idx_rows)
    idx_cols = cols.view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return out.gather(3, idx_cols)


def augment_cutout(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one square of ``ratio * size`` per image at a random centre (clipped at borders)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = generator.device if generator is not None else x.device
    cy = torch.randint(0, h + (1 - ch % 2), [n], generator=generator, device=dev).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), [n], generator=generator, device=dev).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    y0 = (cy - ch // 2).view(n, 1, 1)
    x0 = (cx - cw // 2).view(n, 1, 1)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: Sequence[str] = POLICIES,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the named policies in order (``color``, ``translation``, ``cutout``)."""
    for name in policy:
        if name == "color":
            x = augment_color(x, generator)
        elif name == "translation":
            x = augment_translation(x, generator=generator)
        elif name == "cutout":
            x = augment_cutout(x, generator=generator)
        else:
            raise ValueError(f"unknown DiffAugment policy {name!r}; choose from {POLICIES}")
    return x
