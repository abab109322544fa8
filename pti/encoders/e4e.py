"""The e4e encoder (Tov et al. 2021): image -> W+ code as a base w plus per-style offsets.

Architecture (paper Sec. 4, Fig. 4; official omertov/encoder4editing ``Encoder4Editing``):

1. Backbone (:mod:`.backbone`): input layer and ResNet-IR-SE units. Taps: ``c1`` at the end
   of stage 2 (``input/4``), ``c2`` at the end of stage 3 (``input/8``), ``c3`` at the end
   of stage 4 (``input/16``).
2. Feature pyramid (as in pSp): coarse map ``c3``; middle ``p2 = up(c3) + latlayer1(c2)``;
   fine ``p1 = up(p2) + latlayer2(c1)``; ``up`` is bilinear resampling with
   ``align_corners=True`` to the lateral map's size, ``latlayer*`` are 1x1 convs to the
   stage-4 width.
3. One :class:`GradualStyleBlock` per style input ``k``: ``styles.0 .. styles.{coarse-1}``
   read the coarse map, then the middle map up to ``middle_end``, then the fine map.
4. Codes (the e4e scheme): ``w0 = styles.0(c3)`` is broadcast to every style input and each
   block ``k >= 1`` adds an offset: ``code_k = w0 + delta_k`` with ``delta_k = styles.k(map)``
   (``delta_0 = 0``). With ``start_from_latent_avg`` the generator's average w is added to
   every code: ``code_k = latent_avg_k + w0 + delta_k``. During e4e's progressive training
   only the first ``num_deltas`` offsets are active and the others are zero; at inference all
   ``num_ws - 1`` are. e4e's delta regulariser is ``sum_k ||delta_k||_2`` (Eq. 4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pti.encoders.backbone import make_body, make_input_layer
from pti.encoders.config import E4EConfig
from pti.stylegan2.layers import FullyConnectedLayer

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default, which the official style blocks use


class GradualStyleBlock(nn.Module):
    """Feature map -> one w-sized vector: stride-2 3x3 convs down to 1x1, then an equalised linear.

    ``convs``: ``log2(spatial)`` convs (the first ``in -> channels``, then ``channels ->
    channels``; each with bias and LeakyReLU(0.01)). ``linear``: equalised-lr dense layer
    ``channels -> w_dim`` (rosinality's ``EqualLinear``, lr multiplier 1, no activation).
    Shapes: ``[N, in_channels, spatial, spatial] -> [N, w_dim]``.
    """

    def __init__(self, in_channels: int, channels: int, w_dim: int, spatial: int) -> None:
        super().__init__()
        num_convs = max(1, spatial.bit_length() - 1)
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size=3, stride=2, padding=1),
                       nn.LeakyReLU(LEAKY_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = FullyConnectedLayer(channels, w_dim, lr_multiplier=1.0)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(x.shape[0], self.channels))


def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """``top`` resampled (bilinear, ``align_corners=True``) to ``lateral``'s size, plus ``lateral``."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def prepare_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """Photos as the encoder wants them: ``[N, 3, H, W]`` in ``[-1, 1]`` -> ``[N, 3, size, size]`` float32.

    Resized with antialiased bilinear filtering when ``H, W != size`` (the official PTI
    resizes the aligned photo to 256 with PIL's bilinear filter on 8-bit values, then maps
    it to ``[-1, 1]``; the two differ by at most one 8-bit level). The range is not checked.

    Raises:
        ValueError: not a 4-D float tensor with 3 channels.
    """
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"the encoder takes float images [N, 3, H, W] in [-1, 1], got {images.dtype} "
                         f"{list(images.shape)}")
    images = images.float()
    if tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images


class Encoder4Editing(nn.Module):
    """e4e encoder: ``[N, 3, S, S]`` images in ``[-1, 1]`` (``S = config.input_size``) -> codes ``[N, num_ws, w_dim]``.

    Submodule names equal the official checkpoint's ``encoder.*`` keys (``input_layer``,
    ``body``, ``styles``, ``latlayer1``, ``latlayer2``); the ``latent_avg`` buffer
    ``[num_ws, w_dim]`` holds the checkpoint's top-level ``latent_avg`` (zeros until loaded).
    See the module docstring for the forward pass; :meth:`encode` also resizes.
    """

    def __init__(self, config: E4EConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or E4EConfig()
        self.input_layer = make_input_layer(config)
        self.body, self._taps = make_body(config)
        fpn_width = config.stage_channels[3]
        self.styles = nn.ModuleList(
            GradualStyleBlock(fpn_width, config.style_channels, config.w_dim, config.pyramid_sizes[config.level(k)])
            for k in range(config.num_ws))
        self.latlayer1 = nn.Conv2d(config.stage_channels[2], fpn_width, kernel_size=1)
        self.latlayer2 = nn.Conv2d(config.stage_channels[1], fpn_width, kernel_size=1)
        self.register_buffer("latent_avg", torch.zeros([config.num_ws, config.w_dim]))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone taps ``(c1, c2, c3)``: ``[N, ch2, S/4, S/4]``, ``[N, ch3, S/8, S/8]``, ``[N, ch4, S/16, S/16]``."""
        x = self.input_layer(x)
        taps: list[torch.Tensor] = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        c1, c2, c3 = taps
        return c1, c2, c3

    def base_and_deltas(self, x: torch.Tensor, num_deltas: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``w0 [N, w_dim]`` and offsets ``[N, num_ws, w_dim]`` (row 0 and inactive rows are zero).

        ``num_deltas``: how many offsets ``delta_1 .. delta_num_deltas`` are computed (e4e's
        progressive stage); ``None`` = all ``num_ws - 1``. Neither includes ``latent_avg``.

        Raises:
            ValueError: ``x`` is not ``[N, 3, input_size, input_size]``, or ``num_deltas`` is out of range.
        """
        cfg = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, cfg.input_size, cfg.input_size):
            raise ValueError(f"the encoder takes [N, 3, {cfg.input_size}, {cfg.input_size}] images, got "
                             f"{list(x.shape)}; use encode() or prepare_input() to resize")
        active = cfg.num_ws - 1 if num_deltas is None else num_deltas
        if not 0 <= active <= cfg.num_ws - 1:
            raise ValueError(f"num_deltas must be in [0, {cfg.num_ws - 1}], got {num_deltas}")
        c1, c2, c3 = self.features(x)
        w0 = self.styles[0](c3)
        rows = [torch.zeros_like(w0)]
        level_map = c3
        for k in range(1, active + 1):
            if k == cfg.coarse_styles:
                level_map = upsample_add(c3, self.latlayer1(c2))
            elif k == cfg.middle_end:
                level_map = upsample_add(level_map, self.latlayer2(c1))
            rows.append(self.styles[k](level_map))
        rows += [torch.zeros_like(w0)] * (cfg.num_ws - 1 - active)
        return w0, torch.stack(rows, dim=1)

    def forward(self, x: torch.Tensor, num_deltas: int | None = None) -> torch.Tensor:
        """Codes ``[N, num_ws, w_dim]``: ``w0 + delta_k`` (+ ``latent_avg`` when ``config.start_from_latent_avg``)."""
        w0, deltas = self.base_and_deltas(x, num_deltas)
        codes = w0.unsqueeze(1) + deltas
        if self.config.start_from_latent_avg:
            codes = codes + self.latent_avg.to(codes.dtype)
        return codes

    def encode(self, images: torch.Tensor, num_deltas: int | None = None) -> torch.Tensor:
        """:meth:`forward` on :func:`prepare_input` ``(images, input_size)``: any ``[N, 3, H, W]`` in ``[-1, 1]``."""
        return self(prepare_input(images, self.config.input_size).to(self.latent_avg.device), num_deltas)

    def extra_repr(self) -> str:
        cfg = self.config
        return (f"num_ws={cfg.num_ws}, w_dim={cfg.w_dim}, input_size={cfg.input_size}, "
                f"stages={cfg.stage_channels}x{cfg.stage_units}")
