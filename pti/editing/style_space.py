"""Style space S of a StyleGAN2 generator (Wu et al. 2021, "StyleSpace Analysis"; used by StyleCLIP's
global directions, Patashnik et al. 2021, Sec. 6).

A style vector is the output ``s = affine(w_l)`` of the affine layer of every modulated convolution
and every toRGB layer: ``[N, C_l]`` with ``C_l`` the layer's *input* channels. Works for any pti
generator, tuned ones included (the affine layers are part of θ and PTI tunes them too).

The layers, in synthesis order (NVIDIA's layout, the order of StyleCLIP's ``global_torch``):
``b4.conv1, b4.torgb, b8.conv0, b8.conv1, b8.torgb, ...``. Row ``i`` of W+ feeds: block ``R``'s
``conv0`` row ``k``, ``conv1`` row ``k + 1`` and ``torgb`` row ``k + 2``, where ``k`` advances by the
block's conv count, so a toRGB shares its row with the next block's ``conv0``
(:attr:`StyleLayer.ws_index`).

Reading styles computes the affine layers on W+ rows directly (no rendering). Rendering from given
styles runs the unchanged synthesis network with forward hooks on the affine layers that return the
given tensors: the normal path's numerics are untouched, and giving the styles that W+ would produce
renders the bit-identical image.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class StyleLayer:
    """One style vector of the generator.

    Attributes:
        name: module path under ``G.synthesis``, e.g. ``"b8.conv0"`` or ``"b8.torgb"``.
        kind: ``"conv"`` (modulated 3x3 convolution) or ``"torgb"``.
        ws_index: the W+ row its affine layer reads.
        channels: ``C_l``, the length of its style vector.
        resolution: the block resolution in pixels.
    """

    name: str
    kind: str
    ws_index: int
    channels: int
    resolution: int

    @property
    def is_torgb(self) -> bool:
        return self.kind == "torgb"


def style_layers(G: nn.Module) -> list[StyleLayer]:
    """Every style layer of ``G`` (a :class:`pti.stylegan2.Generator` or its ``synthesis``) in synthesis order."""
    synthesis = getattr(G, "synthesis", G)
    layers: list[StyleLayer] = []
    w_idx = 0
    for block in synthesis.blocks():
        res = int(block.resolution)
        row = w_idx
        for name in ("conv0", "conv1"):
            layer = getattr(block, name, None)
            if layer is None:
                continue
            layers.append(StyleLayer(f"b{res}.{name}", "conv", row, int(layer.affine.out_features), res))
            row += 1
        torgb = getattr(block, "torgb", None)
        if torgb is not None:
            layers.append(StyleLayer(f"b{res}.torgb", "torgb", row, int(torgb.affine.out_features), res))
        w_idx += block.num_conv
    return layers


def _affine(G: nn.Module, layer: StyleLayer) -> nn.Module:
    synthesis = getattr(G, "synthesis", G)
    return synthesis.get_submodule(layer.name).affine


def _check_ws(G: nn.Module, ws: torch.Tensor) -> torch.Tensor:
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    if ws.ndim == 2 and ws.shape[1] == w_dim:
        ws = ws[:, None, :].expand(-1, num_ws, -1)
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim):
        raise ValueError(f"ws must be [N, {w_dim}] (W, broadcast) or [N, {num_ws}, {w_dim}] (W+), got {tuple(ws.shape)}")
    return ws.to(torch.float32)


def ws_to_styles(G: nn.Module, ws: torch.Tensor) -> list[torch.Tensor]:
    """The style vectors of codes ``ws``: one ``[N, C_l]`` float32 tensor per :func:`style_layers` entry.

    ``ws``: ``[N, num_ws, w_dim]`` (W+) or ``[N, w_dim]`` (W, broadcast to every row). Differentiable
    with respect to ``ws`` and ``G``'s affine weights. Raises ``ValueError`` on a shape mismatch.
    """
    ws = _check_ws(G, ws)
    rows = ws.unbind(dim=1)  # the same views SynthesisBlock.forward hands to its layers
    return [_affine(G, layer)(rows[layer.ws_index]) for layer in style_layers(G)]


def check_styles(G: nn.Module, styles: Sequence[torch.Tensor]) -> None:
    """Raise ``ValueError`` unless ``styles`` has one ``[N, C_l]`` tensor per style layer, with one N."""
    layers = style_layers(G)
    if len(styles) != len(layers):
        raise ValueError(f"expected {len(layers)} style tensors (one per style layer), got {len(styles)}")
    n = styles[0].shape[0] if len(styles) else 0
    for layer, s in zip(layers, styles):
        if s.ndim != 2 or s.shape[1] != layer.channels or s.shape[0] != n:
            raise ValueError(f"style of {layer.name} must be [{n}, {layer.channels}], got {tuple(s.shape)}")


@contextmanager
def styles_injected(G: nn.Module, styles: Sequence[torch.Tensor]) -> Iterator[None]:
    """Inside the block, every affine layer of ``G`` outputs the given style instead of ``affine(w)``.

    Forward hooks, removed on exit (also on error). ``styles`` as returned by :func:`ws_to_styles`.
    """
    check_styles(G, styles)
    handles = []
    try:
        for layer, s in zip(style_layers(G), styles):
            def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor, s: torch.Tensor = s) -> torch.Tensor:
                return s.to(device=output.device, dtype=output.dtype)
            handles.append(_affine(G, layer).register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


def render_styles(G: nn.Module, styles: Sequence[torch.Tensor], ws: torch.Tensor | None = None,
                  **synthesis_kwargs: Any) -> torch.Tensor:
    """Render style vectors: ``G.synthesis`` with every affine output replaced by ``styles``.

    Args:
        styles: one ``[N, C_l]`` tensor per :func:`style_layers` entry.
        ws: the codes passed to ``G.synthesis`` alongside (only the affine layers read them, so they
            do not change the image; default zeros). Give the codes the styles came from to keep
            everything else identical.
        synthesis_kwargs: ``noise_mode``, ``noise``, ``force_fp32`` ... as for ``G.synthesis``.

    Returns:
        ``[N, C, H, W]`` float32 images in about [-1, 1]. Differentiable with respect to ``styles``.
    """
    n = styles[0].shape[0]
    if ws is None:
        ws = torch.zeros([n, int(G.num_ws), int(G.w_dim)], device=styles[0].device)
    with styles_injected(G, styles):
        return G.synthesis(_check_ws(G, ws), **synthesis_kwargs)


def add_style_delta(styles: Sequence[torch.Tensor], delta: Sequence[torch.Tensor | None],
                    strength: float = 1.0) -> list[torch.Tensor]:
    """``s + strength · Δs`` per layer; a None or all-zero ``Δs`` entry leaves that layer's tensor as is.

    ``delta`` entries are ``[C_l]`` (the same for every code) or ``[N, C_l]``.
    """
    if len(delta) != len(styles):
        raise ValueError(f"expected {len(styles)} style deltas (one per style layer), got {len(delta)}")
    out = []
    for s, d in zip(styles, delta):
        if d is None or not bool(d.ne(0).any()):
            out.append(s)
        else:
            out.append(s + float(strength) * d.to(device=s.device, dtype=s.dtype))
    return out


__all__ = ["StyleLayer", "style_layers", "ws_to_styles", "check_styles", "styles_injected", "render_styles",
           "add_style_delta"]
