"""Old module paths, kept for one round: ``import pti.projector`` still works and warns.

Round 3 gave each layer of ``../shared/DESIGN.md`` its own folder (issue 33): the paper's core went to
:mod:`pti.core`, the per-photo jobs to :mod:`pti.jobs`, the applications to :mod:`pti.apps`. Users' code
and notebooks written against the old paths keep working for one round: importing an old path returns the
new module itself (the same objects, so ``monkeypatch`` and ``isinstance`` see one module) and emits a
:class:`DeprecationWarning` that names the new path, attributed to the line that imported it.

One import hook here replaces a re-export file per old path. It is installed by ``pti/__init__.py`` and
answers only for the names in :data:`MOVED`. The old paths go away next round.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings

# old module path -> where it lives now
MOVED: dict[str, str] = {
    # the jobs layer (moved earlier in round 3)
    "pti.runner": "pti.jobs.runner",
    "pti.run_folder": "pti.jobs.folder",
    "pti.run_summary": "pti.jobs.summary",
    "pti.run_html": "pti.jobs.summary_html",
    "pti.distributed": "pti.jobs.distributed",
    "pti.compare": "pti.jobs.compare",
    "pti.compare_summary": "pti.jobs.compare_summary",
    "pti.multi_id": "pti.jobs.multi_id",
    # the paper's core: its types, losses and the two loops
    **{f"pti.{name}": f"pti.core.{name}" for name in (
        "config", "conditioning", "pivot", "divergence", "losses", "perceptual", "effnet_lite0",
        "projector", "tuning")},
    # the applications beside the commands
    **{f"pti.{name}": f"pti.apps.{name}" for name in ("demo", "report", "notebook_support")},
}


_IMPORTLIB_DIR = os.path.dirname(importlib.__file__)


def _stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised in ``create_module`` at the line that imported the old
    path. :func:`warnings.warn` itself skips importlib's ``_bootstrap`` frames; the frame of
    :func:`importlib.import_module` (when the import went through it) is skipped here."""
    level, frame = 1, sys._getframe(2)  # level 1 is create_module, sys._getframe(2) its caller
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            level += 1
            if os.path.dirname(name) != _IMPORTLIB_DIR:
                break
        frame = frame.f_back
    return level


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old path of :data:`MOVED` to the module that now holds it (a meta path finder that is
    also its own loader)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname: str, path: object = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import from {new} (the old path goes away next round)",
                      DeprecationWarning, stacklevel=_stacklevel())
        module = importlib.import_module(new)
        self._specs[module.__name__] = module.__spec__  # the import system overwrites __spec__ with the old path's; restored below
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__name__)  # the module stays what it is: its own name, file and spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
