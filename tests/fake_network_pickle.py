"""Test fixtures: NVIDIA-style StyleGAN2-ADA network pickles built from our own Generator.

The pickle is made the way NVIDIA's training code makes it: every network is a persistence
record (``torch_utils.persistence._reconstruct_persistent_obj(meta)``), init kwargs are
``dnnlib.util.EasyDict``s, tensors are pickled by torch itself. The two NVIDIA modules are
faked in ``sys.modules`` only while pickling and removed afterwards, so loading can only
succeed through pti's restricted unpickler.
"""
from __future__ import annotations

import contextlib
import pickle
import pickletools
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

# Source text stored in every record; it must never run (it would raise).
NEVER_RUN_SOURCE = "raise RuntimeError('module_src of a network pickle was executed')\n"
_FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")


@contextlib.contextmanager
def fake_nvidia_modules() -> Iterator[types.SimpleNamespace]:
    """Put stand-ins for ``torch_utils.persistence`` and ``dnnlib.util`` in sys.modules, then remove them."""
    assert not any(name in sys.modules for name in _FAKE_MODULES), "real NVIDIA modules are importable here"
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta: Any) -> Any:
        raise AssertionError("the test's stand-in persistence function must never be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    easy_dict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = easy_dict
    modules = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
               "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    sys.modules.update(modules)
    try:
        yield types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=easy_dict)
    finally:
        for name in modules:
            sys.modules.pop(name, None)


class PersistentStandIn:
    """Pickles exactly like a StyleGAN2-ADA persistent object: a call of the persistence function."""

    def __init__(self, reconstruct: Any, meta: dict[str, Any]) -> None:
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return self.reconstruct, (self.meta,)


def _easy(fake: types.SimpleNamespace, value: Any) -> Any:
    if isinstance(value, dict):
        return fake.EasyDict({k: _easy(fake, v) for k, v in value.items()})
    return value


def module_record(fake: types.SimpleNamespace, module: torch.nn.Module, module_src: str = NEVER_RUN_SOURCE,
                  init_kwargs: dict[str, Any] | None = None) -> PersistentStandIn:
    """A persistence record of ``module``: its ``__dict__`` with nested records for submodules."""
    state = dict(module.__dict__)
    state["_modules"] = OrderedDict(
        (name, None if child is None else module_record(fake, child, module_src))
        for name, child in module._modules.items())
    state["_init_args"] = ()
    state["_init_kwargs"] = _easy(fake, init_kwargs or {})
    for key in ("weight_gain", "bias_gain", "act_gain"):  # NVIDIA computes these with numpy
        if isinstance(state.get(key), float):
            state[key] = np.float32(state[key])
    meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)
    return PersistentStandIn(fake.reconstruct, meta)


def network_pickle_bytes(G: torch.nn.Module, protocol: int = 4, module_src: str = NEVER_RUN_SOURCE,
                         g_ema_record: Any = None) -> bytes:
    """``pickle.dumps`` of ``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}`` like a training snapshot."""
    with fake_nvidia_modules() as fake:
        record = g_ema_record(fake) if g_ema_record is not None else \
            module_record(fake, G, module_src, init_kwargs=G.init_kwargs)
        data = {"G": record, "D": None, "G_ema": record, "augment_pipe": None,
                "training_set_kwargs": _easy(fake, {"path": "ffhq.zip", "resolution": G.img_resolution})}
        return pickle.dumps(data, protocol=protocol)


def write_network_pickle(G: torch.nn.Module, path: Path, **kwargs: Any) -> Path:
    path.write_bytes(network_pickle_bytes(G, **kwargs))
    return path


def pickle_globals(data: bytes) -> set[str]:
    """Every ``module.name`` global a pickle refers to, read with pickletools (nothing is unpickled)."""
    memo: dict[int, Any] = {}
    pushed: list[Any] = []
    last: Any = None
    found: set[str] = set()
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            last = arg
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            last = memo.get(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = last
            continue
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = last
            continue
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
            last = None
        elif op.name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
            last = None
        else:
            last = None
        pushed.append(last)
    return found
