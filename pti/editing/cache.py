"""On-disk cache for directions computed from a generator (GANSpace, SeFa).

Files live under ``$PTI_CACHE_DIR/directions`` (default ``~/.cache/pti/directions``) and
are named ``<fingerprint[:16]>/<method>-<params hash>.pt``. The fingerprint is the sha256
of the weights the method reads (:func:`pti.stylegan2.checkpoints.weights_fingerprint`), not of a file: the same
generator saved as ``.pkl`` or ``.safetensors`` shares its cache, and a PTI-tuned copy
(whose mapping network is unchanged) reuses the GANSpace basis of its original.
Entries are written atomically and read with ``torch.load(weights_only=True)``; an
unreadable entry is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from pti.io_utils import atomic_torch_save

CACHE_ENV = "PTI_CACHE_DIR"


def cache_root() -> Path:
    """``$PTI_CACHE_DIR/directions``, or ``~/.cache/pti/directions``."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "pti"
    return root / "directions"


def cache_path(fingerprint: str, method: str, params: dict[str, Any]) -> Path:
    """Where the entry for ``method`` with ``params`` (JSON-serialisable) on these weights lives."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_root() / fingerprint[:16] / f"{method}-{key}.pt"


def cached(fingerprint: str, method: str, params: dict[str, Any],
           compute: Callable[[], dict[str, Any]], enabled: bool = True) -> dict[str, Any]:
    """Return the cached result for (weights, method, params), computing and storing it if absent.

    ``compute`` returns a dict of tensors/plain values; ``enabled=False`` bypasses the cache.
    """
    if not enabled:
        return compute()
    path = cache_path(fingerprint, method, params)
    if path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(data, dict) and data.get("params") == json.loads(json.dumps(params, default=str)):
                return data["result"]
            warnings.warn(f"{path}: cache entry does not match its key; recomputing", stacklevel=2)
        except Exception as exc:  # a truncated or foreign file: recompute rather than fail
            warnings.warn(f"{path}: unreadable cache entry ({exc}); recomputing", stacklevel=2)
    result = compute()
    try:
        atomic_torch_save({"method": method, "fingerprint": fingerprint,
                           "params": json.loads(json.dumps(params, default=str)), "result": result}, path)
    except OSError as exc:  # a read-only home must not break editing
        warnings.warn(f"could not write the direction cache {path} ({exc}); set {CACHE_ENV} to a writable "
                      "folder to keep results between runs", stacklevel=2)
    return result
