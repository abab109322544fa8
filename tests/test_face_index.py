"""``--face-index`` for ``pti run``/``invert``/``demo`` as for ``pti align`` (issue 14, defect 5).

The photo: the two bundled real photos side by side (astronaut | Grace Hopper), so dlib finds two
faces. A tiny random generator (16 px) and one optimisation step keep it fast; only the alignment matters.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_generator
from pti.alignment import align_face
from pti.cli import main
from pti.images import open_rgb

skimage_data = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")

STEPS = ["--device", "cpu", "--quiet", "--inv-steps", "1", "--inv-w-avg-samples", "100",
         "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net", "effnet-lite0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """A folder with one photo of two people, and a tiny generator checkpoint."""
    from pti.stylegan2.checkpoints import save

    folder = tmp_path_factory.mktemp("two_faces")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = open_rgb(Image.open(f))
    grace = grace.resize((round(grace.width * 512 / grace.height), 512))
    photo = Image.new("RGB", (512 + grace.width, 512))
    photo.paste(Image.fromarray(skimage_data.astronaut()), (0, 0))
    photo.paste(grace, (512, 0))
    (folder / "photos").mkdir()
    photo.save(folder / "photos" / "pair.png")
    save(make_tiny_generator(resolution=16, seed=0), folder / "g.safetensors")
    return folder


def _aligned(run_dir) -> np.ndarray:
    return np.asarray(Image.open(run_dir / "pair" / "aligned.png").convert("RGB"), dtype=np.int16)


def test_run_and_invert_align_the_chosen_face(two_faces, tmp_path):
    photos, generator = two_faces / "photos", str(two_faces / "g.safetensors")
    crops = []
    for index, command in ((0, "run"), (1, "invert")):  # run and invert share the option
        run = tmp_path / f"face{index}"
        argv = [command, str(photos), "--output", str(run), "--generator", generator, *STEPS,
                "--face-index", str(index)] + (["--tune-steps", "1"] if command == "run" else [])
        assert main(argv) == 0
        crops.append(_aligned(run))
        expected = np.asarray(align_face(photos / "pair.png", 16, face_index=index), dtype=np.int16)
        # the aligned crop goes through a [-1, 1] float tensor and back to 8 bits: at most 1 level of rounding
        assert np.abs(crops[-1] - expected).max() <= 1, index
    # two different people: the crops differ by far more than rounding (measured mean |diff|: 60.7 levels)
    assert np.abs(crops[0] - crops[1]).mean() > 10


def test_out_of_range_face_index_fails_that_image_with_a_clear_error(two_faces, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["run", str(two_faces / "photos"), "--output", str(run), "--generator", str(two_faces / "g.safetensors"),
            *STEPS, "--tune-steps", "1", "--face-index", "5"]
    assert main(argv) == 1
    # dlib finds the two people and, with a low score, a third "face" on the astronaut's suit
    assert re.search(r"face index 5 requested but [23] face\(s\) detected", capsys.readouterr().err)
    record = json.loads((run / ".failures" / "pair.json").read_text())
    assert "NoFaceFound" in record["error"] and "pair.png" in record["error"]
    assert not (run / "pair").exists()


@pytest.mark.parametrize("command", ["run", "invert", "tune", "demo", "align"])
def test_negative_face_index_is_a_usage_error(command, capsys):
    from pti.cli import build_parser

    args = ["src", "dst"] if command == "align" else []
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, *args, "--face-index", "-1"])
    assert exc.value.code == 2 and "face index must be >= 0" in capsys.readouterr().err
    assert build_parser().parse_args([command, *args, "--face-index", "1"]).face_index == 1


def test_demo_aligns_the_chosen_face(two_faces, tmp_path):
    """`pti demo --images PAIR --face-index I`: the figure's "original" cell shows face I.

    With one inversion step (learning rate 0 at step 0 of the warm-up) the W/W+ cells do not depend on the
    target and one tuning step barely changes PTI's, so the two figures differ only in the original cell:
    that cell, shrunk back to 16 px, must be nearer to the crop of the face asked for than to the other.
    """
    photo = two_faces / "photos" / "pair.png"
    expected = [np.asarray(align_face(photo, 16, face_index=i), dtype=np.float64) for i in (0, 1)]
    figures = []
    for index in (0, 1):
        out = tmp_path / f"demo{index}"
        argv = ["demo", "--images", str(two_faces / "photos"), "--generator", str(two_faces / "g.safetensors"),
                "--out", str(out), "--no-identity", "--edits", "sefa:0", "--strengths", "0", *STEPS,
                "--tune-steps", "1", "--face-index", str(index)]
        assert main(argv) == 0
        figures.append(np.asarray(Image.open(out / "demo_pair.png").convert("RGB"), dtype=np.int16))
    a, b = figures
    assert a.shape == b.shape
    ys, xs = np.nonzero(np.abs(a - b).max(axis=2) > 30)
    top, left, side = ys.min(), xs.min(), 128  # the demo's cells are max(128, resolution) px
    assert ys.max() - top < side and xs.max() - left < side  # one cell differs, not more
    for index, figure in enumerate(figures):
        cell = Image.fromarray(figure[top:top + side, left:left + side].astype(np.uint8)).resize((16, 16), Image.BOX)
        cell = np.asarray(cell, dtype=np.float64)
        distances = [np.abs(cell - e).mean() for e in expected]
        assert distances[index] < distances[1 - index], (index, distances)
