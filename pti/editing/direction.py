"""Edit directions in W and W+ and how to apply them.

A :class:`Direction` is a unit vector in W (``[w_dim]``, float32) or in W+ (``[num_ws, w_dim]``:
one row per style input, unit norm over all rows; e.g. an InterFaceGAN-style file saved per
layer, or a combination of directions on different layers: :func:`combine`), an optional range of
the ``num_ws`` style inputs it acts on (GANSpace-style layer-restricted edits), a name, a
note on where it came from, and a ``scale``: the W-space length of one unit of strength.

``apply(w, d, s)`` moves ``w`` by ``s * d.scale * d.vector`` on the layers ``d.layers``
(all layers when None); a W+ direction moves each style input by its own row (W codes are
broadcast to W+ first). Conventions for ``scale``:

- official InterFaceGAN / PTI ``.pt`` files: the norm of the stored vector (1 for the
  published files), so ``apply`` equals the official ``latent + factor * direction``;
- GANSpace, SeFa and boundaries fitted by :mod:`pti.editing.interfacegan` (every direction
  ``pti`` computes or fits): one unit changes the generator's images by 4/255 mean absolute
  difference (:mod:`pti.editing.strength`), so ``-3, 0, 3`` means a comparable, visible
  change for every direction and every generator;
- GANSpace files and :meth:`pti.editing.ganspace.PCABasis.directions` (read, not computed
  for a generator): the standard deviation of W along the component (GANSpace's sigma).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from pti.progress import progress_bar


class DirectionMismatchError(ValueError):
    """A direction does not fit a generator (wrong ``w_dim`` or layer range outside ``num_ws``)."""


@dataclass(frozen=True)
class Direction:
    """A W-space (or W+, one row per style input) edit direction.

    Attributes:
        vector: ``[w_dim]`` (W) or ``[num_ws, w_dim]`` (W+) float32 with unit L2 norm over all its
            entries (normalised on construction; a ``[1, w_dim]`` input becomes ``[w_dim]``).
        layers: ``(start, stop)``, a Python-style half-open range over the ``num_ws`` style
            inputs the edit touches; None means all of them.
        name: short label (used in grids and file keys), e.g. ``"yaw"`` or ``"ganspace_3"``.
        source: where the direction came from (file, method and parameters).
        scale: W-space length of one unit of strength (> 0); see the module docstring.
    """

    vector: torch.Tensor
    layers: tuple[int, int] | None = None
    name: str = ""
    source: str = ""
    scale: float = 1.0

    def __post_init__(self) -> None:
        v = torch.as_tensor(self.vector).detach().to("cpu", torch.float32).clone()
        if v.ndim == 2 and v.shape[0] == 1 or v.ndim == 0:
            v = v.reshape(-1)
        if v.ndim not in (1, 2):
            raise ValueError(f"direction {self.name!r}: the vector must be [w_dim] or [num_ws, w_dim], got "
                             f"{tuple(v.shape)}")
        if v.numel() == 0 or not bool(torch.isfinite(v).all()):
            raise ValueError(f"direction {self.name!r}: the vector must be non-empty and finite")
        norm = float(v.double().norm())
        if norm == 0.0:
            raise ValueError(f"direction {self.name!r}: the vector is all zeros")
        object.__setattr__(self, "vector", (v.double() / norm).float())
        if self.layers is not None:
            start, stop = (int(x) for x in self.layers)
            if not 0 <= start < stop:
                raise ValueError(f"direction {self.name!r}: layers must be (start, stop) with 0 <= start < stop, "
                                 f"got {self.layers}")
            object.__setattr__(self, "layers", (start, stop))
        scale = float(self.scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"direction {self.name!r}: scale must be a finite positive number, got {self.scale}")
        object.__setattr__(self, "scale", scale)

    @property
    def w_dim(self) -> int:
        return int(self.vector.shape[-1])

    @property
    def num_ws(self) -> int | None:
        """The number of style inputs of a W+ direction (its rows); None for a W direction."""
        return int(self.vector.shape[0]) if self.vector.ndim == 2 else None

    @property
    def space(self) -> str:
        """``"W"`` (one vector for every style input) or ``"W+"`` (one row per style input)."""
        return "W+" if self.vector.ndim == 2 else "W"

    def steps(self, num_ws: int) -> torch.Tensor:
        """``[num_ws, w_dim]``: what strength 1 adds to each style input (``scale * vector`` on the rows in
        ``layers``, zero elsewhere), float64."""
        self.check(self.w_dim, num_ws)
        rows = self.vector.double() * self.scale
        rows = rows.expand(num_ws, -1).clone() if rows.ndim == 1 else rows.clone()
        if self.layers is not None:
            keep = torch.zeros(num_ws, 1, dtype=torch.float64)
            keep[self.layers[0]:self.layers[1]] = 1
            rows = rows * keep
        return rows

    def with_layers(self, layers: tuple[int, int] | None) -> "Direction":
        """The same direction restricted to ``layers`` (None: all layers)."""
        return dataclasses.replace(self, layers=layers)

    def check(self, w_dim: int, num_ws: int | None = None, what: str = "the generator") -> None:
        """Raise :class:`DirectionMismatchError` unless the direction fits ``w_dim`` / ``num_ws``."""
        origin = f" (from {self.source})" if self.source else ""
        if self.w_dim != w_dim:
            raise DirectionMismatchError(
                f"direction {self.name!r}{origin} has dimension {self.w_dim} but {what} has w_dim {w_dim}: "
                f"it was made for another generator. Compute one for this generator ('ganspace:K', 'sefa:K') "
                f"or fit one with `pti fit-boundaries`.")
        if self.num_ws is not None and num_ws is not None and self.num_ws != num_ws:
            raise DirectionMismatchError(
                f"direction {self.name!r}{origin} has {self.num_ws} rows (one per style input, W+) but {what} has "
                f"num_ws {num_ws}: it was made for another generator (a W direction has one row).")
        if self.layers is not None and num_ws is None and self.num_ws is not None:
            num_ws = self.num_ws
        if self.layers is not None and num_ws is not None and self.layers[1] > num_ws:
            raise DirectionMismatchError(
                f"direction {self.name!r}{origin} acts on layers {self.layers[0]}..{self.layers[1] - 1} but {what} "
                f"has only {num_ws} style inputs (num_ws); choose a layer range within 0..{num_ws - 1}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tensors, str, float, lists) that ``torch.load(weights_only=True)`` reads back."""
        return {"vector": self.vector.clone(), "layers": list(self.layers) if self.layers is not None else None,
                "name": self.name, "source": self.source, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Direction":
        layers = data.get("layers")
        return cls(vector=data["vector"], layers=tuple(layers) if layers is not None else None,
                   name=str(data.get("name", "")), source=str(data.get("source", "")),
                   scale=float(data.get("scale", 1.0)))


def combine(terms: Sequence[tuple[Direction, float]], num_ws: int, name: str = "") -> Direction:
    """One direction that moves codes by ``sum_i weight_i * d_i.scale * d_i.vector`` (each term in its own
    strength unit, on its own layers), e.g. ``smile 1 + yaw 2``; its strength 1 is that sum.

    Args:
        terms: ``(direction, weight)`` pairs, at least one; every direction of the same ``w_dim``.
        num_ws: the generator's number of style inputs (W+ terms must have as many rows).
        name: the combination's label (default: ``"smile 1 + yaw 2"`` from the terms).

    Returns:
        A W direction when every term is a W direction on the same layers, else a W+ direction
        ``[num_ws, w_dim]`` (``layers`` None: each term's layer range is in its rows). ``scale`` is
        the length of the sum, so ``apply(w, combined, 1)`` adds the sum.

    Raises:
        ValueError: no terms, or terms that cancel (a zero sum).
        DirectionMismatchError: terms of another ``w_dim`` or ``num_ws`` than the first / the generator.
    """
    if not terms:
        raise ValueError("a combination needs at least one direction")
    label = name or " + ".join(f"{d.name} {float(weight) + 0.0:g}" for d, weight in terms)
    w_dim = terms[0][0].w_dim
    for d, _ in terms:
        d.check(w_dim, num_ws)
    source = "combination: " + " + ".join(f"{float(weight):g} x {d.name} ({d.source or 'no source'})"
                                          for d, weight in terms)
    same_layers = len({d.layers for d, _ in terms}) == 1
    if same_layers and all(d.num_ws is None for d, _ in terms):
        total = sum(float(weight) * d.scale * d.vector.double() for d, weight in terms)
        layers = terms[0][0].layers
    else:
        total = sum(float(weight) * d.steps(num_ws) for d, weight in terms)
        layers = None
    length = float(torch.as_tensor(total).norm())
    if length == 0.0:
        raise ValueError(f"combination {label!r}: the terms cancel (their weighted sum is zero)")
    return Direction(vector=total, layers=layers, name=label, source=source, scale=length)


def _strength_column(strength: float | torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(strength, dtype=like.dtype, device=like.device).reshape(-1)
    if s.numel() not in (1, n):
        raise ValueError(f"strength must be a number or have one value per code ({n}), got {s.numel()} values")
    return s.expand(n)


def apply(w: torch.Tensor, direction: Direction, strength: float | torch.Tensor,
          num_ws: int | None = None) -> torch.Tensor:
    """Move codes along ``direction``.

    Args:
        w: ``[N, w_dim]`` (W) or ``[N, num_ws, w_dim]`` (W+, or W broadcast to layers).
        direction: the edit; ``strength * direction.scale * direction.vector`` is added (row by row for
            a W+ direction, whose rows must match ``num_ws``).
        strength: a number or ``[N]`` (one strength per code).
        num_ws: needed only for a layer-restricted W direction applied to ``[N, w_dim]`` codes;
            the result is then ``[N, num_ws, w_dim]``. ``[N, w_dim]`` codes edited by a W+
            direction are broadcast to its rows first (result ``[N, num_ws, w_dim]``).

    Returns:
        Edited codes, same dtype/device as ``w``; shape as ``w`` except as noted above.
    """
    if w.ndim not in (2, 3):
        raise ValueError(f"w must be [N, w_dim] or [N, num_ws, w_dim], got {tuple(w.shape)}")
    direction.check(w.shape[-1], w.shape[1] if w.ndim == 3 else num_ws, what="each code")
    s = _strength_column(strength, w.shape[0], w)
    if direction.num_ws is not None:  # W+: one row per style input
        if w.ndim == 2:
            w = w[:, None, :].expand(-1, direction.num_ws, -1)
        rows = direction.steps(direction.num_ws).to(device=w.device, dtype=w.dtype)
        return w + s[:, None, None] * rows[None]
    step = direction.vector.to(device=w.device, dtype=w.dtype) * direction.scale
    if direction.layers is None:
        delta = s[:, None] * step[None, :]
        return w + (delta if w.ndim == 2 else delta[:, None, :])
    if w.ndim == 2:
        if num_ws is None:
            raise ValueError(f"direction {direction.name!r} acts on layers {direction.layers}; pass num_ws to apply "
                             "it to [N, w_dim] codes (the result is [N, num_ws, w_dim])")
        w = w[:, None, :].expand(-1, num_ws, -1)
    start, stop = direction.layers
    mask = torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)
    mask[start:stop] = 1
    return w + s[:, None, None] * mask[None, :, None] * step[None, None, :]


@torch.no_grad()
def render_edits(G: torch.nn.Module, w: torch.Tensor, directions: Direction | Sequence[Direction],
                 strengths: Sequence[float], noise: Sequence[torch.Tensor] | None = None,
                 noise_mode: str = "const", batch_size: int = 8, progress: bool = False) -> torch.Tensor:
    """Render every (code, direction, strength) combination, batched.

    Args:
        G: generator with ``synthesis``, ``num_ws`` and ``w_dim``.
        w: ``[N, w_dim]`` or ``[N, num_ws, w_dim]`` codes (e.g. ``pivot.w``).
        directions: one direction or a sequence of D.
        strengths: S strengths (units of each direction's ``scale``).
        noise: optional noise maps for ``G.synthesis`` (e.g. ``pivot.noise``); each map's
            batch dimension must be 1 (shared) since codes are batched together.
        noise_mode: passed to ``G.synthesis`` ('const' reproduces a pivot's image).

    Returns:
        ``[N, D, S, C, H, W]`` float32 images in [-1, 1] on ``w``'s device.
    """
    dirs = [directions] if isinstance(directions, Direction) else list(directions)
    strengths = [float(s) for s in strengths]
    if not dirs or not strengths:
        raise ValueError("render_edits needs at least one direction and one strength")
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    if w.ndim == 2:
        w = w[:, None, :].expand(-1, num_ws, -1)
    if w.ndim != 3 or w.shape[1:] != (num_ws, w_dim):
        raise ValueError(f"w must be [N, {w_dim}] or [N, {num_ws}, {w_dim}] for this generator, got {tuple(w.shape)}")
    for d in dirs:
        d.check(w_dim, num_ws)
    n, n_dirs, n_str = w.shape[0], len(dirs), len(strengths)
    # all edited codes, in (code, direction, strength) order
    codes = torch.stack([apply(w, d, s) for d in dirs for s in strengths], dim=1)  # [N, D*S, num_ws, w_dim]
    codes = codes.reshape(n * n_dirs * n_str, num_ws, w_dim)
    kwargs: dict[str, Any] = {"noise_mode": noise_mode}
    if noise is not None and len(noise) > 0:
        kwargs["noise"] = list(noise)
    images = []
    for i in progress_bar(range(0, codes.shape[0], batch_size), desc="rendering edits", disable=not progress):
        images.append(G.synthesis(codes[i:i + batch_size], **kwargs).float())
    out = torch.cat(images)
    return out.reshape(n, n_dirs, n_str, *out.shape[1:])
