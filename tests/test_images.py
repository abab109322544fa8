"""Image files <-> [-1, 1] tensors, odd modes, EXIF orientation, labelled grids."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pti.images import (ImageReadError, open_rgb, pil_to_tensor, read_image, save_grid, tensor_to_pil,
                        to_uint8_array, write_image)

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def rgb() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut()).resize((96, 80))


def test_round_trip_png_is_exact(rgb, tmp_path):
    x = pil_to_tensor(rgb)
    assert x.shape == (1, 3, 80, 96) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    write_image(x, tmp_path / "a.png")
    y = read_image(tmp_path / "a.png")
    assert torch.equal(x, y)
    assert np.array_equal(np.asarray(tensor_to_pil(y)), np.asarray(rgb))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_values_map_to_range():
    img = Image.fromarray(np.array([[[0, 255, 128]]], dtype=np.uint8))
    x = pil_to_tensor(img)
    # float32 of 128 / 127.5 - 1: measured |diff| 5.9e-8 (its rounding) under every kernel setting
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    assert to_uint8_array(torch.tensor([[[-3.0]], [[3.0]], [[0.0]]])).tolist() == [[[0, 255, 128]]]


def test_read_with_resize(rgb, tmp_path):
    rgb.save(tmp_path / "a.jpg")
    assert read_image(tmp_path / "a.jpg", size=32).shape == (1, 3, 32, 32)
    assert read_image(tmp_path / "a.jpg", size=(20, 30)).shape == (1, 3, 20, 30)


def test_exif_orientation_is_applied(rgb, tmp_path):
    # pixels stored rotated, with the EXIF tag (6: rotate 90 CW to display) that undoes it
    stored = rgb.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rot.png", exif=exif.tobytes())
    out = open_rgb(tmp_path / "rot.png")
    assert out.size == rgb.size
    assert np.array_equal(np.asarray(out), np.asarray(rgb))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "PA", "1", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_odd_modes_become_rgb(rgb, mode, tmp_path):
    gray = np.asarray(rgb.convert("L"))
    if mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)  # full 16-bit range
        assert img.mode == "I;16"
    elif mode == "I":
        img = Image.fromarray(gray.astype(np.int32) * 257)
    elif mode == "F":
        img = Image.fromarray(gray.astype(np.float32) / 255)
    else:
        img = rgb.convert(mode)
    out = open_rgb(img)
    assert out.mode == "RGB" and out.size == rgb.size
    a = np.asarray(out).astype(int)
    if mode in ("L", "LA", "I;16", "I", "F"):
        assert np.abs(a[..., 0] - gray).max() <= 1 and np.array_equal(a[..., 0], a[..., 2])
    elif mode in ("RGBA", "YCbCr", "CMYK"):
        assert np.abs(a - np.asarray(rgb).astype(int)).mean() < 3
    if mode in ("RGBA", "I;16", "CMYK", "P"):  # also through a file
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        path = tmp_path / f"img.{fmt.lower()}"
        img.save(path, format=fmt)
        assert open_rgb(path).size == rgb.size


def test_transparency_is_composited_on_white():
    img = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert np.asarray(open_rgb(img)).min() == 255


def test_numpy_inputs(rgb):
    a = np.asarray(rgb)
    assert np.array_equal(np.asarray(open_rgb(a)), a)
    assert np.array_equal(np.asarray(open_rgb(a.astype(np.uint16) * 257)), a)
    assert np.array_equal(np.asarray(open_rgb(a.astype(np.float64) / 255)), a)
    with pytest.raises(ImageReadError, match="expected an"):
        open_rgb(np.zeros((2, 2, 2), np.uint8))


def test_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(bad)


def test_grid_layout_and_labels(rgb, tmp_path):
    x = pil_to_tensor(rgb)
    red = torch.full((1, 3, 40, 40), -1.0)
    red[:, 0] = 1
    rows = [torch.cat([x[..., :80, :80], x[..., :80, :80]]), [red, None]]
    grid = save_grid(rows, tmp_path / "g.png", row_labels=["input", "edited"], col_labels=["a", "b"],
                     cell_size=50, title="Figure")
    on_disk = Image.open(tmp_path / "g.png")
    assert on_disk.size == grid.size
    w, h = grid.size
    assert w > 2 * 50 and h > 2 * 50  # room for labels and title
    a = np.asarray(grid).astype(int)
    # the red cell (resized to 50x50) is in the bottom-left image slot; the slot beside it is blank
    assert (np.abs(a - [255, 0, 0]).sum(axis=2) < 5).sum() == 50 * 50
    # text was drawn: some dark pixels left of the first image column
    label_w = w - 2 * (50 + 4) - 4  # width of the row-label column (pad 4)
    assert (a[:, :label_w].sum(axis=2) < 200).any()
    with pytest.raises(ValueError, match="row labels"):
        save_grid(rows, tmp_path / "h.png", row_labels=["one"])
    # a title longer than the grid widens it instead of being cut (a one-column edit grid lost its end)
    long = "edits of the W inversion pivot on tuned.safetensors"
    one = save_grid([[red]], tmp_path / "t.png", row_labels=["W"], cell_size=40, title=long)
    dark_columns = np.nonzero((np.asarray(one).astype(int).sum(axis=2) < 200).any(axis=0))[0]
    assert one.size[0] > 3 * 40 and dark_columns.max() < one.size[0] - 2  # the title ends inside the image
