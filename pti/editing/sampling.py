"""Random W codes from a generator's mapping network (the samples GANSpace, SeFa's
scales and InterFaceGAN fitting are computed from)."""
from __future__ import annotations

import torch


@torch.no_grad()
def sample_w(G: torch.nn.Module, num_samples: int, seed: int, truncation_psi: float = 1.0,
             batch_size: int = 4096, device: torch.device | str | None = None) -> torch.Tensor:
    """``num_samples`` mapped codes ``[num_samples, w_dim]`` (float32, on ``device``).

    z is drawn from a CPU ``torch.Generator`` seeded with ``seed`` in batches of
    ``batch_size``, so the result does not depend on the device. Conditional generators
    (``c_dim > 0``) are refused: a direction would depend on the label.
    """
    if getattr(G, "c_dim", 0):
        raise ValueError(f"conditional generators (c_dim={G.c_dim}) are not supported for W sampling; "
                         "use an unconditional checkpoint")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        ws = G.mapping(z, None, truncation_psi=truncation_psi)
        out.append((ws[:, 0] if ws.ndim == 3 else ws).float())
    return torch.cat(out)


def stdev_along(w: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the projections of codes ``w [N, w_dim]`` onto each row of
    ``vectors [K, w_dim]`` (unit rows) -> ``[K]``."""
    return (w.double() @ vectors.double().T).std(dim=0).float()
