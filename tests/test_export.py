"""`pti export RUN/PHOTO --format nvidia` (issue 29 item 15; PTI #24/#26, DragGAN #56/#75: "convert the tuned
model to pickle"): the tuned generator as a weights-only state dict with NVIDIA's constructor arguments, and the
pivot as NVIDIA's projected_w.npz. A tiny random StyleGAN2 (16 px), 2 inversion and 2 tuning steps, one thread,
as in tests/test_run_edits.py. That NVIDIA's own Generator loads the file strict=True is checked by
tools/check_export_nvidia.py (needs a stylegan2-ada-pytorch source tree; not part of this suite)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator, write_generated_photos
from pti.cli import main
from pti.commands.export import GENERATOR_FILE
from test_run_edits import STEP_ARGS  # the same tiny run: 2 inversion and 2 tuning steps, EfficientNet-Lite0

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "pti-cache"))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """RUN/ of `pti run --save-generator` on one 16x16 photo rendered by a tiny generator (read-only)."""
    from pti.stylegan2.checkpoints import save

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    G = make_tiny_generator(resolution=16, seed=2)
    write_generated_photos(G, root / "photos", ["face"], seed=3)
    save(G, root / "g.safetensors")
    assert main(["run", str(root / "photos"), "--output", str(root / "run"), "--generator",
                 str(root / "g.safetensors"), "--save-generator", *STEP_ARGS]) == 0
    return root / "run"


def test_export_writes_weights_only_state_dict_and_projected_w(run_folder, tmp_path, capsys):
    from pti.core.pivot import Pivot
    from pti.stylegan2 import Generator
    from pti.stylegan2.checkpoints import load

    photo = run_folder / "face"
    assert main(["export", str(photo), "--format", "nvidia", "--output", str(tmp_path / "out")]) == 0
    assert "weights_only=True" in capsys.readouterr().out
    tuned = load(photo / "tuned.safetensors")
    ckpt = torch.load(tmp_path / "out" / "tuned_nvidia.pt", weights_only=True)
    assert ckpt["format"] == "pti-nvidia-state-dict-v1" and ckpt["class"] == "training.networks.Generator"
    assert list(ckpt["init_kwargs"]) == ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
                                         "mapping_kwargs", "synthesis_kwargs"]
    assert ckpt["init_kwargs"] == tuned.init_kwargs and ckpt["noise_const"] == "generator"
    ours = tuned.state_dict()
    assert set(ckpt["state_dict"]) == set(ours)
    for key, value in ckpt["state_dict"].items():
        assert value.dtype == torch.float32 and value.shape == ours[key].shape, key
        assert torch.equal(value, ours[key].float()), key
    twin = Generator(**ckpt["init_kwargs"]).eval()
    twin.load_state_dict(ckpt["state_dict"], strict=True)

    with np.load(tmp_path / "out" / "projected_w.npz", allow_pickle=False) as data:
        assert data.files == ["w"]
        w = data["w"]
    pivot = Pivot.load(photo / "pivot.pt")
    assert w.dtype == np.float32 and w.shape == (1, tuned.num_ws, tuned.w_dim) == tuple(pivot.w.shape)
    assert np.array_equal(w, pivot.w.numpy())
    with torch.no_grad():  # what NVIDIA's generate.py --projected-w renders, here with our twin
        image = twin.synthesis(torch.from_numpy(w), noise_mode="const")
        expected = tuned.synthesis(pivot.w, noise_mode="const")
    assert torch.equal(image, expected)


def test_export_default_output_and_pivot_noise_baked_in(run_folder, tmp_path):
    import json

    from pti.core.pivot import Pivot

    photo = tmp_path / "face"
    shutil.copytree(run_folder / "face", photo)
    assert main(["export", str(photo)]) == 0
    assert (photo / "export" / "tuned_nvidia.pt").is_file() and (photo / "export" / "projected_w.npz").is_file()

    pivot = Pivot(w=Pivot.load(photo / "pivot.pt").w, noise=[torch.randn(1, 1, r, r) for r in (4, 8, 8, 16, 16)])
    pivot.save(photo / "pivot.pt")
    metrics = json.loads((photo / "metrics.json").read_text())
    metrics["config"]["tuning"]["use_pivot_noise"] = True
    (photo / "metrics.json").write_text(json.dumps(metrics))
    assert main(["export", str(photo), "--output", str(tmp_path / "noisy")]) == 0
    ckpt = torch.load(tmp_path / "noisy" / "tuned_nvidia.pt", weights_only=True)
    assert ckpt["noise_const"] == "pivot"
    consts = [k for k in ckpt["state_dict"] if k.endswith("noise_const")]
    assert len(consts) == 5
    for key, n in zip(consts, pivot.noise):
        assert torch.equal(ckpt["state_dict"][key], n[0, 0]), key
    from pti.stylegan2 import load  # pti reads it back with the pivot's noise in its noise_const buffers

    G = load(tmp_path / "noisy" / "tuned_nvidia.pt")
    assert all(torch.equal(G.state_dict()[key], n[0, 0]) for key, n in zip(consts, pivot.noise))


def test_export_refuses_a_run_without_tuned_weights(run_folder, tmp_path, capsys):
    photo = tmp_path / "face"
    shutil.copytree(run_folder / "face", photo)
    (photo / "tuned.safetensors").unlink()
    capsys.readouterr()
    assert main(["export", str(photo), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"pti export: {photo}: no tuned.safetensors" in err and "--save-generator" in err
    assert "pti run INPUT --output" in err  # no summary.json beside the photo folder: a placeholder
    (tmp_path / "summary.json").write_text('{"input": "my photos"}')
    assert main(["export", str(photo), "--output", str(tmp_path / "out")]) == 2
    assert "pti run 'my photos' --output" in capsys.readouterr().err  # the run's own input
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    # review of issue 29: the hint said `--redo --save-generator`; --save-generator alone redoes such photos
    assert main(["export", str(photo)]) == 2
    assert "--redo" not in capsys.readouterr().err


def test_export_output_that_is_a_file_is_one_line(run_folder, tmp_path, capsys):
    """Review of issue 29 item 9: `pti export RUN/PHOTO --output afile` gave a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    capsys.readouterr()
    for output in (afile, afile / "sub"):
        assert main(["export", str(run_folder / "face"), "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(afile) in err and "not a folder" in err, err
    assert afile.read_text() == "x"


def test_export_finds_the_generator_of_a_multi_id_run(tmp_path, capsys):
    """Review of issue 29 item 3: `pti export RUN/PHOTO` of a `pti run --multi-id` run (one RUN/tuned.safetensors,
    RUN/multi_id.json) said "this run did not keep the tuned weights"."""
    from pti.stylegan2.checkpoints import load, save

    G = make_tiny_generator(resolution=16, seed=2)
    write_generated_photos(G, tmp_path / "photos", ["p0", "p1"], seed=3)
    save(G, tmp_path / "g.safetensors")
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "photos"), "--output", str(run), "--generator", str(tmp_path / "g.safetensors"),
                 "--multi-id", *STEP_ARGS]) == 0
    assert (run / "tuned.safetensors").is_file() and not (run / "p0" / "tuned.safetensors").exists()
    capsys.readouterr()
    assert main(["export", str(run / "p0"), "--output", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    ckpt = torch.load(tmp_path / "out" / GENERATOR_FILE, weights_only=True)
    tuned = load(run / "tuned.safetensors")
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in tuned.state_dict().items() if "noise_const" not in k)
    # a photo the run's generator was not tuned on: no weights (not the other photos' generator)
    shutil.copytree(run / "p0", run / "stranger")
    capsys.readouterr()
    assert main(["export", str(run / "stranger")]) == 2
    assert "no tuned.safetensors" in capsys.readouterr().err


def test_pti_reads_its_own_export_back(run_folder, tmp_path, capsys):
    """New-user test: `pti info RUN/PHOTO/export/tuned_nvidia.pt` exited 2 ("no 'g_ema' state dict in the file"),
    and pti.stylegan2.load (so `pti edit --generator`) refused the file `pti export` had written."""
    from pti.stylegan2 import CheckpointError, load, load_with_format

    photo, exported = run_folder / "face", tmp_path / "out" / GENERATOR_FILE
    assert main(["export", str(photo), "--output", str(tmp_path / "out")]) == 0
    tuned = load(photo / "tuned.safetensors")
    G, fmt = load_with_format(exported)
    assert fmt == "pti-nvidia-state-dict-v1" and G.init_kwargs == tuned.init_kwargs and not G.training
    ours = tuned.state_dict()
    assert set(G.state_dict()) == set(ours) and all(torch.equal(v, ours[k]) for k, v in G.state_dict().items())
    ws = torch.randn(3, tuned.num_ws, tuned.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # bit-identical: same weights, same code, same thread count
        assert torch.equal(G.synthesis(ws, noise_mode="const"), tuned.synthesis(ws, noise_mode="const"))

    capsys.readouterr()
    assert main(["info", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "format:         pti-nvidia-state-dict-v1" in out and f"num_ws:         {tuned.num_ws}" in out

    ckpt = torch.load(exported, weights_only=True)
    for key, value, wanted in (("format", "pti-nvidia-state-dict-v2", "'pti-nvidia-state-dict-v2' (written by pti"),
                               ("class", "training.networks.Other", "needs class 'training.networks.Generator'"),
                               ("init_kwargs", {**ckpt["init_kwargs"], "img_resolution": 32}, "missing:")):
        other = tmp_path / f"{key}.pt"
        torch.save({**ckpt, key: value}, other)
        with pytest.raises(CheckpointError) as raised:
            load(other)
        message = str(raised.value)
        assert message.startswith(f"{other}: ") and wanted in message and "\n" not in message, message
        assert main(["info", str(other)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(other) in err and "Traceback" not in err, err
