"""Pivots from other tools (issue 29 item 11, StyleCLIP #11): `pti edit --pivot w.pt` with a bare W+ code
said only "not a pti pivot file". :func:`pti.core.pivot.load_pivot` reads bare ``[num_ws, w_dim]`` /
``[1, num_ws, w_dim]`` tensors (.pt, .npy) and NVIDIA's ``projected_w.npz``, and refuses other shapes
naming the shape and what the generator needs. Tiny random generator (16 px: num_ws 6, w_dim 32)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator
from pti.cli import main
from pti.core.pivot import Pivot, load_pivot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return make_tiny_generator(resolution=16, seed=3)


@pytest.fixture(scope="module")
def code(G) -> torch.Tensor:
    """A W+ code of G: mapped z's, different per style input (a [1, 6, 32] float32 tensor)."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(G.num_ws, G.z_dim, generator=torch.Generator().manual_seed(5)), None)
    return ws[:, 0].unsqueeze(0).contiguous()


def write_code(kind: str, code: torch.Tensor, folder: Path) -> Path:
    if kind == "pt_2d":
        torch.save(code[0].clone(), folder / "w.pt")
        return folder / "w.pt"
    if kind == "pt_3d":
        torch.save(code.clone(), folder / "w3.pt")
        return folder / "w3.pt"
    if kind == "npy":
        np.save(folder / "w.npy", code[0].numpy().astype(np.float64))
        return folder / "w.npy"
    np.savez(folder / "projected_w.npz", w=code.numpy())  # what NVIDIA's projector.py writes
    return folder / "projected_w.npz"


@pytest.mark.parametrize("kind", ["pt_2d", "pt_3d", "npy", "npz"])
def test_codes_from_elsewhere_become_pivots(G, code, tmp_path, kind):
    assert G.num_ws == 6 and G.w_dim == 32
    pivot = load_pivot(write_code(kind, code, tmp_path), G)
    assert pivot.w.shape == (1, 6, 32) and pivot.w.dtype == torch.float32
    assert torch.equal(pivot.w, code)  # exact: float64 .npy values were float32 values to begin with
    assert (pivot.origin, pivot.noise, pivot.generator, pivot.space) == ("file", [], "", "w+")
    assert pivot.noise_maps() is None
    pivot.check_fits(G)


def test_a_w_code_repeated_over_the_styles_is_space_w(G, code, tmp_path):
    torch.save(code[0, :1].expand(6, 32).clone(), tmp_path / "w.pt")
    assert load_pivot(tmp_path / "w.pt", G).space == "w"


def test_pti_pivot_files_still_load(G, code, tmp_path):
    Pivot(w=code, space="w+", steps=3, generator="abc").save(tmp_path / "pivot.pt")
    pivot = load_pivot(tmp_path / "pivot.pt", G)
    assert torch.equal(pivot.w, code) and (pivot.origin, pivot.steps, pivot.generator) == ("projector", 3, "abc")


@pytest.mark.parametrize("shape", [[32], [1, 32], [7, 32], [6, 33], [2, 6, 32], [1, 1, 6, 32], [32, 6]])
def test_other_shapes_are_refused_naming_them(G, tmp_path, shape):
    torch.save(torch.zeros(shape), tmp_path / "w.pt")
    with pytest.raises(ValueError) as err:
        load_pivot(tmp_path / "w.pt", G)
    assert str(err.value) == (f"{tmp_path / 'w.pt'}: a code of shape {shape}, but the generator needs [6, 32] or "
                              "[1, 6, 32] (num_ws, w_dim)")


def test_foreign_content_is_refused_without_running_code(G, tmp_path):
    np.savez(tmp_path / "other.npz", latent=np.zeros((1, 6, 32), np.float32))
    with pytest.raises(ValueError, match=r"other\.npz: an \.npz without a 'w' array \(found \['latent'\]\)"):
        load_pivot(tmp_path / "other.npz", G)
    np.save(tmp_path / "obj.npy", np.array([{"w": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy: not a readable pivot .*not pickled objects"):
        load_pivot(tmp_path / "obj.npy", G)
    torch.save({"latents": torch.zeros(6, 32)}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match=r"d\.pt: holds a dict with keys \['latents'\], not a pivot"):
        load_pivot(tmp_path / "d.pt", G)
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cut\.pt: not a readable pivot file"):
        load_pivot(tmp_path / "cut.pt", G)


def test_pti_edit_takes_projected_w_npz_and_names_a_wrong_shape(G, code, tmp_path, capsys):
    from pti.stylegan2.checkpoints import save

    save(G, tmp_path / "g.safetensors")
    npz = write_code("npz", code, tmp_path)
    out = tmp_path / "grid.png"
    assert main(["edit", "--generator", str(tmp_path / "g.safetensors"), "--pivot", str(npz), "--direction",
                 "sefa:0", "--strengths=-1,0,1", "--out", str(out), "--device", "cpu"]) == 0
    assert out.is_file()
    torch.save(torch.zeros(1, 512), tmp_path / "bad.pt")
    capsys.readouterr()
    assert main(["edit", "--generator", str(tmp_path / "g.safetensors"), "--pivot", str(tmp_path / "bad.pt"),
                 "--direction", "sefa:0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "a code of shape [1, 512], but the generator needs [6, 32] or [1, 6, 32]" in err and "Traceback" not in err
