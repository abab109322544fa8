"""StyleCLIP latent optimisation (Patashnik et al. 2021, Sec. 4), the third text-driven method.

Adam on the W+ code ``w`` (initialised at the pivot ``w_p``, a W pivot broadcast to W+) minimises

    L(w) = D_CLIP(G(w), t) + λ_L2 · ‖w − w_p‖²,

where ``D_CLIP = 1 − cos(E_I(G(w)), E_T(t))`` (StyleCLIP's ``1 − logits/100``) and ``t`` the text prompt. The
learning rate follows StyleCLIP's schedule: linear warm-up over the first 5 % of the steps and a cosine
ramp-down over the last 25 %. StyleCLIP's edit-mode defaults: 300 steps, lr 0.1, λ_L2 = 0.008. The
paper adds an identity loss for real faces, which is not used here (ArcFace weights are not bundled).
Works on a tuned generator as on the original: only ``w`` is optimised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass(frozen=True)
class OptimizeConfig:
    """Hyperparameters of :func:`optimize_latent` (defaults: StyleCLIP's ``run_optimization.py`` edit mode)."""

    steps: int = 300
    lr: float = 0.1
    l2_lambda: float = 0.008
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise_mode: str = "const"


@dataclass
class OptimizeResult:
    """The optimised W+ code ``w [N, num_ws, w_dim]`` and per-step losses (``clip``, ``l2``: floats, mean over N)."""

    w: torch.Tensor
    clip_losses: list[float] = field(default_factory=list)
    l2_losses: list[float] = field(default_factory=list)


def learning_rate(t: float, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleCLIP's schedule at progress ``t`` in [0, 1]: warm-up over ``rampup``, cosine ramp-down over ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def clip_distance(clip: "Clip", images: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:  # noqa: F821
    """``1 − cos`` between each image's CLIP embedding and the unit text embedding ``[D]``: ``[N]``, in [0, 2]."""
    return 1 - clip.encode_images(images) @ text_embedding.to(clip.device)


def optimize_latent(G: torch.nn.Module, w_pivot: torch.Tensor, clip: "Clip", text: str,  # noqa: F821
                    cfg: OptimizeConfig = OptimizeConfig(), noise: Sequence[torch.Tensor] | None = None,
                    progress: bool = False) -> OptimizeResult:
    """Optimise a W+ code towards ``text`` from ``w_pivot`` (``[N, w_dim]`` or ``[N, num_ws, w_dim]``).

    ``G``'s weights are not changed (gradients flow to ``w`` only). ``noise``: the pivot's noise maps, if any.
    Raises ``ValueError`` on bad shapes or a non-finite loss (a diverging run is a failure, not a result).
    """
    from pti.progress import progress_bar

    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    if w_pivot.ndim == 2:
        w_pivot = w_pivot[:, None, :].expand(-1, num_ws, -1)
    if w_pivot.ndim != 3 or tuple(w_pivot.shape[1:]) != (num_ws, w_dim):
        raise ValueError(f"w_pivot must be [N, {w_dim}] or [N, {num_ws}, {w_dim}], got {tuple(w_pivot.shape)}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    target = clip.encode_prompt(text, ["{}"])  # StyleCLIP's optimisation embeds the bare prompt
    w_p = w_pivot.detach().float()
    w = w_p.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=cfg.lr)
    kwargs = {"noise_mode": cfg.noise_mode}
    if noise is not None:
        kwargs["noise"] = list(noise)
    params = [p for p in G.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    result = OptimizeResult(w=w_p)
    try:
        for step in progress_bar(range(cfg.steps), desc=f"StyleCLIP optimisation {text!r}", disable=not progress):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step / cfg.steps, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
            images = G.synthesis(w, **kwargs)
            d_clip = clip_distance(clip, images, target).mean()
            l2 = (w - w_p).square().sum(dim=(1, 2)).mean()
            loss = d_clip + cfg.l2_lambda * l2
            if not torch.isfinite(loss):
                raise ValueError(f"StyleCLIP optimisation diverged at step {step} (loss {float(loss)}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            result.clip_losses.append(float(d_clip.detach()))
            result.l2_losses.append(float(l2.detach()))
    finally:
        for p in params:
            p.requires_grad_(True)
    result.w = w.detach()
    return result


__all__ = ["OptimizeConfig", "OptimizeResult", "optimize_latent", "learning_rate", "clip_distance"]
