"""Direction files with one row per style input (issue 29 item 4) and combined directions (item 16).

Item 4 (STIT #18): an InterFaceGAN-style direction saved as ``[num_ws, w_dim]`` was refused ("must have
shape [1, w_dim] or [w_dim]"), even with identical rows. Now identical rows are a W direction, differing rows a
W+ direction applied per style input, and any other row count is refused naming both counts, for .pt, .npy
and .npz alike. Item 16 (e4e #15, STIT #26: "age + pose + 0.2 smile"): several directions in one edit, each in
its own strength unit. A tiny random StyleGAN2 (16 px: w_dim 32, num_ws 6) on one CPU thread.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator
from pti.editing import Direction, DirectionMismatchError, apply, render_edits, resolve_direction
from pti.editing.direction import combine
from pti.editing.loaders import (ROW_TOLERANCE, load_directions, load_interfacegan, save_directions,
                                 save_interfacegan)
from pti.editing.run_edits import parse_edit, resolve_edit

SUFFIXES = [".pt", ".npy", ".npz"]
# elementwise float32 sums of O(1) numbers: measured max |difference| 4.8e-7 over these tests; bound 1e-5
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread(_few_threads, monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return make_tiny_generator()


def _save(array: torch.Tensor, path: Path) -> Path:
    """``array`` as InterFaceGAN-style users save it: torch.save, np.save, or np.savez with one array."""
    if path.suffix == ".pt":
        torch.save(array.clone(), path)
    elif path.suffix == ".npy":
        np.save(path, array.numpy())
    else:
        np.savez(path, direction=array.numpy())
    return path


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_identical_rows_are_a_w_direction(G, tmp_path: Path, suffix: str):
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    row = _randn(w_dim, seed=1)
    w = _randn(3, w_dim, seed=2)
    for i, array in enumerate([row.repeat(num_ws, 1), row.repeat(1, num_ws, 1)]):  # [num_ws, w_dim], [1, ...]
        d = resolve_direction(str(_save(array, tmp_path / f"age{i}{suffix}")), G)
        assert d.space == "W" and d.num_ws is None and d.w_dim == w_dim
        # the official w + factor * direction, on W codes (shape kept) and on W+ codes
        assert torch.allclose(apply(w, d, 2.0), w + 2.0 * row, atol=ATOL)
        assert torch.allclose(apply(w[:, None].expand(-1, num_ws, -1), d, -1.0), (w - row)[:, None], atol=ATOL)


def test_rows_equal_up_to_float32_rounding_are_a_w_direction(G, tmp_path: Path):
    """Rows normalised one by one in float32 differ by a few ulps: measured max 2.6e-7 of the largest entry
    (512-d rows at 18 scales, 20 vectors), far inside ROW_TOLERANCE; a real per-layer difference is not."""
    v = _randn(int(G.w_dim), seed=3)
    rows = torch.stack([(v * a) / (v * a).norm() for a in torch.linspace(0.1, 30, int(G.num_ws))])
    spread = float((rows - rows[0]).abs().max() / rows.abs().max())
    assert 0 < spread < ROW_TOLERANCE / 10
    assert load_interfacegan(_save(rows, tmp_path / "smile.pt"), num_ws=int(G.num_ws)).space == "W"
    rows[2] *= 1 + 10 * ROW_TOLERANCE  # above the tolerance: a W+ direction
    assert load_interfacegan(_save(rows, tmp_path / "smile2.pt"), num_ws=int(G.num_ws)).space == "W+"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_differing_rows_are_a_w_plus_direction_applied_per_style_input(G, tmp_path: Path, suffix: str):
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    rows = _randn(num_ws, w_dim, seed=4)
    d = resolve_direction(str(_save(rows, tmp_path / f"pose{suffix}")), G)
    assert d.space == "W+" and d.num_ws == num_ws and "W+" in d.source
    w = _randn(2, w_dim, seed=5)  # a W pivot: broadcast to W+ first
    assert torch.allclose(apply(w, d, 1.5), w[:, None] + 1.5 * rows, atol=ATOL)
    w_plus = _randn(2, num_ws, w_dim, seed=6)
    assert torch.allclose(apply(w_plus, d, -1.0), w_plus - rows, atol=ATOL)
    # per-code strengths, and a layer range keeps the other style inputs as they were
    assert torch.allclose(apply(w_plus, d, torch.tensor([0.0, 2.0]))[1], w_plus[1] + 2 * rows, atol=ATOL)
    part = apply(w_plus, d.with_layers((1, 3)), 1.0)
    assert torch.equal(part[:, [0, 3, 4, 5]], w_plus[:, [0, 3, 4, 5]])
    assert torch.allclose(part[:, 1:3], w_plus[:, 1:3] + rows[1:3], atol=ATOL)
    # rendering: strength s of a W pivot is the image of the row-wise edited W+ code
    images = render_edits(G, w[:1], d, [0.0, 2.0])
    with torch.no_grad():
        expected = G.synthesis(w[:1, None] + 2.0 * rows, noise_mode="const")
        base = G.synthesis(w[:1, None].expand(-1, num_ws, -1), noise_mode="const")
    # batched vs single convolutions: measured max |difference| 3.3e-6 on [-1, 1]
    assert torch.allclose(images[0, 0, 1], expected[0], atol=1e-4)
    assert torch.allclose(images[0, 0, 0], base[0], atol=1e-4)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_other_row_counts_are_refused_naming_both_counts(G, tmp_path: Path, suffix: str):
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    cases = {num_ws + 12: _randn(num_ws + 12, w_dim, seed=7),  # e.g. an 18-row FFHQ file for a smaller generator
             3: _randn(3, w_dim, seed=8),
             num_ws - 1: _randn(w_dim, seed=9).repeat(num_ws - 1, 1)}  # identical rows, still the wrong count
    for count, array in cases.items():
        path = _save(array, tmp_path / f"d{count}{suffix}")
        with pytest.raises(DirectionMismatchError, match=rf"d{count}{suffix}.* {count} rows .*num_ws {num_ws}"):
            resolve_direction(str(path), G)


def test_w_plus_directions_round_trip_through_files(G, tmp_path: Path):
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    rows = _randn(num_ws, w_dim, seed=10)
    d = load_interfacegan(_save(rows, tmp_path / "a.pt"))
    save_interfacegan(d, tmp_path / "b.pt")
    back = torch.load(tmp_path / "b.pt", weights_only=True)
    assert back.shape == (num_ws, w_dim) and torch.allclose(back, rows, atol=ATOL)
    save_directions(tmp_path / "c.pt", [d.with_layers((0, 4))])
    found = load_directions(tmp_path / "c.pt")[0][d.name]
    assert found.space == "W+" and found.layers == (0, 4) and torch.equal(found.vector, d.vector)
    # a W+ direction for another generator: a clear mismatch, not a shape error
    other = make_tiny_generator(resolution=32)  # num_ws 8
    with pytest.raises(DirectionMismatchError, match=f"{num_ws} rows.*num_ws 8"):
        found.check(int(other.w_dim), int(other.num_ws))


def test_the_calibrated_unit_of_strength_holds_for_a_w_plus_direction(G):
    """Strength 1 of a calibrated W+ direction changes images by 4/255, as for W directions
    (tests/test_editing.py::test_one_unit_of_strength...: 3.65-4.18 on fresh codes there; bound 15%)."""
    from pti.editing.sampling import sample_w
    from pti.editing.strength import PIXELS_PER_UNIT, calibrated, image_change

    d = Direction(_randn(int(G.num_ws), int(G.w_dim), seed=11), name="rows", scale=0.05)
    out = calibrated(G, [d], cache=False)[0]
    assert out.space == "W+" and torch.equal(out.vector, d.vector)
    change = image_change(G, sample_w(G, 64, seed=77), out, out.scale)
    print("W+ direction: scale", round(out.scale, 4), "change per unit on fresh codes", round(change, 3))
    assert change == pytest.approx(PIXELS_PER_UNIT, rel=0.15)
    # the unit differs from a W direction's (rows move different layers): the cache keys them apart
    assert calibrated(G, [Direction(d.vector.reshape(-1)[:int(G.w_dim)], name="w")], cache=True)[0].scale != out.scale


def test_a_combined_direction_is_the_sum_of_its_terms_in_their_own_units(G, tmp_path: Path):
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    a = Direction(_randn(w_dim, seed=12), name="smile", scale=0.7)
    b = Direction(_randn(w_dim, seed=13), name="yaw", scale=2.0, layers=(0, 2))
    c = load_interfacegan(_save(_randn(num_ws, w_dim, seed=14), tmp_path / "age.pt"))
    w = _randn(2, num_ws, w_dim, seed=15)
    both = combine([(a, 1.0), (b, 2.0), (c, 0.2)], num_ws)
    assert both.name == "smile 1 + yaw 2 + age 0.2" and both.space == "W+"
    for s in (1.0, -1.0, 0.5):
        expected = apply(apply(apply(w, a, s), b, 2.0 * s), c, 0.2 * s)
        assert torch.allclose(apply(w, both, s), expected, atol=ATOL)
    # W terms on the same layers stay a W direction
    same = combine([(a, 1.0), (Direction(_randn(w_dim, seed=16), name="x", scale=3.0), -0.5)], num_ws)
    assert same.space == "W" and same.layers is None
    with pytest.raises(ValueError, match="cancel"):
        combine([(a, 1.0), (a, -1.0)], num_ws)
    # from the command line: each term resolved (and, for computed directions, calibrated) on its own
    spec = parse_edit("sefa:0:1+sefa:1:-2")
    d0, d1 = resolve_direction("sefa:0", G), resolve_direction("sefa:1", G)
    combined = resolve_edit(spec, G)
    assert combined.name == "sefa_0 1 + sefa_1 -2" and spec.key == "sefa_0_1+sefa_1_-2"
    assert torch.allclose(apply(w, combined, 1.0), apply(apply(w, d0, 1.0), d1, -2.0), atol=ATOL)


def test_pti_edit_reads_a_per_style_input_file_and_refuses_a_wrong_row_count(G, tmp_path: Path, capsys):
    """The report as a user meets it: `pti edit --direction rows.pt` (exit 1 and one line for a wrong count)."""
    from pti.cli import main
    from pti.core.pivot import Pivot
    from pti.stylegan2.checkpoints import save

    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    save(G, tmp_path / "g.safetensors")
    with torch.no_grad():
        w = G.mapping(_randn(1, int(G.z_dim), seed=17), None)
    Pivot(w=w, noise=[], space="w").save(tmp_path / "pivot.pt")
    args = ["edit", "--generator", str(tmp_path / "g.safetensors"), "--pivot", str(tmp_path / "pivot.pt")]
    _save(_randn(w_dim, seed=18).repeat(num_ws, 1), tmp_path / "same.pt")
    _save(_randn(num_ws, w_dim, seed=19), tmp_path / "rows.npy")
    assert main(args + ["--direction", str(tmp_path / "same.pt"), "--direction", str(tmp_path / "rows.npy")]) == 0
    assert (tmp_path / "edits" / "same,rows.png").is_file()
    _save(_randn(18, w_dim, seed=20), tmp_path / "ffhq.npz")
    capsys.readouterr()
    # a user error: exit 2, as in `pti run` (review of issue 29 item 9; was 1)
    assert main(args + ["--direction", str(tmp_path / "ffhq.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ffhq.npz" in err and "18 rows" in err and f"num_ws {num_ws}" in err, err


def test_shipped_boundaries_hold_for_a_tuned_demo_generator_and_warn_for_another():
    """Review of issue 29 item 1: a PTI-tuned demo generator (`pti run --save-generator` keeps float16 weights;
    tuning leaves the mapping network as it is) got "boundary 'smile' was fitted on another demo generator...;
    refit with `pti fit-boundaries --generator demo`". Its mapping is the demo's rounded through float16: no
    warning. A generator with another mapping network is still warned about, with advice that fits it."""
    import warnings

    from pti.stylegan2.checkpoints import load

    tuned = load("demo")
    with torch.no_grad():
        for name, value in tuned.state_dict().items():
            if value.is_floating_point():
                value.copy_(value.to(torch.float16).to(value.dtype))  # what tuned.safetensors keeps
            if name.startswith("synthesis.") and name.endswith("weight"):
                value.add_(1e-3)  # tuning changed the synthesis network
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_direction("smile", tuned)
    other = load("demo")
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if n.startswith("mapping.")).add_(1e-2)
    with pytest.warns(UserWarning, match=r"--direction-generator ORIGINAL") as record:
        resolve_direction("smile", other)
    assert "refit with `pti fit-boundaries --generator demo`" not in str(record[0].message)
