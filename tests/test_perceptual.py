"""Perceptual distance: offline fallback chosen and named honestly, metric properties, real LPIPS (network)."""
from __future__ import annotations

import urllib.error
import warnings

import pytest
import torch
import torch.nn.functional as F

from pti.core import perceptual
from pti.core.perceptual import FALLBACK_NAME, PerceptualUnavailable, describe, load_perceptual

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and a network that refuses (mocked at the download call only)."""
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(perceptual, "_FAILED_DOWNLOADS", {})


@pytest.fixture(scope="module")
def fallback():
    return load_perceptual("effnet-lite0")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    x = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return F.interpolate(x, size=(128, 128), mode="area")


def test_offline_chooses_named_fallback_with_warning(offline):
    with pytest.warns(RuntimeWarning, match="not LPIPS") as record:
        p = load_perceptual("alex")
    assert p.name == FALLBACK_NAME
    assert "not LPIPS" in p.name and not p.is_lpips
    assert "alexnet" in str(record[0].message)  # says which file is missing
    assert describe(p).startswith(FALLBACK_NAME)


def test_offline_without_fallback_raises_naming_the_file(offline):
    with pytest.raises(PerceptualUnavailable, match=r"alexnet-owt-.*\.pth.*allow the offline fallback"):
        load_perceptual("alex", allow_fallback=False)


def test_cached_backbone_is_used_without_download(monkeypatch, tmp_path):
    """A backbone file already in the hub cache is found without touching the network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = perceptual.backbone_cache_path("alex")
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    (tmp_path / "checkpoints").mkdir()
    with open(path, "wb") as f:  # stands in for the downloaded file (only its presence is checked here)
        f.write(b"cached")
    assert perceptual.ensure_lpips_backbone("alex") == path
    assert calls == []


def test_unknown_net_is_rejected():
    with pytest.raises(ValueError, match="unknown perceptual network"):
        load_perceptual("resnet")


def _noise_ladder(p, x, levels=(0.0, 0.03, 0.1, 0.3)):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        return [p(x, (x + s * noise).clamp(-1, 1)).item() for s in levels]


def test_fallback_metric_properties(fallback, photo):
    d = _noise_ladder(fallback, photo)
    # d(x, x): the same ops on the same inputs, measured exactly 0 here and in the two tests below with the default
    # kernels, ATEN_CPU_CAPABILITY=default + ONEDNN_MAX_CPU_ISA=SSE41 and ONEDNN_MAX_CPU_ISA=AVX2 (issue 14)
    assert d[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in zip(d, d[1:])), d


def test_fallback_is_frozen_and_differentiable(fallback, photo):
    fallback.train()  # must stay in eval mode
    assert not any(m.training for m in fallback.modules())
    assert not any(p.requires_grad for p in fallback.parameters())
    x = photo.clone().requires_grad_(True)
    fallback(x, photo.flip(-1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fallback_batch_and_odd_sizes(fallback, photo):
    x = torch.cat([photo, photo.flip(-1)])[:, :, :45, :70]
    y = torch.cat([photo, photo])[:, :, :45, :70]
    d = fallback(x, y)
    assert d.shape == (2,)
    assert d[0].item() == pytest.approx(0.0, abs=1e-6) and d[1].item() > 0
    small = fallback(photo[:, :, :16, :16], photo[:, :, 16:32, :16])
    assert small.shape == (1,) and small.item() > 0
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        fallback(photo, photo[:, :, :64])


def test_random_backbone_is_labelled_and_handles_tiny_images(photo):
    p = load_perceptual("random-alex")
    assert "random backbone" in p.name and not p.is_lpips
    tiny = F.interpolate(photo, size=(16, 16), mode="area")
    d = p(torch.cat([tiny, tiny]), torch.cat([tiny, tiny.flip(-1)]))
    assert d.shape == (2,) and d[0].item() == pytest.approx(0.0, abs=1e-7) and d[1].item() > 0


@pytest.mark.network
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_real_lpips(net, photo):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback
        p = load_perceptual(net, allow_fallback=False)
    assert p.name == f"lpips-{net}" and p.is_lpips
    d = _noise_ladder(p, photo)
    # not measured in issue 14 (needs the network; its sessions were offline). d(x, x) is exactly 0 for the
    # fallback above (the same ops on the same inputs); 1.5 is a range check, not a rounding tolerance
    assert d[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in zip(d, d[1:])), d
    assert d[-1] < 1.5  # LPIPS scale


@pytest.mark.numerics
@pytest.mark.parametrize("net", ["random-vgg", "random-alex"])
def test_lpips_against_cached_target_features_is_bit_equal(net, photo):
    """LPIPS against the target's features computed once (what the projector and tuning now do) runs the
    same operations in the same order as ``lpips.LPIPS.forward``: equal values and gradients, bit for bit
    (measured with the default kernels and ONEDNN_MAX_CPU_ISA=AVX2, batch 1 and 3, 64 and 16 px)."""
    from pti.core.losses import PerceptualLoss

    for resolution in (None, 32):
        loss = PerceptualLoss(net, resolution)
        y = torch.cat([photo, photo.flip(3)])[:, :, :64, :64]
        x = (y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
        d_full = loss(x, y)
        g_full, = torch.autograd.grad(d_full.sum(), x)
        target = loss.target_features(y)
        assert not any(f.requires_grad for f in target)
        d_cached = loss.distance_to(x, target)
        g_cached, = torch.autograd.grad(d_cached.sum(), x)
        assert torch.equal(d_full, d_cached) and torch.equal(g_full, g_cached)
        # a subset of photos (tuning with batch_size < N): the target's features came from a batch of 2, the
        # recomputed ones from a batch of 1, which convolutions may round differently. Measured rel <= 3.4e-7
        # (default kernels and ONEDNN_MAX_CPU_ISA=AVX2); rel 1e-5 leaves ~30x
        torch.testing.assert_close(loss.distance_to(x[1:], [f[1:] for f in target]), loss(x[1:], y[1:]),
                                   rtol=1e-5, atol=0)
        assert float(d_cached.min()) > 0


@pytest.mark.numerics
def test_fallback_against_cached_target_features(fallback, photo):
    """The fallback runs its backbone on x and y in one batch; cached, on x alone. Measured: bit-equal at
    batch 2-3, at batch 1 distances rel 1.1e-7 and gradients 3.9e-6 of their largest element apart (default
    kernels and ONEDNN_MAX_CPU_ISA=AVX2); rel 1e-5 / 1e-4 leave ~25x."""
    y = photo[:, :, :64, :64]
    x = (y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    d_full = fallback(x, y)
    g_full, = torch.autograd.grad(d_full.sum(), x)
    d_cached = fallback.distance_to(x, fallback.target_features(y))
    g_cached, = torch.autograd.grad(d_cached.sum(), x)
    torch.testing.assert_close(d_cached, d_full, rtol=1e-5, atol=0)
    assert float((g_cached - g_full).abs().max() / g_full.abs().max()) < 1e-4


def _noise_regularization_per_map(noise_maps):
    """StyleGAN2's projector loop (one map and pyramid level at a time): what the batched version replaces."""
    total = torch.zeros([noise_maps[0].shape[0]])
    for v in noise_maps:
        while True:
            total = total + (v * torch.roll(v, shifts=1, dims=3)).mean(dim=(1, 2, 3)) ** 2
            total = total + (v * torch.roll(v, shifts=1, dims=2)).mean(dim=(1, 2, 3)) ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return total


@pytest.mark.numerics
def test_batched_noise_regularization_equals_the_per_map_loop():
    """Measured over 20 seeds (maps of a 1024 px generator, 1-3 photos, white and correlated noise): values
    rel 6.8e-7 apart, gradients bit-equal, under the default kernels, ONEDNN_MAX_CPU_ISA=AVX2 and
    ATEN_CPU_CAPABILITY=default; rel 1e-5 leaves ~15x. A term left out or doubled moves it by > 1e-3."""
    from pti.core.losses import noise_regularization, noise_regularization_per_image

    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        sides = [4] + [r for r in (8, 16, 32, 64, 128, 256) for _ in range(2)]
        maps = [torch.randn([2, 1, r, r], generator=gen) for r in sides]
        maps = [m + 0.5 * seed * m.roll(1, 3) for m in maps]
        a = [m.clone().requires_grad_(True) for m in maps]
        b = [m.clone().requires_grad_(True) for m in maps]
        expected, got = _noise_regularization_per_map(a), noise_regularization_per_image(b)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
        for ga, gb in zip(torch.autograd.grad(expected.sum(), a), torch.autograd.grad(got.sum(), b)):
            torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(noise_regularization(maps[:5]), _noise_regularization_per_map(maps[:5]).sum(),
                                   rtol=1e-5, atol=0)


def test_random_backbones_are_the_same_in_every_process_and_leave_the_rng_alone():
    """random-squeeze drawn after two different global seeds has the same weights (it used to take them from the
    caller's RNG, so a subprocess or another test order got another network), and building it does not advance
    the caller's RNG."""
    from pti.core.perceptual import load_perceptual

    torch.manual_seed(1)
    a = load_perceptual("random-squeeze").state_dict()
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = load_perceptual("random-squeeze").state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
