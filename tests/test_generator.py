"""StyleGAN2 generator: configurations, shapes, truncation, noise modes, NVIDIA names."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator
from pti.stylegan2 import Generator


@pytest.mark.parametrize("resolution,architecture,c_dim", [(8, "skip", 0), (16, "orig", 0), (32, "resnet", 3),
                                                           (64, "skip", 0)])
def test_shapes_num_ws_and_range(resolution, architecture, c_dim):
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=c_dim, w_dim=24, img_resolution=resolution, img_channels=3,
                  mapping_kwargs={"num_layers": 3},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 16, "architecture": architecture,
                                    "conv_clamp": 256, "num_fp16_res": 2}).eval()
    log2 = resolution.bit_length() - 1
    assert G.num_ws == 2 * log2 - 2
    z = torch.randn(2, 16)
    c = torch.eye(c_dim)[[0, 1]] if c_dim else None
    ws = G.mapping(z, c)
    assert ws.shape == (2, G.num_ws, 24)
    img = G.synthesis(ws, noise_mode="const")
    assert img.shape == (2, 3, resolution, resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and 0.05 < float(img.std().detach()) < 20


def test_conditional_generator_requires_labels():
    G = Generator(8, 2, 8, 8, 3, mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 64,
                                                                                    "channel_max": 8})
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(torch.randn(1, 8), None)


def test_truncation():
    G = make_tiny_generator()
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    z = torch.randn(4, G.z_dim)
    ws = G.mapping(z, None)
    assert torch.allclose(G.mapping(z, None, truncation_psi=0), G.mapping.w_avg.expand_as(ws))  # measured equal
    half = G.mapping(z, None, truncation_psi=0.5)
    # elementwise lerp vs (a + b) / 2: at most an ulp or two (measured 2.4e-7), the same on every kernel
    assert torch.allclose(half, (ws + G.mapping.w_avg) / 2, atol=1e-6)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], half[:, :2]) and torch.allclose(cut[:, 2:], ws[:, 2:])  # measured equal


def test_w_avg_update_only_when_asked():
    G = make_tiny_generator()
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn(8, G.z_dim), None)
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(torch.randn(8, G.z_dim), None, update_w_avg=True)
    assert not torch.equal(G.mapping.w_avg, before)


def test_noise_modes():
    G = make_tiny_generator()
    for layer in G.synthesis.noise_layers():
        layer.noise_strength.data.fill_(0.5)
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    with torch.no_grad():
        const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        rand1, rand2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        none = G.synthesis(ws, noise_mode="none")
        zero_maps = [torch.zeros(1, 1, l.resolution, l.resolution) for l in G.synthesis.noise_layers()]
        explicit_zero = G.synthesis(ws, noise_mode="const", noise=zero_maps)
        const_maps = [l.noise_const for l in G.synthesis.noise_layers()]
        explicit_const = G.synthesis(ws, noise_mode="const", noise=const_maps)
    assert torch.equal(const1, const2)
    assert not torch.allclose(rand1, rand2)
    assert not torch.allclose(none, const1)
    # the same ops on the same values: measured max |diff| 0 with the default kernels, ATEN_CPU_CAPABILITY=default
    # and ONEDNN_MAX_CPU_ISA=SSE41 (the 1e-6 only allows adding a zero noise map in another order)
    assert torch.allclose(explicit_zero, none, atol=1e-6)
    assert torch.allclose(explicit_const, const1, atol=1e-6)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


@pytest.mark.numerics
def test_fused_and_unfused_modconv_agree():
    G = make_tiny_generator()
    ws = G.mapping(torch.randn(3, G.z_dim), None)
    with torch.no_grad():
        a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
        b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    # grouped vs batched convolutions round differently: measured max |a - b| / (1e-5 + 1e-5 |b|) of 0.15-0.18
    # with the default kernels, ONEDNN_MAX_CPU_ISA=SSE41/AVX, ATEN_CPU_CAPABILITY=default, 1 and 2 threads
    assert torch.allclose(a, b, atol=1e-5)


def test_nvidia_parameter_names_and_shapes():
    G = Generator(512, 0, 512, 1024, 3, mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
    sd = G.state_dict()
    assert G.num_ws == 18
    expected = {
        "mapping.fc0.weight": (512, 512), "mapping.fc7.bias": (512,), "mapping.w_avg": (512,),
        "synthesis.b4.const": (512, 4, 4), "synthesis.b4.resample_filter": (4, 4),
        "synthesis.b4.conv1.weight": (512, 512, 3, 3), "synthesis.b4.conv1.noise_strength": (),
        "synthesis.b4.conv1.noise_const": (4, 4), "synthesis.b4.conv1.affine.weight": (512, 512),
        "synthesis.b4.torgb.weight": (3, 512, 1, 1), "synthesis.b4.torgb.bias": (3,),
        "synthesis.b1024.conv0.weight": (32, 64, 3, 3), "synthesis.b1024.conv0.resample_filter": (4, 4),
        "synthesis.b1024.conv1.noise_const": (1024, 1024), "synthesis.b1024.torgb.affine.bias": (32,),
    }
    for name, shape in expected.items():
        assert tuple(sd[name].shape) == shape, name
    assert "synthesis.b4.conv0.weight" not in sd and "synthesis.b8.torgb.resample_filter" not in sd
    assert not any(k.startswith("synthesis.b8.skip") for k in sd)
    # an integer count against a rounded figure: measured 60 parameters off 30.37e6 (not a rounding tolerance)
    assert sum(p.numel() for p in G.parameters()) == pytest.approx(30.37e6, rel=0.01)
