"""Metrics: known values on synthetic cases, agreement with pytorch-msssim / scikit-image, identity on real photos."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pti import metrics
from pti.alignment import align_face
from pti.images import open_rgb, pil_to_tensor
from pti.perceptual import load_perceptual

skimage_data = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return pil_to_tensor(Image.fromarray(skimage_data.astronaut()))  # [1, 3, 512, 512]


def _noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_mse_and_psnr_known_values():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.zeros(2, 3, 8, 8)
    y[0] += 0.1   # 0.05 on the [0, 1] scale
    y[1, 0] = 1.0  # one channel off by 0.5 on [0, 1]: MSE_[0,1] = 0.25 / 3
    assert metrics.mse(x, y).tolist() == pytest.approx([0.0025, 0.25 / 3], rel=1e-5)  # on [0, 1]
    assert metrics.psnr(x, y).tolist() == pytest.approx([10 * math.log10(1 / 0.0025),
                                                         10 * math.log10(3 / 0.25)], rel=1e-5)
    assert metrics.psnr(x, y)[0].item() == pytest.approx(26.0206, abs=1e-3)
    assert math.isinf(metrics.psnr(x, x)[0].item())


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="equal shape"):
        metrics.mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


@pytest.mark.parametrize("size, scales", [(512, 5), (161, 5), (160, 4), (100, 4), (64, 3), (40, 2), (16, 1), (8, 1)])
def test_ms_ssim_scales(size, scales):
    assert metrics.ms_ssim_scales(size, size + 7) == scales


@pytest.mark.parametrize("size", [192, 64, 16])
def test_ms_ssim_constant_images_closed_form(size):
    # constant images: every contrast-structure term is 1, so MS-SSIM = luminance ** (last weight)
    x = torch.full((1, 3, size, size), 0.0)   # 0.5 on [0, 1]
    y = torch.full((1, 3, size, size), 0.2)   # 0.6 on [0, 1]
    c1 = 0.01 ** 2
    luminance = (2 * 0.5 * 0.6 + c1) / (0.5 ** 2 + 0.6 ** 2 + c1)
    k = metrics.ms_ssim_scales(size, size)
    w = metrics.MS_SSIM_WEIGHTS
    exponent = w[k - 1] if k == len(w) else w[k - 1] / sum(w[:k])  # the package does not renormalise
    tol = 1e-4 if k == len(w) else 1e-6  # 5 scales: the package in float32 (rounding on flat images)
    assert metrics.ms_ssim(x, y).item() == pytest.approx(luminance ** exponent, abs=tol)
    assert metrics.ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("size", [(192, 192), (171, 230)])
def test_reduced_ms_ssim_equals_package_at_five_scales(photo, size):
    from pytorch_msssim import ms_ssim as package_ms_ssim

    x = F.interpolate(photo, size=size, mode="area")
    y = _noisy(x, 0.2)
    x01, y01 = (x.double() + 1) / 2, (y.double() + 1) / 2
    ours = metrics._ms_ssim_reduced(x01, y01, scales=5)
    theirs = package_ms_ssim(x01, y01, data_range=1.0, size_average=False)
    assert ours.item() == pytest.approx(theirs.item(), abs=2e-5)  # weights renormalised (sum 1.0001)
    assert metrics.ms_ssim(x, y).item() == pytest.approx(theirs.item(), abs=1e-4)  # float32 there


def test_single_scale_equals_scikit_image_ssim(photo):
    from skimage.metrics import structural_similarity

    x = F.interpolate(photo, size=(16, 16), mode="area")
    y = _noisy(x, 0.1)
    expected = structural_similarity(((x[0] + 1) / 2).permute(1, 2, 0).numpy(),
                                     ((y[0] + 1) / 2).permute(1, 2, 0).numpy(), channel_axis=2,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert metrics.ms_ssim(x, y).item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("size", [256, 64, 8])
def test_ms_ssim_falls_with_noise(photo, size):
    x = F.interpolate(photo, size=(size, size), mode="area").repeat(4, 1, 1, 1)
    y = torch.cat([_noisy(x[i:i + 1], s) for i, s in enumerate((0.0, 0.05, 0.15, 0.4))])
    values = metrics.ms_ssim(x, y)
    assert values.shape == (4,)
    assert values[0].item() == pytest.approx(1.0, abs=1e-5)
    assert all(a > b for a, b in zip(values.tolist(), values[1:].tolist())), values


@pytest.fixture(scope="module")
def aligned_pair() -> tuple[torch.Tensor, torch.Tensor]:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = open_rgb(Image.open(f))
    astronaut = Image.fromarray(skimage_data.astronaut())
    return pil_to_tensor(align_face(astronaut, 256)), pil_to_tensor(align_face(grace, 256))


def test_identity_similarity_same_person_vs_different(aligned_pair):
    a, b = aligned_pair
    same = metrics.identity_similarity(torch.cat([a, b]), torch.cat([_noisy(a, 0.05), _noisy(b, 0.05, seed=1)]))
    different = metrics.identity_similarity(a, b)
    assert same.shape == (2,) and different.shape == (1,)
    assert same.min().item() > 0.97
    assert different.item() < 0.93
    assert different.item() < same.min().item() - 0.05


def test_identity_similarity_on_small_generator_sized_images(aligned_pair):
    a, b = (F.interpolate(t, size=(64, 64), mode="area") for t in aligned_pair)
    a_blurred = F.interpolate(F.interpolate(a, size=(32, 32), mode="area"), size=(64, 64), mode="bilinear")
    same = metrics.identity_similarity(a, a_blurred).item()
    different = metrics.identity_similarity(a, b).item()
    assert same > 0.95 and different < same - 0.05


def test_identity_without_a_face(photo):
    coffee = pil_to_tensor(Image.fromarray(skimage_data.coffee()).resize((64, 64)))
    assert math.isnan(metrics.identity_similarity(coffee, coffee, on_no_face="nan").item())
    assert metrics.identity_similarity(coffee, coffee).item() == pytest.approx(1.0, abs=1e-6)  # aligned-box
    with pytest.raises(ValueError, match="on_no_face"):
        metrics.identity_similarity(coffee, coffee, on_no_face="skip")


def test_perceptual_and_reconstruction_metrics_are_named(photo):
    x = F.interpolate(photo, size=(64, 64), mode="area")
    y = _noisy(x, 0.1)
    p = load_perceptual("random-alex")
    d = metrics.perceptual_distance(torch.cat([x, x]), torch.cat([x, y]), p)
    assert d.shape == (2,) and d[0].item() == pytest.approx(0.0, abs=1e-7) and d[1].item() > 0
    report = metrics.reconstruction_metrics(x, y, perceptual=p)
    assert report["perceptual_name"] == p.name and report["ms_ssim_scales"] == 3
    assert set(report) == {"mse", "psnr_db", "ms_ssim", "ms_ssim_scales", "perceptual", "perceptual_name",
                           "identity_similarity", "identity_model"}
    assert report["psnr_db"][0] == pytest.approx(metrics.psnr(x, y).item())
    json.dumps(report)  # JSON-ready
    assert np.isfinite(report["identity_similarity"][0])
