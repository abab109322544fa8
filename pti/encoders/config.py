"""Shape of an e4e encoder: :class:`E4EConfig` (defaults = the official FFHQ encoder).

The e4e encoder (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation",
Sec. 4 and the omertov/encoder4editing code) is a ResNet-IR-SE backbone with four stages,
a three-level feature pyramid and one "gradual style block" per generator style input.
Every size that the official network fixes is a field here, so that the same class builds
both the FFHQ encoder (IR-SE-50, 18 styles of 512, 256 px input) and a small encoder for
a small generator.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

NUM_STAGES = 4
PYRAMID_STRIDES = (16, 8, 4)  # coarse (end of stage 4), middle (stage 3), fine (stage 2): input / stride


@dataclass(frozen=True)
class E4EConfig:
    """Sizes of an :class:`~pti.encoders.Encoder4Editing`.

    Attributes:
        num_ws: number of generator style inputs (``2 * log2(resolution) - 2``: 18 at 1024 px,
            10 at 64 px); one style block each.
        w_dim: width of a W code (512 for FFHQ).
        input_size: side of the square input image in pixels (256 for FFHQ); a power of two
            >= 32. The pyramid maps are ``input_size / 16``, ``/ 8`` and ``/ 4`` pixels wide.
        stem_channels: width of the input layer (3x3 conv, BatchNorm, PReLU).
        stage_channels: width of each of the 4 backbone stages; the first unit of every stage
            halves the resolution. Consecutive stages must differ in width.
        stage_units: number of bottleneck IR-SE units per stage (IR-SE-50: 3, 4, 14, 3).
        se_reduction: squeeze-excitation reduction (channels -> channels / r -> channels).
        style_channels: width of the strided convolutions inside each style block (512
            for FFHQ, where it equals ``w_dim``).
        coarse_styles: styles ``0 .. coarse_styles-1`` read the coarse map (3 in e4e).
        middle_end: styles ``coarse_styles .. middle_end-1`` read the middle map, the rest
            the fine map (7 in e4e).
        start_from_latent_avg: add the generator's average w (the ``latent_avg`` buffer) to
            the codes, as the official FFHQ encoder does.

    Raises:
        ValueError: a size that cannot build the network (the message names the field).
    """

    num_ws: int = 18
    w_dim: int = 512
    input_size: int = 256
    stem_channels: int = 64
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    stage_units: tuple[int, ...] = (3, 4, 14, 3)
    se_reduction: int = 16
    style_channels: int = 512
    coarse_styles: int = 3
    middle_end: int = 7
    start_from_latent_avg: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_channels", tuple(int(c) for c in self.stage_channels))
        object.__setattr__(self, "stage_units", tuple(int(u) for u in self.stage_units))
        positive = ("num_ws", "w_dim", "input_size", "stem_channels", "se_reduction", "style_channels")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"E4EConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.input_size < 32 or self.input_size & (self.input_size - 1):
            raise ValueError(f"E4EConfig.input_size must be a power of two >= 32, got {self.input_size}")
        if len(self.stage_channels) != NUM_STAGES or len(self.stage_units) != NUM_STAGES:
            raise ValueError(f"E4EConfig needs {NUM_STAGES} stages, got stage_channels {self.stage_channels} "
                             f"and stage_units {self.stage_units}")
        if min(self.stage_units) < 1 or min(self.stage_channels) < self.se_reduction:
            raise ValueError(f"E4EConfig: every stage needs >= 1 unit and >= se_reduction ({self.se_reduction}) "
                             f"channels, got units {self.stage_units}, channels {self.stage_channels}")
        if any(a == b for a, b in zip(self.stage_channels, self.stage_channels[1:])):
            raise ValueError(f"E4EConfig.stage_channels: consecutive stages must differ in width, "
                             f"got {self.stage_channels}")
        if not 1 <= self.coarse_styles < self.middle_end < self.num_ws:
            raise ValueError(f"E4EConfig needs 1 <= coarse_styles < middle_end < num_ws, got "
                             f"{self.coarse_styles}, {self.middle_end}, {self.num_ws}")

    @property
    def pyramid_sizes(self) -> tuple[int, int, int]:
        """Side in pixels of the coarse, middle and fine feature maps."""
        coarse, middle, fine = (self.input_size // s for s in PYRAMID_STRIDES)
        return coarse, middle, fine

    def level(self, style: int) -> int:
        """Pyramid level read by style block ``style``: 0 coarse, 1 middle, 2 fine."""
        if not 0 <= style < self.num_ws:
            raise IndexError(f"style {style} out of range for num_ws={self.num_ws}")
        return 0 if style < self.coarse_styles else 1 if style < self.middle_end else 2

    def style_convs(self, style: int) -> int:
        """Number of stride-2 convolutions in style block ``style``: log2 of its map's side."""
        return int(math.log2(self.pyramid_sizes[self.level(style)]))

    @property
    def generator_resolution(self) -> int:
        """Resolution of the StyleGAN2 generator with ``num_ws`` style inputs (``num_ws`` even)."""
        return 2 ** ((self.num_ws + 2) // 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists); inverse of :meth:`from_dict`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> E4EConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown E4EConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)
