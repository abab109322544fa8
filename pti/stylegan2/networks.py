"""StyleGAN2 mapping network, synthesis network and generator (StyleGAN2-ADA options).

Module, parameter and buffer names equal NVIDIA's, so an official ``G_ema.state_dict()``
loads with ``strict=True``. Images are ``[N, img_channels, R, R]`` float32 in about [-1, 1].
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

from pti.stylegan2.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    NoiseMode,
    SynthesisLayer,
    ToRGBLayer,
    normalize_2nd_moment,
)
from pti.stylegan2.ops import setup_filter, upsample2d

ARCHITECTURES = ("orig", "skip", "resnet")
# Constructor arguments that some official pickles carry and that change nothing here.
_IGNORED_SYNTHESIS_KWARGS = {"fused_modconv_default"}


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to ``num_ws`` layers, with optional truncation.

    Shapes: ``z [N, z_dim]``, ``c [N, c_dim]`` -> ``ws [N, num_ws, w_dim]`` (or ``[N, w_dim]``
    when ``num_ws`` is None).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = False) -> torch.Tensor:
        """Map latents to ws. ``update_w_avg`` (training only) moves ``w_avg`` towards the batch mean."""
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this generator is conditional: c must be [N, {self.c_dim}], "
                                 f"got {None if c is None else tuple(c.shape)}")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or self.w_avg_beta is None:
                raise ValueError("truncation needs num_ws and w_avg")
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = torch.cat([self.w_avg.lerp(x[:, :cutoff], truncation_psi), x[:, cutoff:]], dim=1)
        return x


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: [upsampling conv0], conv1, [toRGB]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def noise_layers(self) -> list[SynthesisLayer]:
        return [layer for layer in (getattr(self, "conv0", None), self.conv1) if layer is not None and layer.use_noise]

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_mode: NoiseMode = "random",
                noise: Sequence[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``ws [N, num_conv + num_torgb, w_dim]``; ``noise``: one map (or None) per noise layer."""
        w_iter = iter(ws.unbind(dim=1))
        noise_iter = iter(noise if noise is not None else [None] * 2)
        on_cuda = ws.device.type == "cuda"
        dtype = torch.float16 if self.use_fp16 and not force_fp32 and on_cuda else torch.float32
        memory_format = torch.channels_last if self.channels_last and not force_fp32 and on_cuda \
            else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)
        kw = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)

        if self.in_channels == 0:
            # the const is 3-D: NHWC only applies once it is a batch (a 3-D .to(channels_last) raises)
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, next(w_iter), noise=next(noise_iter), **kw)
        elif self.architecture == "resnet":
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise=next(noise_iter), **kw)
            x = self.conv1(x, next(w_iter), noise=next(noise_iter), gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), noise=next(noise_iter), **kw)
            x = self.conv1(x, next(w_iter), noise=next(noise_iter), **kw)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, R, R]``, ``num_ws = 2 log2(R) - 2``."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        for key in _IGNORED_SYNTHESIS_KWARGS & set(block_kwargs):
            block_kwargs.pop(key)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                                   is_last=is_last, use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers that take a noise map, in the order ``noise`` arguments are given."""
        return [layer for block in self.blocks() for layer in block.noise_layers()]

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", force_fp32: bool = False,
                fused_modconv: bool | None = None, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Render ``ws``.

        Args:
            noise_mode: 'random' (fresh noise), 'const' (the stored ``noise_const`` maps) or 'none'.
            noise: optional explicit noise maps, one per :meth:`noise_layers` entry, each
                ``[N or 1, 1, R, R]`` or ``[R, R]``; they replace ``noise_const``/random noise.
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        noise_list = list(noise) if noise is not None else None
        if noise_list is not None and len(noise_list) != len(self.noise_layers()):
            raise ValueError(f"expected {len(self.noise_layers())} noise maps, got {len(noise_list)}")
        x = img = None
        w_idx = 0
        n_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            n_noise = len(block.noise_layers())
            block_noise = None
            if noise_list is not None:
                block_noise = noise_list[n_idx:n_idx + n_noise]
                # map per-layer maps onto conv0/conv1 (a layer without noise gets None)
                layers = [getattr(block, "conv0", None), block.conv1]
                it = iter(block_noise)
                block_noise = [next(it) if (layer is not None and layer.use_noise) else None
                               for layer in layers if layer is not None]
            n_idx += n_noise
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fused_modconv=fused_modconv,
                           noise_mode=noise_mode, noise=block_noise)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z, c) = G.synthesis(G.mapping(z, c))``.

    Args mirror NVIDIA's StyleGAN2-ADA ``Generator``: ``mapping_kwargs`` (num_layers,
    lr_multiplier, w_avg_beta, ...) and ``synthesis_kwargs`` (channel_base, channel_max,
    num_fp16_res, conv_clamp, architecture, ...; may also be given as extra keywords).
    Attributes: ``z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None,
                 **extra_synthesis_kwargs: Any) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = {**(synthesis_kwargs or {}), **extra_synthesis_kwargs}
        self.init_kwargs: dict[str, Any] = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_w_avg=update_w_avg)
        return self.synthesis(ws, **synthesis_kwargs)
