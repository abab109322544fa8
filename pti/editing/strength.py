"""One unit of edit strength: a fixed, visible change of the image, for every direction.

The convention of every direction that ``pti`` computes or fits (GANSpace, SeFa,
InterFaceGAN boundaries from :mod:`pti.editing.interfacegan`): **strength 1 changes the
generator's images by** :data:`PIXELS_PER_UNIT` **= 4/255 mean absolute difference**
(pixels on the [0, 255] scale, averaged over all pixels and channels, over
``num_samples`` random codes, and over the steps +1 and -1). So ``-3 .. 3`` is a comparable,
visible edit whatever the direction and whatever its origin.

Why not a spread of W along the direction (GANSpace's "sigma" units): a linear-SVM normal
points across the data, where W varies little, and the image moves at a different rate per
unit of W for each direction. On the 58.9 kimg demo generator the fitted ``smile`` and
``mouth_open`` normals had a W spread of 0.18 against 3.44 for ``ganspace_0``, and +-3 of
them changed the image by 2.1/255 and 1.8/255 (mean) against 18.2/255 for ``yaw``:
a slider over those units looked broken. Measuring the image fixes the unit where it is seen.

The calibration (:func:`calibrate_scale`) is a fixed-point iteration on the W-space length
``t`` of one unit: ``t <- t * target / change(t)``, starting from the direction's current
scale, until the measured change is within ``rtol`` of the target. The change grows about
linearly with ``t`` over this range, so 2-4 rounds suffice. It renders with constant noise
(``noise_mode='const'``); codes are drawn with :func:`pti.editing.sampling.sample_w`.

Official InterFaceGAN/PTI files keep their own convention (``w + factor * direction``,
:func:`pti.editing.loaders.load_interfacegan`): they are read, not computed, and matching
the official code matters more there.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Sequence

import torch

from pti.editing.direction import Direction, apply

#: the image change, on the [0, 255] scale (mean absolute difference), of one unit of strength
PIXELS_PER_UNIT = 4.0


@torch.no_grad()
def image_change(G: torch.nn.Module, w: torch.Tensor, direction: Direction, length: float,
                 batch_size: int = 16) -> float:
    """Mean absolute image difference, on [0, 255], of moving codes by ``+-length`` along ``direction``.

    Args:
        G: generator with ``synthesis`` and ``num_ws``.
        w: ``[N, w_dim]`` codes.
        direction: its ``vector`` (``[w_dim]``, or ``[num_ws, w_dim]`` for a W+ direction, each row moving
            its style input) and ``layers`` are used, its ``scale`` is not; ``length`` is the norm of the
            whole step (over all rows for a W+ direction).
        length: W-space length of the step (> 0).

    Returns:
        The mean over codes, the two signs, pixels and channels of ``|G(w +- length d) - G(w)| * 127.5``.
    """
    num_ws = int(G.num_ws)
    unit = dataclasses.replace(direction, scale=float(length))
    total, count = 0.0, 0
    for i in range(0, w.shape[0], batch_size):
        ws = w[i:i + batch_size][:, None, :].expand(-1, num_ws, -1)
        base = G.synthesis(ws, noise_mode="const").float()
        for sign in (1.0, -1.0):
            moved = G.synthesis(apply(ws, unit, sign), noise_mode="const").float()
            total += float((moved - base).abs().mean(dim=[1, 2, 3]).sum()) * 127.5
            count += ws.shape[0]
    return total / count


def calibrate_scale(G: torch.nn.Module, direction: Direction, *, pixels_per_unit: float = PIXELS_PER_UNIT,
                    num_samples: int = 32, seed: int = 0, rtol: float = 0.02, max_rounds: int = 8,
                    w: torch.Tensor | None = None) -> tuple[float, float]:
    """The W-space length of one unit of strength for ``direction`` on ``G``.

    Args:
        G: the (original, untuned) generator the direction is for.
        direction: the edit; its current ``scale`` is the starting guess.
        pixels_per_unit: target mean absolute change on [0, 255] at strength +-1.
        num_samples, seed: random codes the change is averaged over (``sample_w``, truncation 1).
        rtol: stop when the measured change is within this relative distance of the target.
        max_rounds: at most this many rounds (each renders ``3 * num_samples`` images).
        w: optional ``[N, w_dim]`` codes to use instead of sampling.

    Returns:
        ``(scale, measured change at that scale)``.

    Raises:
        ValueError: a non-positive target, or a direction that does not change the image at all
            (the change stays 0 even at 1000x its starting length).
    """
    from pti.editing.sampling import sample_w

    if not pixels_per_unit > 0:
        raise ValueError(f"pixels_per_unit must be positive, got {pixels_per_unit}")
    if w is None:
        w = sample_w(G, num_samples, seed=seed)
    t = float(direction.scale)
    change = image_change(G, w, direction, t)
    for _ in range(max_rounds):
        if abs(change / pixels_per_unit - 1) <= rtol:
            break
        if change <= 0 or not math.isfinite(change):
            if t > 1000 * direction.scale:
                raise ValueError(f"direction {direction.name!r} does not change the images of this generator")
            t *= 10.0
        else:
            t *= min(max(pixels_per_unit / change, 0.1), 10.0)
        change = image_change(G, w, direction, t)
    return t, change


def calibrated(G: torch.nn.Module, directions: Sequence[Direction], *, pixels_per_unit: float = PIXELS_PER_UNIT,
               num_samples: int = 32, seed: int = 0, cache: bool = True) -> list[Direction]:
    """``directions`` with each ``scale`` set by :func:`calibrate_scale` (same codes for all).

    Results are cached per (all weights of ``G``, vector, layers, settings) in the direction
    cache (:mod:`pti.editing.cache`). The source text of each direction records the unit.
    """
    from pti.editing.cache import cached
    from pti.editing.sampling import sample_w
    from pti.stylegan2.checkpoints import weights_fingerprint

    if not directions:
        return []
    fingerprint = weights_fingerprint(G)
    codes: dict[str, torch.Tensor] = {}
    out = []
    for d in directions:
        shape = repr(tuple(d.vector.shape)).encode() if d.num_ws is not None else b""  # W keys as before
        key = hashlib.sha256(d.vector.numpy().tobytes() + shape + repr((d.layers, d.scale)).encode()).hexdigest()[:16]
        params = {"direction": key, "pixels_per_unit": pixels_per_unit, "num_samples": num_samples, "seed": seed}

        def compute(d: Direction = d) -> dict[str, float]:
            if "w" not in codes:
                codes["w"] = sample_w(G, num_samples, seed=seed)
            scale, change = calibrate_scale(G, d, pixels_per_unit=pixels_per_unit, w=codes["w"])
            return {"scale": scale, "change": change}

        result = cached(fingerprint, "strength", params, compute, enabled=cache)
        note = f"; 1 unit = {pixels_per_unit:g}/255 mean image change"
        out.append(dataclasses.replace(d, scale=float(result["scale"]),
                                       source=d.source if d.source.endswith(note) else d.source + note))
    return out
