"""StyleCLIP global directions (pti.editing.styleclip): CLIP through open_clip, Δt, β / auto-β, Δs, Δi_c,
`prepare`'s per-layer cache, and StyleCLIP's own files (fs3.npy, S_mean_std).

CLIP is open_clip's ViT-B-32 with random weights (the real architecture; OpenAI's weights cannot be
downloaded here): the numbers are meaningless, the code paths are the real ones. Creating it costs ~4 s
and 79 prompts ~14 s on one thread, so the model is shared and most prompts use 2 templates.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny_generator
from pti.editing.style_space import add_style_delta, render_styles, style_layers, ws_to_styles
from pti.editing.styleclip.clip_model import ClipWeightsError, imagenet_templates, load_clip
from pti.editing.styleclip.global_directions import (GlobalDirections, NoChannelError, PrepareConfig, auto_beta,
                                                     channel_stats, edit_styles,
                                                     layer_channel_directions, prepare, style_delta, text_direction)

TEMPLATES = ["a photo of {}.", "a bad photo of a {}."]


@pytest.fixture(scope="module")
def clip():
    return load_clip("ViT-B-32", pretrained=None)


@pytest.fixture(scope="module")
def G():
    # 4 channels per layer: Δi_c over every channel stays cheap
    return make_tiny_generator(resolution=16, seed=5, channel_max=4)


def _linear_encoder(dim=8, seed=0):
    """A fixed, cheap image encoder [N, 3, H, W] -> [N, dim] (stands in for CLIP where only the averaging is tested)."""
    proj = torch.randn([3 * 8 * 8, dim], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda images: F.adaptive_avg_pool2d(images.double(), 8).flatten(1) @ proj


def _synthetic(G, dim=16, seed=0):
    layers = style_layers(G)
    g = torch.Generator().manual_seed(seed)
    n = sum(layer.channels for layer in layers if not layer.is_torgb)
    dirs = F.normalize(torch.randn([n, dim], generator=g), dim=1)
    mean = [torch.randn([layer.channels], generator=g) for layer in layers]
    std = [torch.rand([layer.channels], generator=g) + 0.1 for layer in layers]
    return GlobalDirections(layers, mean, std, dirs, clip="test")


def test_templates_are_styleclips_79():
    t = imagenet_templates()
    assert len(t) == len(set(t)) == 79
    assert "a bad photo of a {}." in t and "a photo of many {}." not in t


def test_clip_embeddings_are_unit_and_prompts_swap_negates_dt(clip, G):
    with torch.no_grad():
        images = G(torch.randn([2, G.z_dim]), None, noise_mode="const")
        e = clip.encode_images(images)
    assert e.shape == (2, 512) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    assert clip.random_weights and clip.key == "ViT-B-32/random"
    a = text_direction(clip, "a smiling face", "a face", TEMPLATES)
    b = text_direction(clip, "a face", "a smiling face", TEMPLATES)
    assert torch.equal(a, -b) and abs(float(a.norm()) - 1) < 1e-5
    with pytest.raises(ValueError, match="same CLIP embedding"):
        text_direction(clip, "a face", "a face", TEMPLATES[:1])


def test_offline_clip_error_names_the_file(monkeypatch, tmp_path):
    import open_clip

    def offline(name, pretrained=None, **kw):
        if pretrained == "openai":  # the network is the only thing mocked
            raise OSError("Temporary failure in name resolution")
        raise AssertionError("unexpected")

    monkeypatch.setattr(open_clip, "create_model", offline)
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / "clip" / "ViT-B-32" / "open_clip_model.safetensors"
    with pytest.raises(ClipWeightsError, match=f"open_clip_model.safetensors.*put it at {expected}.*--clip-weights"):
        load_clip()
    with pytest.raises(ClipWeightsError, match="no such CLIP weights file"):
        load_clip(weights=tmp_path / "missing.safetensors")


@pytest.mark.slow  # 18 s on one shared core: a second ViT-B-32 and its safetensors round trip
def test_local_clip_weights_file_loads(clip, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, str(path))
    loaded = load_clip(weights=path)
    assert not loaded.random_weights and loaded.key == "ViT-B-32"
    # the same file in the cache is found without --clip-weights (offline use of pti run --edit text:...)
    from pti.editing.styleclip.clip_model import local_weights_path

    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))
    local_weights_path().parent.mkdir(parents=True)
    path.rename(local_weights_path())
    assert load_clip().weights == str(local_weights_path())
    x = torch.rand([1, 3, 16, 16]) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.encode_images(x), clip.encode_images(x), atol=1e-6)
    bad = tmp_path / "bad.pt"
    torch.save({"nothing": torch.zeros(1)}, bad)
    with pytest.raises(ClipWeightsError, match="not a CLIP ViT-B-32 state dict"):
        load_clip(weights=bad)


@pytest.mark.network
def test_openai_weights_download():
    clip = load_clip()
    dt = text_direction(clip, "a smiling face", "a face")
    with torch.no_grad():
        assert dt.shape == (512,)


def test_kept_channels_never_rise_with_beta_and_auto_beta(G):
    gd = _synthetic(G)
    dt = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(1)), dim=0)
    r = gd.relevance(dt)

    def kept_at(beta: float) -> int:  # the channels style_delta keeps; none: it refuses
        try:
            return style_delta(gd, dt, float(beta))[2]
        except NoChannelError:
            return 0

    counts = [kept_at(b) for b in np.linspace(0, 1, 101)]
    assert all(a >= b for a, b in zip(counts, counts[1:])) and counts[0] == r.numel() and counts[-1] == 0
    for beta in (0.05, 0.2, 0.4):
        deltas, used, kept = style_delta(gd, dt, beta)
        assert kept == int((r.abs() >= beta).sum()) and used == beta
    beta = auto_beta(r, 20)
    assert kept_at(beta) >= 20 and kept_at(beta + 1e-6) < 20
    _, used, kept = style_delta(gd, dt, None)
    assert used == beta and kept == 20


def test_delta_s_is_std_times_normalised_relevance_and_no_torgb(G):
    gd = _synthetic(G)
    dt = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(2)), dim=0)
    deltas, beta, kept = style_delta(gd, dt, 0.2)
    r = gd.relevance(dt)
    r_hat = torch.where(r.abs() >= 0.2, r, torch.zeros_like(r))
    r_hat = r_hat / r_hat.abs().max()
    conv = [(d, s) for layer, d, s in zip(gd.layers, deltas, gd.std) if not layer.is_torgb]
    assert torch.allclose(torch.cat([d for d, _ in conv]).double(), r_hat * torch.cat([s for _, s in conv]).double(),
                          atol=1e-7)
    assert max(float((d / s).abs().max()) for d, s in conv) == pytest.approx(1.0, abs=1e-6)
    for layer, d in zip(gd.layers, deltas):
        if layer.is_torgb:
            assert torch.count_nonzero(d) == 0
    # the edited styles keep every toRGB style bit-identical; alpha 0 renders the unedited image exactly
    ws = G.mapping(torch.randn([2, G.z_dim]), None)
    with torch.no_grad():
        styles = ws_to_styles(G, ws)
        edited = add_style_delta(styles, deltas, 4.1)
        images = edit_styles(G, ws, deltas, [0.0, 4.1])
        plain = G.synthesis(ws, noise_mode="const")
    for layer, a, b in zip(gd.layers, styles, edited):
        if layer.is_torgb:
            assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(styles, edited))
    assert torch.equal(images[:, 0], plain)
    assert not torch.equal(images[:, 1], plain)


def test_no_surviving_channel_names_the_largest_beta(G):
    gd = _synthetic(G)
    dt = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(3)), dim=0)
    top = float(gd.relevance(dt).abs().max())
    with pytest.raises(NoChannelError, match=f"largest beta that keeps a channel is {top:.4f}"):
        style_delta(gd, dt, top + 0.01)
    _, _, kept = style_delta(gd, dt, top)
    assert kept == 1


@pytest.mark.numerics
def test_channel_direction_averaging_matches_hand_computation(G):
    encode = _linear_encoder()
    torch.manual_seed(0)
    ws = G.mapping(torch.randn([2, G.z_dim]), None, truncation_psi=0.7)
    with torch.no_grad():
        base = ws_to_styles(G, ws)
    mean, std = channel_stats(G, 200, seed=1)
    layer = 2  # b8.conv0
    got = layer_channel_directions(G, layer, base, mean, std, encode, sigmas=5.0, batch_size=3)
    assert got.shape == (style_layers(G)[layer].channels, 8)
    for c in range(got.shape[0]):
        diffs = []
        for n in range(2):  # by hand, one sample and one image at a time
            embeds = []
            for sign in (-1.0, 1.0):
                styles = [s[n:n + 1].clone() for s in base]
                styles[layer][0, c] = mean[layer][c] + sign * 5.0 * std[layer][c]
                with torch.no_grad():
                    img = render_styles(G, styles, noise_mode="const")
                e = encode(img)[0]
                embeds.append(e / e.norm())
            d = embeds[1] - embeds[0]
            diffs.append(d / d.norm())
        expected = (diffs[0] + diffs[1]) / 2
        expected = expected / expected.norm()
        # batched vs one-by-one rendering and float32 Δi_c storage: rounding only (measured max 9e-8 on AVX2, 1 thread)
        assert torch.allclose(got[c].double(), expected, atol=1e-5)


def test_channel_stats_match_direct_computation(G):
    mean, std = channel_stats(G, 300, truncation_psi=0.7, seed=4, batch_size=70)
    z = torch.randn([300, G.z_dim], generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        styles = ws_to_styles(G, G.mapping(z, None, truncation_psi=0.7))
    for m, s, x in zip(mean, std, styles):
        assert torch.allclose(m, x.double().mean(0).float(), atol=1e-5)
        assert torch.allclose(s, x.double().std(0, unbiased=False).float(), atol=1e-5)


def test_prepare_resumes_per_layer_and_refuses_other_settings(G, clip, tmp_path):
    calls = []
    encoder = _linear_encoder()

    def encode(images):
        calls.append(images.shape[0])
        return encoder(images)

    cfg = PrepareConfig(stat_samples=100, samples=2, max_resolution=8, batch_size=8)
    folder = tmp_path / "cache"
    gd = prepare(G, clip, folder, cfg, progress=False, encode=encode)
    first = sum(calls)
    conv = [l for l in style_layers(G) if not l.is_torgb]
    assert first == sum(2 * 2 * l.channels for l in conv if l.resolution <= 8)
    rows = 0
    for layer in conv:  # layers above max_resolution have no direction
        block = gd.channel_dirs[rows:rows + layer.channels]
        assert (block.abs().sum() > 0) == (layer.resolution <= 8)
        rows += layer.channels
    (folder / "dirs_b8.conv1.pt").unlink()  # as if interrupted during that layer
    calls.clear()
    again = prepare(G, clip, folder, cfg, progress=False, encode=encode)
    assert sum(calls) == 2 * 2 * 4
    assert torch.equal(again.channel_dirs, gd.channel_dirs)
    with pytest.raises(ValueError, match="other settings"):
        prepare(G, clip, folder, PrepareConfig(stat_samples=100, samples=3, max_resolution=8), progress=False,
                encode=encode)


def test_prepare_with_clip_then_a_text_edit(G, clip, tmp_path):
    from pti.editing.styleclip.global_directions import text_edit

    cfg = PrepareConfig(stat_samples=100, samples=2, max_resolution=4, batch_size=8)
    gd = prepare(G, clip, tmp_path / "c", cfg, progress=False)
    assert gd.channel_dirs.shape == (sum(l.channels for l in style_layers(G) if not l.is_torgb), 512)
    edit = text_edit(gd, clip, "a smiling face", "a face", beta=None, templates=TEMPLATES)
    assert 1 <= edit.channels <= 4  # only b4.conv1's 4 channels have directions
    assert all(torch.count_nonzero(d) == 0 for l, d in zip(gd.layers, edit.deltas) if l.resolution > 4)


# --- StyleCLIP's files ---------------------------------------------------------------------------------------

def test_import_styleclip_files_in_their_layout(G, tmp_path):
    from pti.editing.styleclip.files import StyleClipFileError, import_global_directions, read_s_mean_std

    layers = style_layers(G)
    conv_total = sum(l.channels for l in layers if not l.is_torgb)
    rng = np.random.default_rng(0)
    fs3 = rng.standard_normal([conv_total - 4, 512]).astype(np.float32)  # the first layers only, like a 128 px file
    np.save(tmp_path / "fs3.npy", fs3)
    means = [rng.standard_normal(l.channels).astype(np.float32) for l in layers]
    stds = [rng.random(l.channels).astype(np.float32) for l in layers]
    with open(tmp_path / "S_mean_std", "wb") as f:
        pickle.dump([means, stds], f)
    gd = import_global_directions(G, tmp_path / "fs3.npy", tmp_path / "S_mean_std", clip_key="ViT-B-32")
    assert torch.equal(gd.channel_dirs[:conv_total - 4], torch.from_numpy(fs3))
    assert torch.count_nonzero(gd.channel_dirs[conv_total - 4:]) == 0
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(gd.std, stds))
    m, s = read_s_mean_std(tmp_path / "S_mean_std")
    assert np.array_equal(m[3], means[3])

    np.save(tmp_path / "wrong.npy", rng.standard_normal([conv_total + 1, 512]).astype(np.float32))
    with pytest.raises(StyleClipFileError, match="does not fit this generator"):
        import_global_directions(G, tmp_path / "wrong.npy", tmp_path / "S_mean_std")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "evil", "wb") as f:
        pickle.dump([[Evil()], []], f)
    with pytest.raises(StyleClipFileError, match="refused global"):
        read_s_mean_std(tmp_path / "evil")
    assert not (tmp_path / "pwned").exists()


def test_fs3_download_prints_its_sha256(monkeypatch, tmp_path, capsys):
    import hashlib

    import torch.hub

    from pti.editing.styleclip.files import FS3_URL, download_fs3

    payload = tmp_path / "payload.npy"
    np.save(payload, np.ones([3, 4], dtype=np.float32))
    seen = []

    def fake_download(url, dst, hash_prefix=None, progress=True):  # the network is the only thing mocked
        seen.append(url)
        with open(dst, "wb") as f:
            f.write(payload.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.warns(UserWarning, match="UNVERIFIED"):
        path = download_fs3(cache=tmp_path / "cache", progress=False)
    assert seen == [FS3_URL] and path.read_bytes() == payload.read_bytes()
    assert hashlib.sha256(payload.read_bytes()).hexdigest() in capsys.readouterr().err


@pytest.mark.network
def test_styleclip_ffhq_fs3_download(tmp_path):
    from pti.editing.styleclip.files import download_fs3

    with pytest.warns(UserWarning, match="sha256"):
        path = download_fs3(cache=tmp_path)
    fs3 = np.load(path, allow_pickle=False)
    # NVIDIA's FFHQ 1024 generator: 6,048 channels in its 17 conv layers (5,376 up to 128 px), unit rows of ViT-B/32
    assert fs3.shape[0] in (6048, 5376) and fs3.shape[1] == 512
    assert np.allclose(np.linalg.norm(fs3, axis=1), 1, atol=1e-3)


def test_random_clip_is_the_same_in_every_call(clip):
    """A random CLIP (offline tests, notebook 06, --random-clip) has the same weights whatever the caller's RNG
    state (each `pti edit` process used to draw another one, so a text direction prepared in one process did not
    match the CLIP of the next), and building it leaves the caller's RNG where it was."""
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    again = load_clip("ViT-B-32", pretrained=None)
    assert torch.equal(torch.get_rng_state(), state)
    a, b = clip.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
