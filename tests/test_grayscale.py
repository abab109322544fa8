"""Grayscale generators (img_channels=1), as trained for X-rays and scans, work end to end.

Targets become gray (BT.601 luma), the perceptual networks and dlib see the gray channel repeated to
RGB, MSE/PSNR/MS-SSIM are computed on the one channel, and PNGs and figure grids are written gray.
The end-to-end checks use a tiny random 16 px gray StyleGAN2 saved in pti's .safetensors format,
the bundled Grace Hopper photo and the offline EfficientNet-Lite0 distance, on one CPU thread.

Tolerances (issue 14): every value measured below was the same with the default kernels,
ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41 and both together, up to the last digits of the PSNR
(noted there); the 8-bit bounds are quantisation bounds (half a level) plus float32 rounding, not spreads.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_generator
from pti.images import pil_to_tensor, read_image, save_grid, tensor_to_pil, to_channels, write_image
from pti.metrics import identity_similarity, ms_ssim, mse, perceptual_distance, psnr
from pti.core.perceptual import load_perceptual

PHOTO = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
#: one step of 8-bit quantisation in the library's [-1, 1] units
LEVEL = 2 / 255


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def rgb() -> torch.Tensor:
    return read_image(PHOTO, size=48)


def test_to_channels_is_pillows_luma_and_gray_repeats(rgb, tmp_path):
    gray = to_channels(rgb, 1)
    assert gray.shape == (1, 1, 48, 48)
    pillow = pil_to_tensor(tensor_to_pil(rgb).convert("L").convert("RGB"))[:, :1]
    # Pillow rounds its integer luma to 8 bits: at most one level apart (measured: max half a level, 0.0039, on
    # this photo)
    assert float((gray - pillow).abs().max()) <= LEVEL + 1e-6
    assert torch.equal(to_channels(gray, 3), gray.expand(-1, 3, -1, -1))
    assert to_channels(rgb, 3) is rgb
    assert torch.equal(read_image(PHOTO, size=48, channels=1), gray)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_channels(torch.zeros(1, 2, 4, 4), 1)


def test_gray_png_round_trip_and_grid(rgb, tmp_path):
    gray = to_channels(rgb, 1)
    write_image(gray[0], tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as img:
        assert img.mode == "L" and img.size == (48, 48)
    back = read_image(tmp_path / "g.png", channels=1)
    # measured: LEVEL / 2 + 1e-8 (the float32 conversion of [-1, 1] to 8 bits and back); the 1e-6 is that rounding
    assert float((back - gray).abs().max()) <= LEVEL / 2 + 1e-6  # rounding to the nearest 8-bit level
    grid = save_grid([gray, torch.cat([gray, gray])], tmp_path / "grid.png", row_labels=["a", "b"])
    cells = np.asarray(grid.crop((grid.width - 52, grid.height - 52, grid.width - 4, grid.height - 4))).astype(int)
    assert grid.mode == "RGB" and cells.std() > 10  # a real image, not blank
    assert np.array_equal(cells[..., 0], cells[..., 1]) and np.array_equal(cells[..., 1], cells[..., 2])


@pytest.fixture(scope="module")
def pair(rgb) -> tuple[torch.Tensor, torch.Tensor]:
    """A gray photo and a noisy copy, ``[1, 1, 48, 48]`` each."""
    gray = to_channels(rgb, 1)
    return gray, (gray + 0.2 * torch.randn(gray.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


def test_metrics_of_gray_equal_those_of_repeated_rgb(pair):
    gray, other = pair
    as_rgb = to_channels(gray, 3), to_channels(other, 3)
    # three equal channels: their mean is the one channel's value, up to float rounding (measured max 9.3e-10)
    for metric in (mse, psnr, ms_ssim):
        assert float((metric(gray, other) - metric(*as_rgb)).abs().max()) < 1e-5, metric.__name__
    assert float(mse(gray, other)) > 1e-3  # measured 0.0085: the comparison above is not of near-equal images
    # dlib sees the gray channel repeated to RGB
    assert torch.equal(identity_similarity(gray, other), identity_similarity(*as_rgb))
    assert float(identity_similarity(gray, gray)) > 0.99  # one image's descriptor with itself


@pytest.mark.parametrize("net", ["effnet-lite0", "random-alex"])  # the offline fallback; the lpips package
def test_perceptual_distance_of_gray_is_that_of_repeated_rgb(pair, net):
    gray, other = pair
    p = load_perceptual(net)
    assert torch.equal(perceptual_distance(gray, other, p), perceptual_distance(to_channels(gray, 3),
                                                                                to_channels(other, 3), p))
    assert float(perceptual_distance(gray, other, p)) > 0
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\] \(RGB\) or \[N, 1, H, W\] \(gray\)"):
        p(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))


@pytest.fixture(scope="module")
def gray_generator(tmp_path_factory) -> Path:
    from pti.stylegan2.checkpoints import save

    path = tmp_path_factory.mktemp("gen") / "gray.safetensors"
    save(make_tiny_generator(resolution=16, seed=1, img_channels=1), path)
    return path


def test_pti_info_run_and_edit_on_a_gray_generator(gray_generator, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))  # SeFa of the tiny generator: not in ~/.cache
    from pti.alignment import align_face
    from pti.cli import main

    assert main(["info", str(gray_generator)]) == 0
    assert "(1 channels)" in capsys.readouterr().out

    run = tmp_path / "run"
    argv = ["run", str(PHOTO), "--output", str(run), "--generator", str(gray_generator), "--device", "cpu",
            "--quiet", "--inv-steps", "2", "--tune-steps", "3", "--inv-w-avg-samples", "200",
            "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net", "effnet-lite0", "--locality"]
    assert main(argv) == 0
    out = run / PHOTO.stem
    for name in ("aligned", "inversion", "reconstruction"):
        with Image.open(out / f"{name}.png") as img:
            assert (img.mode, img.size) == ("L", (16, 16)), name
    # the target is the BT.601 luma of pti's own RGB alignment (8-bit rounding apart)
    expected = to_channels(pil_to_tensor(align_face(PHOTO, output_size=16)), 1)
    aligned = read_image(out / "aligned.png", channels=1)
    assert float((aligned - expected).abs().max()) <= LEVEL / 2 + 1e-6  # measured 0.0039 (0.495 of a level)

    m = json.loads((out / "metrics.json").read_text())
    for part in ("inversion", "tuning"):
        assert 0 < m[part]["mse"] < 1 and math.isfinite(m[part]["perceptual"]) and m[part]["perceptual"] >= 0
        # PSNR = 10 log10(1 / MSE), computed in float32 by pti.metrics (measured: at most 7.8e-8 relative, 3.3e-7 to
        # 7.2e-7 absolute on PSNRs of ~9 dB, depending on the kernel setting)
        assert m[part]["psnr"] == pytest.approx(10 * math.log10(1 / m[part]["mse"]), rel=1e-6)
    # the recorded MSEs are those of the gray images written (pti.metrics clamps to [-1, 1] as the PNG does):
    # recomputed from the 8-bit PNGs they agree within quantisation. Each PNG is within half a level of its
    # image, so a pixel difference moves by at most q = 1/255 on [0, 1]: |d mse| <= 2 sqrt(mse) q + q^2
    # (measured 5.9e-5 and 9.8e-5 against bounds of ~2.8e-3)
    q = 1 / 255
    for part, png in (("inversion", "inversion.png"), ("tuning", "reconstruction.png")):
        from_png = float(mse(read_image(out / png, channels=1), aligned)[0])
        assert abs(from_png - m[part]["mse"]) <= 2 * math.sqrt(m[part]["mse"]) * q + q * q, part
    # tuning lowers the reconstruction error (measured on this generator: 0.132 -> 0.120 after 3 steps, the same
    # under every kernel setting; a margin ~1e4 times float32 rounding)
    assert m["tuning"]["mse"] < m["inversion"]["mse"]

    edit = tmp_path / "edit.png"
    assert main(["edit", "--generator", str(gray_generator), "--pivot", str(out / "pivot.pt"), "--direction",
                 "sefa:0", "--strengths", "-3,0,3", "--out", str(edit), "--device", "cpu"]) == 0
    with Image.open(edit) as img:
        grid = np.asarray(img.convert("RGB")).astype(int)
    assert np.array_equal(grid[..., 0], grid[..., 1]) and np.array_equal(grid[..., 1], grid[..., 2])
    assert grid.std() > 10


def test_demo_figure_of_a_gray_conditional_generator(tmp_path, capsys):
    """`pti demo` with a gray generator that is also conditional: --class-index, gray rows, an edit from a file."""
    from pti.cli import main
    from pti.stylegan2.checkpoints import save

    G = make_tiny_generator(resolution=16, seed=2, img_channels=1, c_dim=3)
    save(G, tmp_path / "g.safetensors")
    torch.save(torch.randn(1, G.w_dim, generator=torch.Generator().manual_seed(3)), tmp_path / "dir.pt")
    (tmp_path / "photos").mkdir()
    Image.open(PHOTO).save(tmp_path / "photos" / "hopper.png")
    argv = ["demo", "--generator", str(tmp_path / "g.safetensors"), "--images", str(tmp_path / "photos"),
            "--device", "cpu", "--out", str(tmp_path / "fig"), "--edits", str(tmp_path / "dir.pt"),
            "--strengths=-1,1", "--no-identity", "--quiet", "--inv-steps", "1", "--tune-steps", "1",
            "--inv-w-avg-samples", "100", "--inv-perceptual-net", "effnet-lite0",
            "--tune-perceptual-net", "effnet-lite0"]
    assert main(argv) == 2  # the class is required
    assert "--class-index" in capsys.readouterr().err
    assert main(argv + ["--class-index", "1"]) == 0
    table = (tmp_path / "fig" / "demo_metrics.md").read_text()
    assert "| hopper | PTI |" in table
    with Image.open(tmp_path / "fig" / "demo_hopper.png") as img:
        figure = np.asarray(img.convert("RGB")).astype(int)
    assert np.array_equal(figure[..., 0], figure[..., 1]) and np.array_equal(figure[..., 1], figure[..., 2])
    assert figure.std() > 10  # images, not a blank canvas
