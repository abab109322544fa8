"""Choosing between the CUDA kernels and the pure-PyTorch reference.

The CUDA extension is compiled once per process on first use with
``torch.utils.cpp_extension.load`` (ninja, cached under ``$PTI_EXTENSIONS_DIR`` or
torch's default extension cache). A failed build is remembered: it is not retried on
every call, and ``impl='auto'`` warns once and uses the reference.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch

Impl = Literal["auto", "cuda", "ref"]

_CSRC = Path(__file__).parent / "csrc"
_plugin: ModuleType | None = None
_build_error: str | None = None
_warned = False


def build_extension(verbose: bool = False) -> ModuleType:
    """Compile (or load from cache) the CUDA kernels; raises ``RuntimeError`` on failure."""
    global _plugin, _build_error
    if _plugin is not None:
        return _plugin
    if _build_error is not None:
        raise RuntimeError(_build_error)
    try:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available")
        sources = sorted(str(p) for p in _CSRC.glob("*.cpp")) + sorted(str(p) for p in _CSRC.glob("*.cu"))
        if not sources:
            raise RuntimeError(f"no CUDA sources found in {_CSRC}")
        from torch.utils.cpp_extension import load

        build_dir = os.environ.get("PTI_EXTENSIONS_DIR")
        if build_dir:
            Path(build_dir).mkdir(parents=True, exist_ok=True)
        _plugin = load(
            name="pti_stylegan2_ops",
            sources=sources,
            extra_cuda_cflags=["--use_fast_math", "-O3"],
            build_directory=build_dir,
            verbose=verbose,
        )
        return _plugin
    except Exception as exc:  # remember the failure, never retry in this process
        _build_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
        raise RuntimeError(_build_error) from exc


def use_cuda(impl: Impl, x: torch.Tensor) -> bool:
    """Whether an op called with ``impl`` on ``x`` should run the CUDA kernel.

    ``impl='cuda'`` insists (raises if the kernels cannot be had); ``'ref'`` never uses
    them; ``'auto'`` uses them for CUDA tensors when they build, else warns once.
    """
    global _warned
    if impl not in ("auto", "cuda", "ref"):
        raise ValueError(f"impl must be 'auto', 'cuda' or 'ref', got {impl!r}")
    if impl == "ref":
        return False
    if impl == "cuda":
        if x.device.type != "cuda":
            raise ValueError(f"impl='cuda' needs CUDA tensors, got a tensor on {x.device}")
        build_extension()
        return True
    if x.device.type != "cuda":
        return False
    try:
        build_extension()
        return True
    except RuntimeError as exc:
        if not _warned:
            warnings.warn(f"pti: CUDA ops unavailable ({exc}); using the pure-PyTorch reference ops", stacklevel=3)
            _warned = True
        return False
