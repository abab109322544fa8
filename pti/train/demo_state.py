"""Training state files of ``pti train-demo`` (:mod:`pti.train.demo`): compact copies, loading, resuming, export.

States are plain tensors and values, written with :func:`pti.io_utils.atomic_torch_save` and read with
``torch.load(weights_only=True)`` (no code from the file runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pti.stylegan2 import Generator


def compact_state(state: dict[str, Any]) -> dict[str, Any]:
    """A smaller resume state for committing (about 3/4 of :meth:`DemoTrainer.state_dict`).

    ``G_ema`` stays float32 (it is the product); the training copies of G and the D heads
    and Adam's first moments are stored as float16, the second moments (down to ~1e-12,
    below float16's range) as bfloat16. :meth:`DemoTrainer.load_state_dict` casts them
    back. Resuming from it continues the run, not bit-identically.
    """
    def half(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: (v.to(torch.float16) if v.is_floating_point() and v.ndim > 0 else v) for k, v in sd.items()}

    def shrink(opt_state: dict[str, Any]) -> dict[str, Any]:
        dtypes = {"exp_avg": torch.float16, "exp_avg_sq": torch.bfloat16}
        out = {"param_groups": opt_state["param_groups"], "state": {}}
        for k, s in opt_state["state"].items():
            out["state"][k] = {n: (v.to(dtypes[n]) if n in dtypes else v) for n, v in s.items()}
        return out

    return {**state, "G": half(state["G"]), "D": half(state["D"]),
            "G_opt": shrink(state["G_opt"]), "D_opt": shrink(state["D_opt"])}


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a training state written by this module (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state here; start without --resume or pass the state.pt "
                                "of an earlier run")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "G" not in state or "config" not in state:
        raise ValueError(f"{path}: not a pti train-demo state (expected keys 'config', 'G', ...)")
    return state


def find_resume_state(out_dir: Path, resume: str, *fallbacks: Path | None) -> Path | None:
    """The state to resume from, or None to start afresh.

    ``resume``: 'none' (None), a path (returned as given; :func:`load_state` raises if it is
    missing), or 'auto': whichever of ``out_dir/state.pt`` and ``fallbacks`` exists and has seen
    the most images (None entries and missing files are skipped; None when none exists).
    """
    if resume == "none":
        return None
    if resume != "auto":
        return Path(resume)
    candidates = [p for p in (out_dir / "state.pt", *fallbacks) if p is not None and p.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(load_state(p)["nimg"]))


def export_generator(G_ema: Generator, path: Path) -> str:
    """Write ``G_ema`` with ``pti.stylegan2.checkpoints.save``; returns a log message (never raises ImportError)."""
    try:
        from pti.stylegan2.checkpoints import save  # written by another part of the project
    except ImportError as exc:
        return f"export skipped: pti.stylegan2.checkpoints.save not importable yet ({exc})"
    G_cpu = G_ema.to("cpu")
    save(G_cpu, path)
    G_ema.to(next(G_ema.parameters()).device)
    return f"exported G_ema to {path} ({path.stat().st_size / 1e6:.1f} MB)"
