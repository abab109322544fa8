"""Projected discriminator (Sauer et al., "Projected GANs Converge Faster", NeurIPS 2021).

The real/fake decision is made on features of a frozen, ImageNet-pretrained
EfficientNet-Lite0 (:mod:`pti.core.effnet_lite0`) rather than on pixels:

1. the image (``[N, 3, R, R]`` in [-1, 1]) is resized to ``input_resolution`` and passed
   through the frozen network; four stage outputs are taken (24, 40, 112, 320 channels at
   strides 4, 8, 16, 32);
2. Cross-Channel Mixing (CCM): a fixed random 1x1 convolution per stage maps them to
   ``ccm_channels * (1, 2, 4, 8)`` channels;
3. Cross-Scale Mixing (CSM), kept simple: top-down, each stage adds the upsampled output
   of the next deeper stage after a fixed random 1x1 convolution;
   Each mixed map is then multiplied by a fixed scale (:meth:`ProjectedDiscriminator.calibrate`
   sets it once to 1 / std over a batch of real images, so the heads see unit-scale inputs);
4. one small trainable head per stage (equalised-lr 3x3 convolutions with 2x
   downsampling and leaky ReLU down to 4x4, StyleGAN's minibatch-stddev channel, a 3x3 and
   a 1x1 convolution) gives a 4x4 map of logits.

Only the heads are trained; the backbone, CCM and CSM are fixed (buffers, saved with the
heads so a resumed run uses the same projections).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pti.core.effnet_lite0 import FEATURE_CHANNELS, load_efficientnet_lite0
from pti.stylegan2.layers import Conv2dLayer

#: indices into pti.core.effnet_lite0's feature list that the discriminator uses (strides 4..32)
USED_FEATURES = (1, 2, 3, 4)
BACKBONE_PREFIX = "backbone."


@dataclass(frozen=True)
class ProjectedDConfig:
    """Discriminator settings.

    Attributes:
        input_resolution: images are resized (bilinear) to this before the backbone;
            the used feature maps are then ``input_resolution / (4, 8, 16, 32)`` wide.
        ccm_channels: CCM width of the shallowest stage (x2 per deeper stage).
        head_channels_max: widest head layer.
        use_csm: apply cross-scale mixing.
        mbstd_group: group size of the minibatch-stddev channel in each head (0: none).
        pretrained: load the ImageNet weights of the backbone (False only in tests).
    """

    input_resolution: int = 128
    ccm_channels: int = 32
    head_channels_max: int = 128
    use_csm: bool = True
    mbstd_group: int = 4
    pretrained: bool = True


def _fixed_random_conv1x1(in_ch: int, out_ch: int, generator: torch.Generator) -> torch.Tensor:
    """Kaiming-uniform weight ``[out, in, 1, 1]`` (the default nn.Conv2d init), from ``generator``."""
    bound = 1.0 / math.sqrt(in_ch) * math.sqrt(3.0)
    return (torch.rand([out_ch, in_ch, 1, 1], generator=generator) * 2 - 1) * bound


def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """StyleGAN's minibatch standard deviation: append one channel holding, for each group of
    ``group_size`` samples, the mean over features and positions of the per-feature std across
    the group. ``[N, C, H, W]`` -> ``[N, C + 1, H, W]``; N must be divisible by the group size
    (``min(group_size, N)``). It lets the discriminator see a lack of diversity in a batch.
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g != 0:
        raise ValueError(f"minibatch_stddev: batch {n} is not divisible by group size {g}; use a batch that is")
    y = x.reshape(g, n // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/g, c, h, w]
    y = y.mean(dim=[1, 2, 3]).reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorHead(nn.Module):
    """Trainable head: ``[N, C, S, S]`` -> logits ``[N, 1, 4, 4]`` (S a power of two >= 4).

    3x3 convolutions with 2x downsampling to 4x4, then (if ``mbstd_group`` > 0) the
    minibatch-stddev channel, a 3x3 convolution and a 1x1 convolution to one logit per position.
    """

    def __init__(self, in_channels: int, size: int, channels_max: int, mbstd_group: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        while size > 4:
            out = min(ch * 2, channels_max)
            layers.append(Conv2dLayer(ch, out, kernel_size=3, activation="lrelu", down=2))
            ch, size = out, size // 2
        self.down = nn.Sequential(*layers)
        self.mbstd_group = mbstd_group
        self.conv = Conv2dLayer(ch + (1 if mbstd_group > 0 else 0), ch, kernel_size=3, activation="lrelu")
        self.out = Conv2dLayer(ch, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        if self.mbstd_group > 0:
            x = minibatch_stddev(x, self.mbstd_group)
        return self.out(self.conv(x))


class ProjectedDiscriminator(nn.Module):
    """``D(img) -> list of logit maps``, one ``[N, 1, 4, 4]`` tensor per feature stage.

    ``img`` is ``[N, 3, R, R]`` float in about [-1, 1]. The frozen backbone is registered
    under ``backbone.``; :meth:`trainable_state_dict` leaves it out.
    """

    def __init__(self, cfg: ProjectedDConfig, seed: int = 0) -> None:
        super().__init__()
        if cfg.input_resolution < 128 or cfg.input_resolution & (cfg.input_resolution - 1):
            raise ValueError(f"input_resolution must be a power of two >= 128, got {cfg.input_resolution}")
        self.cfg = cfg
        self.backbone = load_efficientnet_lite0(pretrained=cfg.pretrained).eval().requires_grad_(False)
        gen = torch.Generator().manual_seed(seed)
        in_chs = [FEATURE_CHANNELS[i] for i in USED_FEATURES]
        self.out_chs = [cfg.ccm_channels * 2**k for k in range(len(in_chs))]
        for k, (ci, co) in enumerate(zip(in_chs, self.out_chs)):
            self.register_buffer(f"ccm{k}", _fixed_random_conv1x1(ci, co, gen))
        for k in range(len(in_chs) - 1):
            self.register_buffer(f"csm{k}", _fixed_random_conv1x1(self.out_chs[k + 1], self.out_chs[k], gen))
        for k in range(len(in_chs)):
            self.register_buffer(f"scale{k}", torch.ones([]))
        sizes = [cfg.input_resolution // 2 ** (k + 2) for k in range(len(in_chs))]
        self.heads = nn.ModuleList([DiscriminatorHead(c, s, cfg.head_channels_max, cfg.mbstd_group)
                                    for c, s in zip(self.out_chs, sizes)])

    def train(self, mode: bool = True) -> "ProjectedDiscriminator":
        super().train(mode)
        self.backbone.eval()  # BatchNorm statistics stay frozen
        return self

    def project(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features after CCM (and CSM): list of ``[N, ccm_channels * 2^k, S_k, S_k]``."""
        r = self.cfg.input_resolution
        if img.shape[-1] != r or img.shape[-2] != r:
            img = F.interpolate(img, size=(r, r), mode="bilinear", align_corners=False)
        feats = self.backbone.features(img)
        mixed = [F.conv2d(feats[i], getattr(self, f"ccm{k}")) for k, i in enumerate(USED_FEATURES)]
        if self.cfg.use_csm:
            for k in range(len(mixed) - 2, -1, -1):
                deeper = F.conv2d(mixed[k + 1], getattr(self, f"csm{k}"))
                mixed[k] = mixed[k] + F.interpolate(deeper, size=mixed[k].shape[-2:], mode="bilinear",
                                                    align_corners=False)
        return [m * getattr(self, f"scale{k}") for k, m in enumerate(mixed)]

    @torch.no_grad()
    def calibrate(self, real: torch.Tensor) -> list[float]:
        """Set the fixed per-stage scales to 1 / std of the mixed features of ``real`` ``[N, 3, R, R]``."""
        for k in range(len(self.heads)):
            getattr(self, f"scale{k}").fill_(1.0)
        feats = self.project(real)
        for k, f in enumerate(feats):
            getattr(self, f"scale{k}").fill_(1.0 / max(float(f.std()), 1e-8))
        return [float(getattr(self, f"scale{k}")) for k in range(len(feats))]

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, self.project(img))]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """State without the frozen backbone (heads and the fixed CCM/CSM projections)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(BACKBONE_PREFIX)}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(BACKBONE_PREFIX)]
        if missing or unexpected:
            raise KeyError(f"discriminator state does not match this configuration: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}; resume with the settings the run was started with")
