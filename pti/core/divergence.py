"""Telling a diverged optimisation from a healthy one; a NaN/inf loss is only the extreme case.

A StyleGAN2 generator's images are meant to lie in [-1, 1], but nothing bounds them: the last
layers (toRGB) are modulated convolutions without demodulation, so a ``w`` or weights pushed far
away by a too-large learning rate give images with values in the thousands or millions while
every loss stays finite (``pti run --inv-lr 1e6`` gave pixel values ~1e6, an MSE of 1e12 on the
[0, 1] scale and a perceptual distance of 8, which saturates). Such a result is garbage whatever
its loss history says. Inversion and tuning therefore record the root-mean-square pixel value
(:func:`output_rms`) of every image they render, check it at every host sync, and abandon the
image with :class:`DivergenceError` once it exceeds :data:`OUTPUT_RMS_LIMIT`; the runner checks
the final images the same way (:func:`check_images`).

Why the RMS, and why 16 (measured by ``tools/divergence_ranges.py``):

- any image inside [-1, 1] has an RMS of at most 1;
- healthy outputs: the shipped demo generator's random samples at most 0.95 (600 samples, psi 1);
  its codes extrapolated to ``w_avg + 5 (w - w_avg)`` (far beyond the inversions below) 3.98;
  untrained random test generators (16-128 px, 4 seeds each, random noise) at most 6.3;
- healthy optimisations, largest RMS at any step: the demo generator on the bundled photos at the
  paper's settings, shortened to 150 + 100 steps (W, W+; with locality: 60 + 60) 0.65; the tiny
  test generators at the test suite's settings 2.13;
- too-large learning rates: inversion lr 10 reaches 43 within 20 steps, lr 100 544, lr 1e6 4.8e6;
  tuning lr 0.3 8.9e6 (lr 0.03 peaks at 2.6 and recovers: not a divergence).

16 is 2.5 times the largest healthy value measured anywhere (untrained generators' samples) and 7.5
times the largest seen during a healthy optimisation, so it cannot trigger on a normal run; every
diverging run above crosses it within a few steps. The RMS rather than the maximum: a handful of
overshooting pixels (a healthy generator's maximum reaches 2.6) must not fail an image.

Why not the loss: it does not grow reliably when a run diverges (the perceptual distance saturates,
inversion has no pixel term; at inversion lr 1e6 the tuning loss even fell, 1.4e12 -> 8.4e11), and a
healthy loss can start near 0 (a target the generator already renders), so a ratio "final over first"
has no safe threshold.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

#: an image whose RMS pixel value (in the [-1, 1] units of generator outputs) exceeds this has diverged
OUTPUT_RMS_LIMIT = 16.0


class DivergenceError(RuntimeError):
    """An optimisation diverged (its images left any sane range, or its loss became NaN/inf); the image
    is abandoned and nothing is written for it."""


def output_rms(images: torch.Tensor) -> torch.Tensor:
    """Per-image root-mean-square pixel value ``[N]`` (float32) of ``[N, C, H, W]`` images; NaN/inf propagate."""
    return images.detach().float().square().mean(dim=tuple(range(1, images.ndim))).sqrt()


def is_diverged(rms: float) -> bool:
    """True when an image's RMS pixel value is beyond :data:`OUTPUT_RMS_LIMIT` or not finite."""
    return not math.isfinite(rms) or rms > OUTPUT_RMS_LIMIT


def diverged_message(what: str, step: int | None, rms: float) -> str:
    """The error text for a diverged image (``what``: e.g. ``'inversion (photo 2)'``; ``step``: None at the end)."""
    when = f" at step {step}" if step is not None else ""
    return (f"{what} diverged{when}: its image's RMS pixel value is {rms:.3g}, far outside the [-1, 1] range of "
            f"images (limit {OUTPUT_RMS_LIMIT:g}); lower the learning rate")


def first_diverged(rows: Sequence[tuple[int, dict[str, Any]]],
                   key: str = "output_rms") -> tuple[int, float, int] | None:
    """``(step, rms, index)`` of the first flushed row whose ``key`` (a float, or a list of one per photo:
    ``index`` is the photo) has diverged (:func:`is_diverged`); None when none has. Rows without ``key``
    are skipped."""
    for step, row in rows:
        if key not in row:
            continue
        values = row[key] if isinstance(row[key], list) else [row[key]]
        for index, value in enumerate(values):
            if is_diverged(value):
                return step, value, index
    return None


def check_images(images: torch.Tensor, what: str) -> None:
    """Raise :class:`DivergenceError` when any of ``images`` ``[N, C, H, W]`` has diverged (see the module doc)."""
    for k, rms in enumerate(output_rms(images).tolist()):
        if is_diverged(rms):
            which = f" (image {k})" if images.shape[0] > 1 else ""
            raise DivergenceError(diverged_message(f"{what}{which}", None, rms))
