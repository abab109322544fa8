"""GANSpace (Härkönen et al., NeurIPS 2020) for StyleGAN2: PCA of mapping-network outputs.

The principal axes of the distribution of ``w = mapping(z)`` are edit directions; an edit
is usually restricted to a range of style layers (the paper's ``(component, start, stop)``
triples, e.g. early layers for head pose, middle layers for expression).

The basis is deterministic for a given (generator weights, ``num_samples``, ``seed``):
z comes from a seeded CPU generator, the covariance is accumulated in float64 and each
component's sign is fixed so that its largest-magnitude entry is positive. It is cached
per mapping network (:mod:`pti.editing.cache`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pti.progress import progress_bar

from pti.editing.cache import cached
from pti.editing.direction import Direction
from pti.stylegan2.checkpoints import weights_fingerprint


@dataclass(frozen=True)
class PCABasis:
    """Principal axes of W.

    Attributes:
        components: ``[K, w_dim]`` float32, orthonormal rows, by decreasing variance.
        stdev: ``[K]`` standard deviation of W along each component.
        mean: ``[w_dim]`` mean of the samples.
        var_ratio: ``[K]`` fraction of the total variance each component explains.
        source: description of how the basis was computed.
    """

    components: torch.Tensor
    stdev: torch.Tensor
    mean: torch.Tensor
    var_ratio: torch.Tensor
    source: str = ""

    def directions(self, layers: tuple[int, int] | None = None, prefix: str = "ganspace") -> list[Direction]:
        """One :class:`Direction` per component (``scale`` = its stdev), named ``{prefix}_{k}``."""
        return [Direction(vector=self.components[k], layers=layers, name=f"{prefix}_{k}",
                          source=f"{self.source}, component {k}", scale=float(self.stdev[k]))
                for k in range(self.components.shape[0])]


def fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row of ``[K, D]`` so that its largest-magnitude entry is positive (a
    deterministic choice among the two signs an eigen-solver may return)."""
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, idx[:, None]))
    signs[signs == 0] = 1
    return vectors * signs


@torch.no_grad()
def _compute_basis(G: torch.nn.Module, num_components: int, num_samples: int, seed: int,
                   batch_size: int) -> dict[str, torch.Tensor]:
    if getattr(G, "c_dim", 0):
        raise ValueError(f"GANSpace needs an unconditional generator (this one has c_dim={G.c_dim})")
    device = next(G.parameters()).device
    w_dim = int(G.w_dim)
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(w_dim, dtype=torch.float64)
    outer = torch.zeros(w_dim, w_dim, dtype=torch.float64)
    for start in progress_bar(range(0, num_samples, batch_size), desc="GANSpace: sampling W", leave=False,
                              disable=num_samples <= 4 * batch_size):
        n = min(batch_size, num_samples - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        ws = G.mapping(z, None)
        w = (ws[:, 0] if ws.ndim == 3 else ws).double().cpu()
        total += w.sum(0)
        outer += w.T @ w
    mean = total / num_samples
    cov = (outer - num_samples * torch.outer(mean, mean)) / (num_samples - 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    comps = fix_signs(evecs[:, :num_components].T.contiguous())
    return {"components": comps.float(), "stdev": evals[:num_components].sqrt().float(),
            "mean": mean.float(), "var_ratio": (evals[:num_components] / evals.sum()).float()}


def ganspace_basis(G: torch.nn.Module, num_components: int = 32, num_samples: int = 100_000, seed: int = 0,
                   batch_size: int = 10_000, cache: bool = True) -> PCABasis:
    """PCA of ``num_samples`` mapping outputs (truncation 1).

    Args:
        G: unconditional generator with ``mapping``, ``z_dim``, ``w_dim``.
        num_components: K <= w_dim components to keep.
        num_samples: mapping samples (GANSpace used 10^6; 10^5 gives stable leading axes).
        seed: seed for z.
        cache: read/write the per-checkpoint cache.
    """
    w_dim = int(G.w_dim)
    if not 1 <= num_components <= w_dim:
        raise ValueError(f"num_components must be in 1..{w_dim} (w_dim), got {num_components}")
    if num_samples <= w_dim:
        raise ValueError(f"num_samples ({num_samples}) must exceed w_dim ({w_dim}) for a full-rank covariance")
    params = {"num_components": num_components, "num_samples": num_samples, "seed": seed,
              "batch_size": batch_size}
    fingerprint = weights_fingerprint(G, prefixes=("mapping.",))
    result = cached(fingerprint, "ganspace", params,
                    lambda: _compute_basis(G, num_components, num_samples, seed, batch_size), enabled=cache)
    return PCABasis(source=f"GANSpace PCA of {num_samples} W samples (seed {seed})", **result)


def ganspace_directions(G: torch.nn.Module, num_components: int = 32, layers: tuple[int, int] | None = None,
                        calibrate: bool = True, **kwargs) -> list[Direction]:
    """``ganspace_basis(G, num_components, **kwargs).directions(layers)``, with ``scale`` set by
    :func:`pti.editing.strength.calibrated` (1 unit = a 4/255 mean image change) unless
    ``calibrate=False`` (then ``scale`` is the stdev of W along the component, GANSpace's sigma)."""
    directions = ganspace_basis(G, num_components, **kwargs).directions(layers)
    if not calibrate:
        return directions
    from pti.editing.strength import calibrated

    return calibrated(G, directions, cache=kwargs.get("cache", True))
