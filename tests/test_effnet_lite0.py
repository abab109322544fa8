"""EfficientNet-Lite0 with the shipped ImageNet weights: loads strictly and classifies real photos."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pti.effnet_lite0 import FEATURE_CHANNELS, FEATURE_STRIDES, load_efficientnet_lite0

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def model():
    return load_efficientnet_lite0(pretrained=True)


def _as_input(array) -> torch.Tensor:
    x = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 127.5 - 1
    return F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("photo, classes", [
    ("chelsea", (281, 282, 285)),  # tabby, tiger cat, Egyptian cat
    ("coffee", (967, 968)),        # espresso, cup
])
def test_pretrained_weights_classify_real_photos(model, photo, classes):
    with torch.no_grad():
        probs = model(_as_input(getattr(skimage_data, photo)())).softmax(dim=1)[0]
    assert probs.argmax().item() in classes
    assert probs[list(classes)].sum().item() > 0.8


def test_random_weights_do_not_classify(model):
    random_model = load_efficientnet_lite0(pretrained=False)
    x = _as_input(skimage_data.chelsea())
    with torch.no_grad():
        assert not torch.allclose(random_model(x), model(x))


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (16, 16)])
def test_feature_shapes(model, size):
    x = torch.rand(2, 3, *size) * 2 - 1
    feats = model.features(x)
    assert len(feats) == len(FEATURE_CHANNELS)
    for f, c, s in zip(feats, FEATURE_CHANNELS, FEATURE_STRIDES):
        assert f.shape == (2, c, math.ceil(size[0] / s), math.ceil(size[1] / s))
