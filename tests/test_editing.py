"""Latent editing: directions, file formats, GANSpace/SeFa, InterFaceGAN fitting, scorers, CLI.

Tolerances (issue 14): recorded under the default kernels, ATEN_CPU_CAPABILITY=default,
ONEDNN_MAX_CPU_ISA=SSE41 and both together. Apart from the renders compared in
test_render_edits_batches_and_zero_strength_is_the_pivot (marked ``numerics``), every value below was
the same under each setting; file round trips, reruns and cache reads gave max |diff| 0. The measured
values are next to each bound.
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from conftest import make_tiny_generator
from pti.editing import (Direction, DirectionMismatchError, apply, fit_boundary, fit_generator_boundaries,
                         ganspace_basis, load_directions, load_ganspace, load_ganspace_basis, load_interfacegan,
                         render_edits, resolve_direction, save_directions, save_ganspace_npz, save_interfacegan,
                         sefa_directions)
from pti.editing.cache import cache_path
from pti.editing.sefa import affines_by_style_input
from pti.stylegan2.checkpoints import weights_fingerprint


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own direction cache (never the user's ~/.cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PTI_CACHE_DIR", str(cache))
    return cache


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


# --- Direction and apply ----------------------------------------------------------------

def test_direction_is_normalised_and_validated():
    d = Direction(torch.tensor([3.0, 4.0]), name="d")
    assert torch.allclose(d.vector, torch.tensor([0.6, 0.8]))  # measured max |diff| 0
    assert d.vector.dtype == torch.float32 and d.w_dim == 2
    with pytest.raises(ValueError, match="all zeros"):
        Direction(torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        Direction(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="start < stop"):
        Direction(torch.ones(4), layers=(3, 3))
    with pytest.raises(ValueError, match="scale"):
        Direction(torch.ones(4), scale=0.0)


def test_apply_w_and_w_plus_and_layer_ranges():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(8, generator=gen)
    d = Direction(v, name="d", scale=2.0)
    w = torch.randn(3, 8, generator=gen)
    out = apply(w, d, 1.5)
    # elementwise float32 on |values| < 4 (1 ulp = 2.4e-7): measured max |diff| 2.4e-7 to 4.8e-7 (1-2 ulp) here
    # and below under every setting; 1e-6 is a rounding bound (4 ulp), not a spread
    assert torch.allclose(out, w + 1.5 * 2.0 * _unit(v)[None], atol=1e-6)
    # per-code strengths
    s = torch.tensor([-1.0, 0.0, 2.0])
    assert torch.allclose(apply(w, d, s), w + s[:, None] * 2.0 * _unit(v)[None], atol=1e-6)
    # W+ with a layer range: only layers 1..2 move
    wp = torch.randn(3, 5, 8, generator=gen)
    dl = d.with_layers((1, 3))
    outp = apply(wp, dl, 1.0)
    assert torch.equal(outp[:, [0, 3, 4]], wp[:, [0, 3, 4]])
    assert torch.allclose(outp[:, 1:3], wp[:, 1:3] + 2.0 * _unit(v), atol=1e-6)
    # W codes with a layer range need num_ws and come back as W+
    with pytest.raises(ValueError, match="num_ws"):
        apply(w, dl, 1.0)
    assert apply(w, dl, 1.0, num_ws=5).shape == (3, 5, 8)
    # mismatches name the problem
    with pytest.raises(DirectionMismatchError, match="w_dim 9"):
        apply(torch.zeros(1, 9), d, 1.0)
    with pytest.raises(DirectionMismatchError, match="only 2 style inputs"):
        apply(torch.zeros(1, 2, 8), dl, 1.0)


@pytest.mark.numerics
def test_render_edits_batches_and_zero_strength_is_the_pivot():
    G = make_tiny_generator()
    gen = torch.Generator().manual_seed(1)
    w = G.mapping(torch.randn(2, G.z_dim, generator=gen), None)
    dirs = [Direction(torch.randn(G.w_dim, generator=gen), name=f"d{i}") for i in range(2)]
    out = render_edits(G, w, dirs, [-1.0, 0.0, 2.0], batch_size=5)
    assert out.shape == (2, 2, 3, 3, G.img_resolution, G.img_resolution)
    with torch.no_grad():
        plain = G.synthesis(w, noise_mode="const")
        edited = G.synthesis(apply(w, dirs[1], 2.0), noise_mode="const")
    # batches of 5 vs 2 round differently: measured max |diff| / (1e-5 + 1e-5 |x|) of 0.06-0.09 (2.4e-6 at most)
    # with the default kernels, ONEDNN_MAX_CPU_ISA=SSE41/AVX, ATEN_CPU_CAPABILITY=default, 1 and 2 threads
    assert torch.allclose(out[:, 0, 1], plain, atol=1e-5) and torch.allclose(out[:, 1, 1], plain, atol=1e-5)
    assert torch.allclose(out[:, 1, 2], edited, atol=1e-5)
    assert not torch.allclose(out[:, 0, 0], plain, atol=1e-3)  # an edit moves pixels by 0.71 (measured)
    # a W code [N, w_dim] is broadcast to the layers (the same batch of 2: measured max |diff| 0)
    assert torch.allclose(render_edits(G, w[:, 0], dirs[0], [0.0])[:, 0, 0], plain, atol=1e-5)
    # a pivot's own noise maps ([1, 1, R, R], shared by the batch) are used for every edit
    for layer in G.synthesis.noise_layers():
        layer.noise_strength.data.fill_(0.5)  # a random generator starts with noise switched off
    noise = [torch.randn(1, 1, layer.resolution, layer.resolution, generator=gen)
             for layer in G.synthesis.noise_layers()]
    with_noise = render_edits(G, w[:1], dirs, [0.0, 1.0], noise=noise)
    with torch.no_grad():
        expected = G.synthesis(apply(w[:1], dirs[1], 1.0), noise_mode="const", noise=noise)
        const_noise = G.synthesis(w[:1], noise_mode="const")
    # batch of 2 vs 1: measured max |diff| 1.8e-6 to 2.4e-6 under the settings above; the pivot's noise instead of
    # the constant noise moves pixels by 5.6
    assert torch.allclose(with_noise[0, 1, 1], expected[0], atol=1e-5)
    assert not torch.allclose(with_noise[0, 0, 0], const_noise[0], atol=1e-3)


# --- official formats ---------------------------------------------------------------------

def test_official_interfacegan_file_round_trips(tmp_path: Path):
    """A file in the official PTI layout (torch.save of a [1, 512] tensor) loads, edits like the
    official ``latent + factor * direction`` and is written back identically."""
    gen = torch.Generator().manual_seed(2)
    official = torch.randn(1, 512, generator=gen)
    official = official / official.norm()
    src = tmp_path / "age.pt"
    torch.save(official, src)
    d = load_interfacegan(src)
    assert d.name == "age" and d.w_dim == 512 and d.layers is None
    w = torch.randn(2, 18, 512, generator=gen)
    # elementwise float32 (as in test_apply_w_and_w_plus_and_layer_ranges): measured max |diff| 2.4e-7 here and at
    # the non-unit vector below; the vectors read back from files: 0 and 1.5e-8
    assert torch.allclose(apply(w, d, 3.0), w + 3.0 * official, atol=1e-5)
    dst = tmp_path / "age_copy.pt"
    save_interfacegan(d, dst)
    back = torch.load(dst, weights_only=True)
    assert back.shape == (1, 512) and back.dtype == torch.float32
    assert torch.allclose(back, official, atol=1e-7)
    # a non-unit official vector keeps its magnitude (scale) so edits stay identical
    torch.save(official * 2.5, src)
    assert torch.allclose(apply(w, load_interfacegan(src), 1.0), w + 2.5 * official, atol=1e-5)
    # InterFaceGAN's own .npy boundaries
    np.save(tmp_path / "smile.npy", official.numpy())
    assert torch.allclose(load_interfacegan(tmp_path / "smile.npy").vector, official[0], atol=1e-6)


def test_direction_dimension_mismatch_is_a_clear_error(tmp_path: Path):
    G = make_tiny_generator()  # w_dim 32
    path = tmp_path / "rotation.pt"
    torch.save(torch.randn(1, 512), path)
    with pytest.raises(DirectionMismatchError, match=r"rotation.pt.*dimension 512.*w_dim 32"):
        load_interfacegan(path, w_dim=G.w_dim)
    with pytest.raises(DirectionMismatchError, match="w_dim 32"):
        resolve_direction(str(path), G)


def test_unsafe_direction_file_is_refused(tmp_path: Path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_interfacegan(path)


def test_ganspace_npz_in_the_official_layout_loads_and_round_trips(tmp_path: Path):
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    comp = q.T[:5].float().numpy()  # 5 orthonormal rows
    std = np.array([3.0, 2.0, 1.5, 1.0, 0.5], dtype=np.float32)
    mean = np.random.default_rng(0).normal(size=(1, 16)).astype(np.float32)
    src = tmp_path / "stylegan2-ffhq_style_ipca_c5_n100000_w.npz"
    np.savez_compressed(src, act_comp=comp[:, None, :], act_mean=mean, act_stdev=std, lat_comp=comp[:, None, :],
                        lat_mean=mean, lat_stdev=std, var_ratio=std / std.sum(), random_stdevs=std * 0.1)
    d = load_ganspace(src, 2, layers=(0, 4))
    assert torch.allclose(d.vector, torch.from_numpy(comp[2]), atol=1e-6)
    assert d.scale == pytest.approx(1.5) and d.layers == (0, 4)
    basis = load_ganspace_basis(src)
    dst = tmp_path / "copy.npz"
    save_ganspace_npz(basis, dst)
    with np.load(dst) as back:
        assert back["lat_comp"].shape == (5, 1, 16)
        np.testing.assert_allclose(back["lat_comp"], comp[:, None, :], atol=1e-7)
        np.testing.assert_allclose(back["lat_stdev"], std)
        np.testing.assert_allclose(back["lat_mean"], mean)
    # the encoder4editing/PTI .pt dict variant
    pt = tmp_path / "ffhq_pca.pt"
    torch.save({"comp": torch.from_numpy(comp[:, None, :]), "mean": torch.from_numpy(mean),
                "std": torch.from_numpy(std)}, pt)
    assert torch.allclose(load_ganspace(pt, 4).vector, torch.from_numpy(comp[4]), atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        load_ganspace(src, 5)


def test_direction_collection_and_command_line_names(tmp_path: Path):
    G = make_tiny_generator()
    gen = torch.Generator().manual_seed(4)
    a = Direction(torch.randn(G.w_dim, generator=gen), name="yaw", source="test", scale=0.7)
    b = Direction(torch.randn(G.w_dim, generator=gen), layers=(0, 2), name="smile", source="test")
    coll = tmp_path / "boundaries.pt"
    save_directions(coll, [a, b], {"fits": {"yaw": {"heldout_accuracy": 0.9}}})
    found, meta = load_directions(coll)
    assert set(found) == {"yaw", "smile"} and meta["fits"]["yaw"]["heldout_accuracy"] == 0.9
    assert torch.equal(found["yaw"].vector, a.vector) and found["yaw"].scale == pytest.approx(0.7)
    assert found["smile"].layers == (0, 2)
    assert torch.equal(resolve_direction(f"{coll}#smile", G).vector, b.vector)
    assert resolve_direction(f"{coll}#smile", G, layers=(1, 3)).layers == (1, 3)
    with pytest.raises(KeyError, match="no direction 'age'"):
        resolve_direction(f"{coll}#age", G)
    npz = tmp_path / "pcs.npz"
    save_ganspace_npz(ganspace_basis(G, num_components=4, num_samples=2000), npz)
    assert resolve_direction(f"{npz}#1", G).w_dim == G.w_dim
    assert resolve_direction("sefa:2", G).name == "sefa_2"
    assert resolve_direction("ganspace:0", G, layers=(0, 3)).layers == (0, 3)
    with pytest.raises(ValueError, match="unknown direction"):
        resolve_direction("no-such-direction", G)
    with pytest.raises(ValueError, match="out of range"):
        resolve_direction("sefa:32", G)


# --- the unit of strength (pti.editing.strength) -------------------------------------------------

def test_one_unit_of_strength_is_the_same_image_change_for_every_direction():
    """Directions of very different W spread (a GANSpace axis, a random vector, a SeFa axis on
    two layers) all change fresh samples by 4/255 per unit after calibration."""
    from pti.editing.sampling import sample_w
    from pti.editing.strength import PIXELS_PER_UNIT, calibrate_scale, calibrated, image_change

    G = make_tiny_generator()
    gen = torch.Generator().manual_seed(9)
    dirs = [ganspace_basis(G, num_components=4, num_samples=2000).directions()[0],
            Direction(torch.randn(G.w_dim, generator=gen), name="random", scale=0.05),
            sefa_directions(G, num_components=2, layers=(0, 2), cache=False, calibrate=False)[1]]
    before = [image_change(G, sample_w(G, 16, seed=0), d, d.scale) for d in dirs]
    out = calibrated(G, dirs, cache=False)
    fresh = sample_w(G, 64, seed=77)  # codes the calibration did not see
    after = [image_change(G, fresh, d, d.scale) for d in out]
    print("change per unit before", [round(x, 3) for x in before], "after", [round(x, 3) for x in after],
          "scales", [round(d.scale, 4) for d in out])
    # Before: one W-spread unit moved these images by 45.0 / 1.37 / 14.0 (/255). After: the calibration
    # hits 4/255 within its rtol 2% on its own 32 codes; on 64 fresh codes (seeds 77-81, five directions
    # incl. the two by name below) the change was 3.65-4.18, within 9% of 4 (sampling spread: 16
    # calibration codes gave 3.44-3.94). Bound: 15%. Without calibration the ratio is 33x.
    assert max(before) / min(before) > 2
    for d, x in zip(out, after):
        assert x == pytest.approx(PIXELS_PER_UNIT, rel=0.15), d.name
        assert d.source.endswith("1 unit = 4/255 mean image change")
    # the convention reaches computed directions by name
    for spec in ("ganspace:1", "sefa:0"):
        d = resolve_direction(spec, G)
        assert image_change(G, fresh, d, d.scale) == pytest.approx(PIXELS_PER_UNIT, rel=0.15), spec

    class Frozen(nn.Module):  # an image that ignores w: no unit of strength exists
        num_ws, w_dim, z_dim, c_dim = G.num_ws, G.w_dim, G.z_dim, 0
        mapping = G.mapping

        def synthesis(self, ws, noise_mode="const"):
            return torch.zeros(ws.shape[0], 3, 4, 4)

    with pytest.raises(ValueError, match="does not change the images"):
        calibrate_scale(Frozen(), dirs[1], w=sample_w(G, 4, seed=1))


# --- directions from the generator ------------------------------------------------------------

def _assert_orthonormal(directions: list[Direction]) -> None:
    m = torch.stack([d.vector for d in directions]).double()
    # float32 unit vectors: measured max |diff| 3.8e-8 to 4.3e-8 (GANSpace and SeFa, every setting)
    assert torch.allclose(m @ m.T, torch.eye(len(directions), dtype=torch.float64), atol=1e-5)


def test_ganspace_is_orthonormal_reproducible_and_cached(_private_cache: Path, monkeypatch: pytest.MonkeyPatch):
    G = make_tiny_generator()
    basis = ganspace_basis(G, num_components=8, num_samples=4000, seed=5)
    dirs = basis.directions(layers=(0, 3))
    _assert_orthonormal(dirs)
    assert all(d.layers == (0, 3) for d in dirs)
    assert torch.all(basis.stdev[:-1] >= basis.stdev[1:]) and float(basis.var_ratio.sum()) <= 1.0 + 1e-6
    # stdev is the spread of fresh W samples along each component (within sampling error)
    from pti.editing.sampling import sample_w, stdev_along

    fresh = stdev_along(sample_w(G, 4000, seed=99), basis.components)
    # sampling error: a stdev from 4000 samples has a relative standard error of ~1.1%; measured max rel 3.2%
    # (the same under every setting), so rtol 0.1 is ~9 standard errors
    assert torch.allclose(fresh, basis.stdev, rtol=0.1)
    # reproducible without the cache, and read back from the cache without recomputing
    again = ganspace_basis(G, num_components=8, num_samples=4000, seed=5, cache=False)
    # the same computation in the same process: measured max |diff| 0 (components and stdev)
    assert torch.allclose(again.components, basis.components, atol=1e-5)
    assert torch.allclose(again.stdev, basis.stdev, rtol=1e-5)
    entry = cache_path(weights_fingerprint(G, ("mapping.",)), "ganspace",
                       {"num_components": 8, "num_samples": 4000, "seed": 5, "batch_size": 10_000})
    assert entry.is_file() and _private_cache in entry.parents

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr("pti.editing.ganspace._compute_basis", fail)
    cached = ganspace_basis(G, num_components=8, num_samples=4000, seed=5)
    assert torch.equal(cached.components, basis.components)
    # another generator has another cache entry
    with pytest.raises(AssertionError, match="recomputed"):
        ganspace_basis(make_tiny_generator(seed=1), num_components=8, num_samples=4000, seed=5)


def test_affine_layers_are_matched_to_their_style_inputs():
    """The ws index SeFa attributes to each affine is the one the synthesis network feeds it."""
    G = make_tiny_generator(resolution=16)
    seen: dict[str, torch.Tensor] = {}
    hooks = [mod.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(name, inp[0].clone()))
             for _, name, mod in affines_by_style_input(G)]
    ws = torch.randn(1, G.num_ws, G.w_dim)
    with torch.no_grad():
        G.synthesis(ws, noise_mode="const")
    for h in hooks:
        h.remove()
    pairs = affines_by_style_input(G)
    assert len(pairs) == len(seen) == 3 * 3 - 1 + 0  # b4: conv1+torgb, b8/b16: conv0+conv1+torgb
    for index, name, _ in pairs:
        assert torch.equal(seen[name], ws[:, index]), name
    assert sorted({i for i, _, _ in pairs}) == list(range(G.num_ws))


def test_sefa_is_orthonormal_reproducible_and_maximises_style_change():
    G = make_tiny_generator()
    dirs = sefa_directions(G, num_components=6, cache=False)
    _assert_orthonormal(dirs)
    again = sefa_directions(G, num_components=6, cache=False)
    # recomputed and read from the cache: measured max |diff| 0
    assert all(torch.allclose(a.vector, b.vector, atol=1e-6) for a, b in zip(dirs, again))
    cached_twice = [sefa_directions(G, num_components=6)[k].vector for k in range(6)]
    assert all(torch.allclose(a.vector, b, atol=1e-6) for a, b in zip(dirs, cached_twice))
    # the first direction changes the (row-normalised) styles more than random unit directions
    rows = torch.cat([m.weight.detach().double() for _, name, m in affines_by_style_input(G) if "torgb" not in name])
    rows = rows / rows.norm(dim=1, keepdim=True)
    gain = lambda v: float((rows @ v.double()).norm())  # noqa: E731
    rand = torch.randn(200, G.w_dim, generator=torch.Generator().manual_seed(6))
    assert gain(dirs[0].vector) >= max(gain(r / r.norm()) for r in rand)
    assert gain(dirs[0].vector) >= gain(dirs[1].vector) >= gain(dirs[5].vector)
    # a layer range restricts both the factorised affines and where the edit applies
    early = sefa_directions(G, num_components=3, layers=(0, 2), cache=False)
    assert all(d.layers == (0, 2) for d in early)
    assert not torch.allclose(early[0].vector.abs(), dirs[0].vector.abs(), atol=1e-3)  # measured 0.225 apart


# --- InterFaceGAN ---------------------------------------------------------------------------

def test_fit_boundary_recovers_a_linear_attribute():
    gen = torch.Generator().manual_seed(7)
    n, dim = 1200, 24
    w = torch.randn(n, dim, generator=gen) * torch.linspace(0.5, 2.0, dim) + 3.0
    truth = _unit(torch.randn(dim, generator=gen))
    scores = (w - 3.0) @ truth + 0.1 * torch.randn(n, generator=gen)
    scores[::10] = float("nan")  # unscored samples (no face) are dropped
    fit = fit_boundary(w, scores, "attr")
    # measured (the same under every setting): cosine 0.994, held-out accuracy 1.0, scale within 0.3% of the
    # spread along the direction (rel 0.05 allowed), noise fit's accuracy 0.45 (chance 0.5)
    assert float(fit.direction.vector @ truth) > 0.95  # oriented towards higher scores
    assert fit.heldout_accuracy > 0.95 and fit.heldout_spearman > 0.9
    assert fit.extras["scored_fraction"] == pytest.approx(0.9)
    assert fit.direction.scale == pytest.approx(float(((w - 3.0) @ fit.direction.vector).std()), rel=0.05)
    # pure noise scores give chance-level held-out accuracy
    noise_fit = fit_boundary(w, torch.randn(n, generator=gen), "noise")
    assert noise_fit.heldout_accuracy < 0.75
    with pytest.raises(ValueError, match="too few"):
        fit_boundary(w[:10], scores[:10], "attr")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fit_boundary_chooses_its_svm_regularisation_by_cross_validation(seed):
    """Few samples in a W-sized space: C = 1 fits the training extremes perfectly and its normal is noisy.
    Measured (seeds 1-3, 1,000 samples in 256-D, score noise std 1): C = 1 cosine to the truth 0.59-0.64,
    train accuracy 1.0, held-out 0.67-0.71; the cross-validated C (0.001) 0.74-0.76, held-out 0.74-0.76.
    Asserted: a gain of at least 0.08 in cosine (measured 0.12-0.16)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(1000, 256, generator=gen)
    truth = _unit(torch.randn(256, generator=gen))
    scores = w @ truth + torch.randn(1000, generator=gen)
    plain, chosen = fit_boundary(w, scores, "attr", C=1.0), fit_boundary(w, scores, "attr")
    assert plain.extras["C"] == 1.0 and chosen.extras["C"] < 1.0
    assert float(chosen.direction.vector @ truth) > float(plain.direction.vector @ truth) + 0.08
    assert chosen.heldout_accuracy >= plain.heldout_accuracy


def test_boundary_moves_a_measurable_image_property_monotonically():
    """A StyleGAN2 made for the test: fit a boundary for the horizontal centroid of image
    brightness on a tiny random generator, then check that the edit moves it monotonically."""
    G = make_tiny_generator()
    xs = torch.linspace(-1, 1, G.img_resolution)

    def centroid(images: torch.Tensor) -> dict[str, torch.Tensor]:
        mass = (images.mean(1) + 1.0).clamp_min(0)  # [N, H, W] brightness >= 0
        return {"cx": (mass.sum(1) * xs).sum(1) / mass.sum((1, 2))}

    fits, meta = fit_generator_boundaries(G, ["cx"], 1500, seed=8, scorer=centroid, progress=False,
                                          batch_size=250)
    assert meta["w_dim"] == G.w_dim and meta["fits"]["cx"]["heldout_accuracy"] == fits[0].heldout_accuracy
    strengths = [-2.0, -1.0, 0.0, 1.0, 2.0]
    from pti.editing.sampling import sample_w

    w = sample_w(G, 16, seed=9)
    images = render_edits(G, w, fits[0].direction, strengths)[:, 0]  # [16, 5, 3, H, W]
    cx = centroid(images.reshape(-1, *images.shape[2:]))["cx"].reshape(16, 5)
    rho = [spearmanr(strengths, row.numpy()).statistic for row in cx]
    print(f"centroid edit: held-out acc {fits[0].heldout_accuracy:.3f}, mean Spearman {np.mean(rho):.3f}")
    # measured 0.871 and 1.0, the same under every setting
    assert fits[0].heldout_accuracy > 0.8
    assert np.mean(rho) > 0.8


# --- scorers on real faces (dlib) ------------------------------------------------------------

def _dcgan_face_generator() -> nn.Module:
    """The DCGAN face generator shipped (with weights) by the gan-face-generate package, wrapped
    in the StyleGAN2 interface (identity mapping, num_ws 1): a real face generator made for
    the test, without the demo checkpoint."""
    pytest.importorskip("dlib")
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None:
        pytest.skip("gan-face-generate is not installed (needed for a face generator)")
    from gan_face_generate.models import Generator as DCGAN

    weights = Path(spec.origin).parent / "weights.tar"
    state = torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"]
    net = DCGAN(0, 3, 100, 64)
    net.load_state_dict(state)

    class Synthesis(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, ws, noise_mode="const", noise=None, **kwargs):
            return self.net(ws[:, 0, :, None, None])

    class Mapping(nn.Module):
        def forward(self, z, c, truncation_psi=1.0, **kwargs):
            return z[:, None, :]

    class FaceGenerator(nn.Module):
        z_dim = w_dim = 100
        c_dim = 0
        num_ws = 1
        img_resolution = 64

        def __init__(self) -> None:
            super().__init__()
            self.synthesis, self.mapping = Synthesis(), Mapping()

    return FaceGenerator().eval()


def test_landmark_scores_geometry():
    from pti.editing.scorers import scores_from_landmarks

    # a symmetric frontal layout: jaw ends at x=0 and x=100, nose tip at the middle
    p = np.zeros((68, 2))
    p[0], p[16], p[30] = (0, 50), (100, 50), (50, 60)
    p[36:42], p[42:48] = (30, 40), (70, 40)
    p[48], p[54] = (35, 80), (65, 80)
    p[61], p[62], p[63] = (45, 82), (50, 82), (55, 82)
    p[65], p[66], p[67] = (55, 86), (50, 86), (45, 86)
    s = scores_from_landmarks(p)
    assert s["yaw"] == pytest.approx(0.0) and s["smile"] == pytest.approx(30 / 40)
    assert s["mouth_open"] == pytest.approx(4 / 30)
    p[30] = (70, 60)  # nose towards the image's right: positive yaw
    assert scores_from_landmarks(p)["yaw"] == pytest.approx((70 - 30) / 100)
    # invariant to in-plane rotation and scale
    c, sn = math.cos(0.4), math.sin(0.4)
    rotated = 2.5 * p @ np.array([[c, -sn], [sn, c]]).T
    # float64 ratios of distances: measured max |diff| 5.6e-17 (pytest.approx's default rel 1e-6 above: 0)
    for key, value in scores_from_landmarks(p).items():
        assert scores_from_landmarks(rotated)[key] == pytest.approx(value, abs=1e-9)


def test_landmark_scorer_on_generated_faces_and_on_noise():
    from pti.editing.scorers import LandmarkScorer

    G = _dcgan_face_generator()
    scorer = LandmarkScorer()
    with torch.no_grad():
        faces = G.synthesis(torch.randn(24, 1, 100, generator=torch.Generator().manual_seed(10)))
    scores = scorer(faces)
    found = ~torch.isnan(scores["yaw"])
    # measured: 16 of 24 faces found (0.67), landmarks from 4.5 to 70 px (64 px images); the same under every setting
    assert found.float().mean() > 0.5, "dlib found faces in fewer than half of the generated faces"
    assert torch.all(scores["yaw"][found].abs() <= 1.0)
    assert torch.all((scores["smile"][found] > 0.3) & (scores["smile"][found] < 2.0))
    assert torch.all(scores["mouth_open"][found] >= 0)
    noise = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(11)) * 2 - 1
    assert torch.isnan(scorer(noise, ["yaw"])["yaw"]).all()
    # landmarks come back in the input's pixel coordinates
    pts = scorer.landmarks(faces[found][:2])
    assert np.nanmin(pts) > -16 and np.nanmax(pts) < 80


def test_yaw_boundary_moves_measured_yaw_monotonically_on_a_face_generator():
    """End to end on real faces: score generated samples with dlib, fit the yaw boundary, apply
    it to fresh samples at increasing strengths and measure yaw again."""
    from pti.editing.scorers import LandmarkScorer

    G = _dcgan_face_generator()
    scorer = LandmarkScorer()
    fits, _ = fit_generator_boundaries(G, ["yaw"], 400, seed=1, batch_size=100, progress=False,
                                       scorer=lambda x: scorer(x, ["yaw"]))
    fit = fits[0]
    strengths = [-2.0, -1.0, 0.0, 1.0, 2.0]
    w = torch.randn(16, 100, generator=torch.Generator().manual_seed(123))
    images = render_edits(G, w, fit.direction, strengths)[:, 0]
    yaw = scorer(images.reshape(-1, 3, 64, 64), ["yaw"])["yaw"].reshape(16, 5).numpy()
    rhos = _spearman_per_sample(strengths, yaw)
    print(f"DCGAN yaw: held-out acc {fit.heldout_accuracy:.3f}, {len(rhos)}/16 samples scored at >= 4 strengths, "
          f"Spearman mean {np.mean(rhos) if rhos else float('nan'):.3f}")
    # measured: 10 samples scored, held-out accuracy 0.875, mean Spearman 0.98; the same under every setting
    assert len(rhos) >= 6, "too few edited samples had a detectable face to measure yaw"
    assert fit.heldout_accuracy > 0.75
    assert np.mean(rhos) > 0.8


# --- command line --------------------------------------------------------------------------

def _saved_tiny_setup(tmp_path: Path):
    from pti.core.pivot import Pivot
    from pti.stylegan2.checkpoints import save

    G = make_tiny_generator()
    gen_path = tmp_path / "g.safetensors"
    save(G, gen_path)
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(12)), None)
    pivot_path = tmp_path / "run" / "pivot.pt"
    pivot_path.parent.mkdir()
    Pivot(w=w, noise=[], space="w").save(pivot_path)
    return G, gen_path, pivot_path


def test_edit_command_writes_a_labelled_grid(tmp_path: Path, capsys: pytest.CaptureFixture):
    from PIL import Image

    from pti.cli import main

    G, gen_path, pivot_path = _saved_tiny_setup(tmp_path)
    coll = tmp_path / "b.pt"
    save_directions(coll, [Direction(torch.randn(G.w_dim, generator=torch.Generator().manual_seed(13)),
                                     name="yaw", source="test")])
    out = tmp_path / "grid.png"
    rc = main(["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--direction", "sefa:1",
               "--direction", f"{coll}#yaw", "--strengths", "-3,0,3", "--layers", "0:4", "--out", str(out)])
    assert rc == 0 and out.is_file()
    with Image.open(out) as img:
        width, height = img.size
    assert width >= 3 * G.img_resolution and height >= 2 * G.img_resolution
    assert "sefa_1" in capsys.readouterr().out
    # default output: PIVOT_DIR/edits/<direction>[_L<layers>][_s<strengths>].png
    assert main(["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--direction", "ganspace:0"]) == 0
    assert (pivot_path.parent / "edits" / "ganspace_0.png").is_file()
    assert main(["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--direction", "ganspace:0",
                 "--strengths=-1,1"]) == 0
    assert (pivot_path.parent / "edits" / "ganspace_0_s-1_1.png").is_file()


def test_edit_outputs_never_overwrite_each_other_silently(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Issue 29 item 5: `pti edit RUN/PHOTO --direction smile --layers 0:4`, then `--layers 4:10`, both wrote
    edits/smile.png. Names now carry the layers and strengths; an existing file holding another edit is kept
    (exit 2, one line) unless --overwrite; the same command again rewrites its own file."""
    from PIL import Image

    from pti.cli import main

    G, gen_path, pivot_path = _saved_tiny_setup(tmp_path)
    base = ["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--direction", "sefa:0"]
    edits = pivot_path.parent / "edits"
    assert main(base + ["--layers", "0:2"]) == 0 and main(base + ["--layers", "2:6"]) == 0
    first, second = edits / "sefa_0_L0-2.png", edits / "sefa_0_L2-6.png"
    assert first.is_file() and second.is_file()
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    stamp = first.read_bytes()
    assert main(base + ["--layers", "0:2"]) == 0 and first.read_bytes() == stamp  # the same edit again: fine
    # another edit aimed at an existing name (--out): refused, one line, the file untouched
    capsys.readouterr()
    assert main(base + ["--layers", "2:6", "--out", str(first)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and str(first) in err and first.read_bytes() == stamp
    assert main(base + ["--layers", "2:6", "--out", str(first), "--overwrite"]) == 0
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    assert not list(edits.glob(".*.tmp"))  # nothing half-written

    # issue 29 item 16: a combined edit is one image (strength 1 = the weights as written), its own name and label
    capsys.readouterr()
    assert main(["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--direction",
                 "sefa:0:1+sefa:1:2", "--direction", "sefa:0:-1,1"]) == 0
    out = capsys.readouterr().out
    assert "sefa_0 1 + sefa_1 2: combination" in out
    assert (edits / "sefa_0_1+sefa_1_2,sefa_0_s-1_1.png").is_file()  # rows joined by ',', columns -1 and 1


def test_a_refused_edit_renders_nothing(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch):
    """Issue 33 item 4: `pti edit` refuses an existing output before rendering where that is decidable (a file that
    is no image, an image of another size than the grid); an image of the grid's size that records another edit is
    compared by its pixels after rendering, so the same edit written another way is still written."""
    from PIL import Image

    import pti.editing.direction as direction
    from pti.cli import main
    from pti.core.pivot import Pivot

    G, gen_path, pivot_path = _saved_tiny_setup(tmp_path)
    calls = []
    render_edits = direction.render_edits
    monkeypatch.setattr(direction, "render_edits", lambda *a, **k: calls.append(1) or render_edits(*a, **k))
    out = tmp_path / "grid.png"
    base = ["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--out", str(out)]
    out.write_text("not an image")
    capsys.readouterr()
    assert main(base + ["--direction", "sefa:0"]) == 2 and not calls and out.read_text() == "not an image"
    assert "--overwrite" in capsys.readouterr().err
    assert main(base + ["--direction", "sefa:0", "--overwrite"]) == 0 and len(calls) == 1
    stamp = out.read_bytes()
    calls.clear()
    assert main(base + ["--direction", "sefa:0", "--direction", "sefa:1"]) == 2  # two rows: another size
    assert not calls and out.read_bytes() == stamp
    # sefa:0:-3,0,3 is sefa:0 at its default strengths: another record, the same pixels, so not refused
    assert main(base + ["--direction", "sefa:0:-3,0,3"]) == 0 and len(calls) == 1
    with Image.open(out) as img:
        assert '"sefa:0:-3,0,3"' in img.text["pti-edit"]
    # the same labels, so the same size, but another pivot: rendered, compared, refused
    other = tmp_path / "other" / "pivot.pt"
    other.parent.mkdir()
    Pivot(w=Pivot.load(pivot_path).w + 0.5, noise=[], space="w").save(other)
    capsys.readouterr()
    assert main(["edit", "--generator", str(gen_path), "--pivot", str(other), "--out", str(out), "--direction",
                 "sefa:0"]) == 2 and len(calls) == 2
    assert "--overwrite" in capsys.readouterr().err
    with Image.open(out) as img:
        assert '"sefa:0:-3,0,3"' in img.text["pti-edit"]


def test_edit_command_reports_a_direction_for_another_generator(tmp_path: Path, capsys: pytest.CaptureFixture):
    from pti.cli import main

    _, gen_path, pivot_path = _saved_tiny_setup(tmp_path)
    ffhq_direction = tmp_path / "smile.pt"
    torch.save(torch.randn(1, 512), ffhq_direction)
    rc = main(["edit", "--generator", str(gen_path), "--pivot", str(pivot_path), "--direction", str(ffhq_direction),
               "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "smile.pt" in err and "dimension 512" in err and "w_dim 32" in err
    assert not (tmp_path / "x.png").exists()


def test_edit_command_user_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Review of issue 29 item 9: `pti edit` exited 1 for an unknown direction, a file with more rows than the
    generator has style inputs and `--layers 0:99` (`pti run` exits 2), and gave a traceback for `--out afile/x.png`;
    item 5: `--strengths nan,inf` wrote smile_snan_inf.png."""
    from pti.cli import main

    G, gen_path, pivot_path = _saved_tiny_setup(tmp_path)
    rows = tmp_path / "rows.pt"
    torch.save(torch.randn(G.num_ws + 8, G.w_dim), rows)
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["edit", "--generator", str(gen_path), "--pivot", str(pivot_path)]
    cases = [(["--direction", "no_such_direction"], "unknown direction"),
             (["--direction", str(rows)], "rows.pt"),
             (["--direction", "sefa:0", "--layers", "0:99"], "0:99"),
             (["--direction", "sefa:0", "--out", str(afile / "x.png")], "afile is a file"),
             (["--direction", "sefa:0", "--strengths", "nan,inf"], "finite"),
             (["--direction", "sefa:0:1e400"], "finite")]
    for extra, words in cases:
        capsys.readouterr()
        rc = main(base + extra)
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and err.startswith("pti edit: ") and words in err, (extra, rc, err)
    assert not (pivot_path.parent / "edits").exists() and afile.read_text() == "x"


def test_fit_boundaries_command_fails_clearly_without_faces(tmp_path: Path, capsys: pytest.CaptureFixture):
    from pti.cli import main

    _, gen_path, _ = _saved_tiny_setup(tmp_path)
    out = tmp_path / "boundaries.pt"
    rc = main(["fit-boundaries", "--generator", str(gen_path), "--samples", "24", "--attributes", "yaw",
               "--out", str(out)])
    assert rc == 1 and "too few" in capsys.readouterr().err and not out.exists()
    assert main(["fit-boundaries", "--generator", str(gen_path), "--out", str(out), "--attributes", "age"]) == 2


def _spearman_per_sample(strengths: list[float], values: np.ndarray, min_scored: int = 4) -> list[float]:
    """Spearman correlation of strength and measured value for each row with enough finite values."""
    rhos = []
    for row in values:
        ok = np.isfinite(row)
        if ok.sum() >= min_scored:
            rhos.append(spearmanr(np.array(strengths)[ok], row[ok]).statistic)
    return rhos


def _demo_with_boundary(name: str):
    from pti.editing.loaders import DEMO_BOUNDARIES, demo_boundary_names
    from pti.stylegan2.checkpoints import load

    demo = DEMO_BOUNDARIES.parent / "demo_generator.safetensors"
    if not demo.is_file():
        pytest.skip(f"{demo} is missing (train it with `pti train-demo`); the DCGAN test above covers yaw meanwhile")
    if name not in demo_boundary_names():
        pytest.skip(f"{DEMO_BOUNDARIES} has no {name!r} boundary: run `pti fit-boundaries --generator demo "
                    f"--out {DEMO_BOUNDARIES}`")
    return load(demo).eval(), demo


def test_shipped_yaw_boundary_moves_yaw_monotonically_on_the_demo_generator():
    from pti.editing.sampling import sample_w
    from pti.editing.scorers import LandmarkScorer

    G, _ = _demo_with_boundary("yaw")
    direction = resolve_direction("yaw", G)
    # Measured on the 58.9-kimg checkpoint (48 samples, 3 seeds): per-sample Spearman mean 0.71-0.78,
    # median 0.9-1.0; 16 samples at +-2 gave means 0.57-0.81 (dlib's landmarks are noisy at 64 px).
    # The rho > 0.8 mean of the issue holds on the DCGAN face generator (test above); here the
    # median is asserted at 0.8 and the mean at 0.6 (a direction unrelated to yaw gives ~0).
    # +-4.5 units of pti.editing.strength = the W distance of the +-3 stdev units measured above
    # (scale 0.669 then, 0.424 now)
    strengths = [-4.5, -2.25, 0.0, 2.25, 4.5]
    images = render_edits(G, sample_w(G, 48, seed=321), direction, strengths)[:, 0]
    yaw = LandmarkScorer()(images.reshape(-1, *images.shape[2:]), ["yaw"])["yaw"].reshape(48, 5).numpy()
    rhos = _spearman_per_sample(strengths, yaw)
    print(f"demo yaw: {len(rhos)}/48 samples scored at >= 4 strengths, "
          f"Spearman mean {np.mean(rhos) if rhos else float('nan'):.3f}, median {np.median(rhos):.3f}")
    assert len(rhos) >= 16, "too few edited demo samples had a detectable face to measure yaw"
    assert np.median(rhos) >= 0.8 - 1e-9 and np.mean(rhos) > 0.6  # 5-point rho is a multiple of 0.1


def test_every_shipped_direction_makes_a_visible_comparable_change_at_strength_3():
    """Issue 16: the slider of notebook 04 looked broken because smile/mouth_open moved the image by
    2.1/255 and 1.8/255 (mean) at +-3, yaw by 18.2/255. With the strength unit of pti.editing.strength,
    measured at +-3 on 32 random codes (seeds 5, 6, 7) of the 58.9 kimg generator: yaw 11.3-12.4, smile
    12.0-13.1, mouth_open 11.4-12.5, ganspace:0 11.5-13.0, sefa:0 11.6-13.2 (/255); on the 88.0 kimg
    distilled generator (seed 5): yaw 9.84, smile 9.96, ganspace:0 10.27, sefa:0 10.98, mouth_open 11.21.
    Bounds: at least 8/255 each (the old smile fails by 4x) and within a factor 1.5 of each other
    (measured at most 1.16 and 1.14)."""
    from pti.editing.loaders import demo_boundary_names
    from pti.editing.sampling import sample_w
    from pti.editing.strength import image_change

    G, _ = _demo_with_boundary("smile")
    w = sample_w(G, 32, seed=5)
    changes = {}
    for spec in [*demo_boundary_names(), "ganspace:0", "sefa:0"]:
        d = resolve_direction(spec, G)
        changes[spec] = image_change(G, w, d, 3 * d.scale)
    print("mean |change| at +-3 (/255):", {k: round(v, 2) for k, v in changes.items()})
    assert min(changes.values()) >= 8.0, changes
    assert max(changes.values()) / min(changes.values()) <= 1.5, changes


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["grace_hopper", "astronaut"])
def test_smile_edit_after_pti_moves_the_smile_score_monotonically(photo: str):
    """Issue 16: on both bundled photos, after PTI (W pivot, tuned generator), dlib's smile score
    follows the shipped smile edit over 7 strengths (Spearman >= 0.8). 200 inversion steps at the demo
    generator's projector lr (``inversion_defaults("demo")``: 0.02), then PTI from that pivot three times,
    with 50, 100 and 200 tuning steps; the median of the three rhos is asserted.

    Why three: one PTI run's rho swings with the CPU's kernel rounding (the trajectory is chaotic). Measured
    on the 88.0 kimg generator (2 threads, rho at 50 / 100 / 200 tuning steps): AVX-512 (Xeon, oneDNN ALL)
    astronaut 0.964 / 0.393 / 0.964, grace_hopper 0.821 / 0.964 / 0.964; oneDNN held to AVX2 astronaut
    0.929 / 0.964 / 1.0, grace_hopper 0.964 / 0.821 / 0.893; on an AVX2 EPYC with one thread 100 steps gave
    0.964 (astronaut) and 1.0 (grace_hopper). One run in twelve fell below 0.8 (the single 100-step run this
    test used to assert, red in CI on the AVX-512 machine); every median is >= 0.89. On the 66 kimg candidate
    the C = 1 boundary gave 0.11 / undefined, and on the 58.9 kimg generator an unrelated direction
    (mouth_open, astronaut) gave -0.82: the bound can fail."""
    import dataclasses

    from scipy.stats import spearmanr

    from pti.alignment import align_face
    from pti.core.config import TuningConfig
    from pti.core.config import inversion_defaults
    from pti.apps.demo import bundled_photos
    from pti.editing.scorers import LandmarkScorer
    from pti.images import pil_to_tensor
    from pti.core.projector import project
    from pti.core.tuning import pivotal_tune

    G, _ = _demo_with_boundary("smile")
    x = pil_to_tensor(align_face(bundled_photos()[photo], output_size=G.img_resolution, name=photo), 3)
    x = x.reshape(1, 3, G.img_resolution, G.img_resolution)
    pivot = project(G, x, dataclasses.replace(inversion_defaults("demo"), steps=200), progress=False)
    strengths = [-3, -2, -1, 0, 1, 2, 3]
    rhos = []
    for steps in (50, 100, 200):
        tuned = pivotal_tune(G, x, pivot, TuningConfig(steps=steps), progress=False).generator
        images = render_edits(tuned, pivot.w, resolve_direction("smile", G), strengths, noise=pivot.noise_maps())[0, 0]
        smile = LandmarkScorer()(images, ["smile"])["smile"].numpy()
        assert np.isfinite(smile).all(), f"dlib found no face in some edited images ({steps} tuning steps)"
        rhos.append(float(spearmanr(strengths, smile).statistic))
        print(f"{photo}, {steps} tuning steps: smile scores {np.round(smile, 3).tolist()}, Spearman {rhos[-1]:.3f}")
    assert float(np.median(rhos)) >= 0.8, rhos


# --- PTI versus a plain W inversion (needs the trained demo generator) ---------------------------

@pytest.mark.slow
@pytest.mark.numerics  # 100 inversion + 200 tuning steps decide a 0.87 vs 0.85 ordering (not measured per setting)
def test_pti_edit_keeps_identity_better_than_an_edit_of_the_w_inversion():
    """Edit a real photo's pivot with the demo generator's yaw boundary, once rendered by the
    original generator (plain W inversion) and once by the PTI-tuned one. Measured: dlib
    identity similarity to the photo and the yaw of each edit. Asserted: only the robust
    parts (PTI reconstructs the identity better, and the PTI edit still turns the head)."""
    G, _ = _demo_with_boundary("yaw")
    import skimage.data

    from pti.alignment import align_face
    from pti.core.config import InversionConfig, TuningConfig
    from pti.editing.scorers import LandmarkScorer
    from pti.images import pil_to_tensor
    from pti.core.projector import project
    from pti.metrics import identity_similarity
    from pti.core.tuning import pivotal_tune

    photo = align_face(skimage.data.astronaut(), output_size=G.img_resolution)
    target = pil_to_tensor(photo).reshape(1, 3, G.img_resolution, G.img_resolution)
    # 60 tuning steps were too few (identity PTI 0.81 < W 0.85 on the 58.9-kimg checkpoint); 200: 0.87 > 0.85
    pivot = project(G, target, InversionConfig(steps=100, w_avg_samples=1000), progress=False)
    tuned = pivotal_tune(G, target, pivot, TuningConfig(steps=200), progress=False).generator
    direction = resolve_direction("yaw", G)
    strengths = [-2.0, 0.0, 2.0]
    w_edits = render_edits(G, pivot.w, direction, strengths, noise=pivot.noise_maps())[0, 0]
    pti_edits = render_edits(tuned, pivot.w, direction, strengths)[0, 0]
    targets = target.expand(len(strengths), -1, -1, -1)
    id_w, id_pti = identity_similarity(w_edits, targets), identity_similarity(pti_edits, targets)
    scorer = LandmarkScorer()
    yaw_w, yaw_pti = scorer(w_edits, ["yaw"])["yaw"], scorer(pti_edits, ["yaw"])["yaw"]
    print("strength | identity W | identity PTI | yaw W | yaw PTI")
    for i, s in enumerate(strengths):
        print(f"{s:+.1f} | {id_w[i]:.3f} | {id_pti[i]:.3f} | {yaw_w[i]:.3f} | {yaw_pti[i]:.3f}")
    assert id_pti[1] > id_w[1], "PTI should reconstruct the photo's identity better than the W inversion"
    assert float(yaw_pti[2] - yaw_pti[0]) > 0, "the yaw edit of the PTI pivot should turn the head"
