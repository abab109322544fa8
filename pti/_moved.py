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
import pkgutil
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

#: names that moved out of a module that is still there: (module, name) -> the module that defines it now
MOVED_NAMES: dict[tuple[str, str], str] = {
    ("pti.zoo", "inversion_defaults"): "pti.core.config",
}

_IMPORTLIB_DIR = os.path.dirname(importlib.__file__)
_PKGUTIL_FILE = pkgutil.__file__  # pkgutil.resolve_name (mock.patch("pti.losses.x")) imports on the caller's behalf


def _stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised in ``create_module`` at the line that imported the old
    path. :func:`warnings.warn` itself skips importlib's ``_bootstrap`` frames; the frames of
    :func:`importlib.import_module` and :func:`pkgutil.resolve_name` (when the import went through them) are
    skipped here."""
    level, frame = 1, sys._getframe(2)  # level 1 is create_module, sys._getframe(2) its caller
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            level += 1
            if os.path.dirname(name) != _IMPORTLIB_DIR and name != _PKGUTIL_FILE:
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
        new = importlib.util.find_spec(MOVED[fullname])  # the new module's file, for runpy's __file__
        return importlib.util.spec_from_loader(fullname, self, origin=new.origin if new is not None else None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import from {new} (the old path goes away next round)",
                      DeprecationWarning, stacklevel=_stacklevel())
        module = importlib.import_module(new)
        self._specs[module.__name__] = module.__spec__  # the import system overwrites __spec__ with the old path's; restored below
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__name__)  # the module stays what it is: its own name, file and spec

    def get_code(self, fullname: str) -> types.CodeType | None:
        """``python -m <old path>`` (runpy asks the loader for the code): the new module's code, with the warning."""
        new = MOVED[fullname]
        warnings.warn(f"{fullname} moved to {new}; run python -m {new} (the old path goes away next round)",
                      DeprecationWarning, stacklevel=2)
        spec = importlib.util.find_spec(new)
        return spec.loader.get_code(new) if spec is not None and spec.loader is not None else None


def moved_name(module: str, name: str) -> object:
    """For a module's ``__getattr__``: a name of :data:`MOVED_NAMES` from where it lives now, with a
    :class:`DeprecationWarning` on the line that asked for it; :class:`AttributeError` for any other name."""
    new = MOVED_NAMES.get((module, name))
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} moved to {new}.{name}; import it from {new} (the old path goes away next round)",
                  DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(new), name)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
