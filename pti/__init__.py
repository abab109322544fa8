"""pti: Pivotal Tuning Inversion (Roich et al., ACM TOG 2022) for StyleGAN2.

Public names are re-exported here lazily so that ``import pti`` stays fast and does not
import torch until a name that needs it is used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from pti import _moved  # noqa: E402  old module paths (pti.projector, pti.runner, ...) warn for one round

_moved.install()

_LAZY = {
    # name: module that defines it
    "Generator": "pti.stylegan2",
    "load_generator": "pti.stylegan2",
    "save_generator": "pti.stylegan2",
    "Pivot": "pti.core.pivot",
    "load_pivot": "pti.core.pivot",
    "InversionConfig": "pti.core.config",
    "TuningConfig": "pti.core.config",
    "LocalityConfig": "pti.core.config",
    "project": "pti.core.projector",
    "pivotal_tune": "pti.core.tuning",
    "ExecutionConfig": "pti.fast",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        target = {"load_generator": "load", "save_generator": "save"}.get(name, name)
        return getattr(module, target)
    raise AttributeError(f"module 'pti' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
