"""ResNet-IR-SE backbone of e4e: input layer and a body of bottleneck IR-SE units.

"IR" is the improved residual unit of ArcFace (Deng et al. 2019, Fig. 7c: BN, 3x3 conv,
PReLU, 3x3 conv with the stride, BN); "SE" adds squeeze-excitation (Hu et al. 2018). e4e
starts from the 50-layer variant (pSp / e4e use the InsightFace IR-SE-50 face recogniser).
Module and parameter names follow the official checkpoints (``input_layer.{0,1,2}``,
``body.{i}.shortcut_layer.{0,1}``, ``body.{i}.res_layer.{0..5}``, ``res_layer.5.fc1|fc2``),
so their state dicts load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from pti.encoders.config import E4EConfig


class SqueezeExcite(nn.Module):
    """Channel gate ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``, 1x1 convs without bias.

    Shapes: ``[N, C, H, W] -> [N, C, H, W]``; ``fc1``: C -> C / reduction.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """One IR-SE unit: ``res_layer(x) + shortcut_layer(x)``.

    ``res_layer``: BatchNorm(in), 3x3 conv in->out (stride 1), PReLU(out), 3x3 conv out->out
    (``stride``), BatchNorm(out), squeeze-excitation. ``shortcut_layer``: when the width is
    unchanged, a subsampling by ``stride`` (a 1x1 max-pool: no weights); otherwise a strided
    1x1 conv and BatchNorm. Shapes: ``[N, in, H, W] -> [N, out, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, se_reduction: int) -> None:
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcite(out_channels, se_reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def make_input_layer(config: E4EConfig) -> nn.Sequential:
    """3x3 conv (3 -> stem, no bias), BatchNorm, PReLU: ``[N, 3, S, S] -> [N, stem, S, S]``."""
    width = config.stem_channels
    return nn.Sequential(nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False),
                         nn.BatchNorm2d(width), nn.PReLU(width))


def make_body(config: E4EConfig) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """The units of all stages as one ``Sequential`` (official indices ``body.0 ..``).

    Returns the body and the indices of the last unit of stages 2, 3 and 4, whose outputs
    are the fine (``input/4``), middle (``input/8``) and coarse (``input/16``) features
    (6, 20, 23 for IR-SE-50).
    """
    units: list[nn.Module] = []
    ends: list[int] = []
    width = config.stem_channels
    for channels, count in zip(config.stage_channels, config.stage_units):
        for i in range(count):
            units.append(BottleneckIRSE(width, channels, stride=2 if i == 0 else 1,
                                        se_reduction=config.se_reduction))
            width = channels
        ends.append(len(units) - 1)
    return nn.Sequential(*units), (ends[1], ends[2], ends[3])
