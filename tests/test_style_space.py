"""Style space S (pti.editing.style_space): reading styles from W+, the W+ row of each style layer, and
rendering from given styles without changing the generator's numerics."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator
from pti.editing.style_space import add_style_delta, render_styles, style_layers, styles_injected, ws_to_styles


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator(resolution=32, seed=3)


def _ws(G, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([n, G.z_dim], generator=g)
    ws = G.mapping(z, None)
    # W+: a different code per row, as a W+ pivot has
    return ws + 0.3 * torch.randn(ws.shape, generator=g)


def test_layers_follow_nvidia_layout(G):
    layers = style_layers(G)
    names = [layer.name for layer in layers]
    assert names[:5] == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb"]
    assert sum(not layer.is_torgb for layer in layers) == G.num_ws - 1  # every row but the last feeds a conv
    by_name = {layer.name: layer.ws_index for layer in layers}
    # a toRGB shares its row with the next block's conv0; the last toRGB reads the last row
    assert by_name["b4.torgb"] == by_name["b8.conv0"] == 1
    assert by_name["b8.torgb"] == by_name["b16.conv0"] == 3
    assert by_name["b32.torgb"] == G.num_ws - 1


def test_each_ws_row_changes_exactly_its_layers(G):
    ws = _ws(G)
    base = ws_to_styles(G, ws)
    layers = style_layers(G)
    for row in range(G.num_ws):
        moved = ws.clone()
        moved[:, row] += 1.0
        styles = ws_to_styles(G, moved)
        changed = {layer.name for layer, a, b in zip(layers, base, styles) if not torch.equal(a, b)}
        assert changed == {layer.name for layer in layers if layer.ws_index == row}


def test_replacing_styles_by_themselves_renders_the_identical_image(G):
    ws = _ws(G)
    with torch.no_grad():
        expected = G.synthesis(ws, noise_mode="const")
        styles = ws_to_styles(G, ws)
        again = render_styles(G, styles, ws=ws, noise_mode="const")
        # the codes given alongside do not matter: only the affine layers read them
        zeros_ws = render_styles(G, styles, noise_mode="const")
        zero_delta = render_styles(G, add_style_delta(styles, [torch.zeros(s.shape[1]) for s in styles], 4.1),
                                   noise_mode="const")
        # strength 0 of a non-zero delta adds exact zeros
        zero_strength = render_styles(G, add_style_delta(styles, [torch.ones(s.shape[1]) for s in styles], 0.0),
                                      noise_mode="const")
    assert torch.equal(again, expected)
    assert torch.equal(zero_strength, expected)
    assert torch.equal(zeros_ws, expected)
    assert torch.equal(zero_delta, expected)
    # the hooks are gone afterwards
    assert all(not G.synthesis.get_submodule(l.name).affine._forward_hooks for l in style_layers(G))


def test_a_style_change_changes_the_image_and_hooks_are_removed_on_error(G):
    ws = _ws(G, n=1)
    with torch.no_grad():
        styles = ws_to_styles(G, ws)
        delta = [torch.zeros(s.shape[1]) for s in styles]
        delta[2][0] = 1.0
        edited = render_styles(G, add_style_delta(styles, delta, 3.0), noise_mode="const")
        assert not torch.equal(edited, G.synthesis(ws, noise_mode="const"))
    with pytest.raises(ValueError, match="style of b4.conv1"):
        with styles_injected(G, [s[:, :1] for s in styles]):
            pass
    with pytest.raises(RuntimeError):
        with styles_injected(G, styles):
            raise RuntimeError("boom")
    assert all(not G.synthesis.get_submodule(l.name).affine._forward_hooks for l in style_layers(G))


def test_w_codes_broadcast_and_gradients_flow(G):
    w = G.mapping(torch.randn([1, G.z_dim]), None)[:, 0]
    a = ws_to_styles(G, w)
    b = ws_to_styles(G, w[:, None].expand(-1, G.num_ws, -1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    styles = [s.detach().requires_grad_(True) for s in a]
    render_styles(G, styles, noise_mode="const").square().mean().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in styles)
    with pytest.raises(ValueError, match="ws must be"):
        ws_to_styles(G, torch.zeros([1, 3, G.w_dim]))
