"""SeFa (Shen & Zhou, CVPR 2021): closed-form factorisation of the style affines.

Each synthesis layer turns w into styles with an affine map ``s = A w + b``. Directions
``n`` that change the styles most (maximise ``|A n|`` over unit ``n``) are the leading
eigenvectors of ``AᵀA``; for several layers, ``A`` stacks their weight rows. As in the
paper, every row of ``A`` (one output channel) is first scaled to unit norm, so that no
layer dominates because of its width or weight scale.

Which affines belong to which of the ``num_ws`` style inputs follows the synthesis
network's own indexing: conv layer ``k`` (in order b4.conv1, b8.conv0, b8.conv1, ...)
reads input ``k``; a block's ToRGB reads the input after its last conv. By default only
conv layers are used (``include_torgb=False``).

Deterministic (no sampling except for each direction's ``scale``, the stdev of W along it
from ``num_samples`` seeded mapping samples) and cached per checkpoint.
"""
from __future__ import annotations

import torch

from pti.editing.cache import cached
from pti.editing.direction import Direction
from pti.editing.ganspace import fix_signs
from pti.editing.sampling import sample_w, stdev_along
from pti.stylegan2.checkpoints import weights_fingerprint


def affines_by_style_input(G: torch.nn.Module) -> list[tuple[int, str, torch.nn.Module]]:
    """``(ws index, parameter-name prefix, affine module)`` for every modulated layer of ``G``."""
    out: list[tuple[int, str, torch.nn.Module]] = []
    w_idx = 0
    for block in G.synthesis.blocks():
        prefix = f"synthesis.b{block.resolution}"
        k = w_idx
        for conv_name in ("conv0", "conv1"):
            layer = getattr(block, conv_name, None)
            if layer is not None:
                out.append((k, f"{prefix}.{conv_name}.affine", layer.affine))
                k += 1
        if getattr(block, "torgb", None) is not None:
            out.append((w_idx + block.num_conv, f"{prefix}.torgb.affine", block.torgb.affine))
        w_idx += block.num_conv
    return out


def _selected(G: torch.nn.Module, layers: tuple[int, int] | None, include_torgb: bool):
    start, stop = layers if layers is not None else (0, int(G.num_ws))
    chosen = [(i, name, mod) for i, name, mod in affines_by_style_input(G)
              if start <= i < stop and (include_torgb or ".torgb." not in name)]
    if not chosen:
        raise ValueError(f"SeFa: no {'modulated' if include_torgb else 'conv'} layer reads style inputs "
                         f"{start}..{stop - 1} (num_ws={G.num_ws})")
    return chosen


def _factorise(G: torch.nn.Module, num_components: int, layers: tuple[int, int] | None, include_torgb: bool,
               num_samples: int, seed: int) -> dict[str, torch.Tensor]:
    rows = torch.cat([mod.weight.detach().double().cpu() for _, _, mod in _selected(G, layers, include_torgb)])
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    evals, evecs = torch.linalg.eigh(rows.T @ rows)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    comps = fix_signs(evecs[:, :num_components].T.contiguous()).float()
    w = sample_w(G, num_samples, seed=seed).cpu()
    return {"components": comps, "eigenvalues": evals[:num_components].float(), "stdev": stdev_along(w, comps)}


def sefa_directions(G: torch.nn.Module, num_components: int = 16, layers: tuple[int, int] | None = None,
                    include_torgb: bool = False, num_samples: int = 10_000, seed: int = 0,
                    cache: bool = True, calibrate: bool = True) -> list[Direction]:
    """The ``num_components`` leading SeFa directions for the style inputs in ``layers``.

    Args:
        G: generator with NVIDIA-layout synthesis (``blocks()``, ``convN.affine``).
        layers: ``(start, stop)`` over ``num_ws``; None: all. The returned directions carry
            the same range (an edit found for layers 0..3 is applied to layers 0..3).
        include_torgb: also factorise the ToRGB affines.
        num_samples, seed: W samples for the stdev along each direction (its ``scale`` when
            ``calibrate=False``).
        calibrate: set each ``scale`` with :func:`pti.editing.strength.calibrated` (1 unit =
            a 4/255 mean image change, the convention of every computed direction).

    Returns:
        Directions named ``sefa_{k}`` by decreasing eigenvalue; the vectors are orthonormal.
    """
    w_dim = int(G.w_dim)
    if not 1 <= num_components <= w_dim:
        raise ValueError(f"num_components must be in 1..{w_dim} (w_dim), got {num_components}")
    chosen = _selected(G, layers, include_torgb)
    params = {"num_components": num_components, "layers": list(layers) if layers else None,
              "include_torgb": include_torgb, "num_samples": num_samples, "seed": seed}
    fingerprint = weights_fingerprint(G, prefixes=("mapping.", *(name + "." for _, name, _ in chosen)))
    result = cached(fingerprint, "sefa", params,
                    lambda: _factorise(G, num_components, layers, include_torgb, num_samples, seed), enabled=cache)
    where = f"layers {layers[0]}..{layers[1] - 1}" if layers else "all layers"
    directions = [Direction(vector=result["components"][k], layers=layers, name=f"sefa_{k}",
                      source=f"SeFa on {where}{' incl. ToRGB' if include_torgb else ''}, component {k} "
                             f"(eigenvalue {float(result['eigenvalues'][k]):.4g})",
                      scale=float(result["stdev"][k]))
                  for k in range(num_components)]
    if not calibrate:
        return directions
    from pti.editing.strength import calibrated

    return calibrated(G, directions, cache=cache)
