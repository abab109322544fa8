"""NVIDIA StyleGAN2-ADA network pickles (``*.pkl``), read without running code from the file.

A network pickle is a pickled dict ``{'G', 'D', 'G_ema', 'augment_pipe',
'training_set_kwargs'}``. Each network is a *persistence record*: a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta`` holds the
Python source of the defining module (``module_src``), the class name and the module's
``__dict__`` (``state``). Ordinary unpickling executes ``module_src``; here it is kept as
text and never run. A restricted unpickler resolves only the globals in
:data:`ALLOWED_GLOBALS`, each mapped to a small function of ours that validates its
arguments; everything else is refused with :class:`UnsafeCheckpointError`.

Our :class:`~pti.stylegan2.networks.Generator` is then built from ``G_ema``'s
``_init_kwargs`` and filled by walking ``_parameters``/``_buffers`` through ``_modules``
(NVIDIA's module names equal ours, so the keys load with ``strict=True``).
"""
from __future__ import annotations

import inspect
import io
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pti.stylegan2.errors import CheckpointError, UnsafeCheckpointError
from pti.stylegan2.networks import Generator

FORMAT_NAME = "nvidia-pkl"
FORMAT_DESCRIPTION = "NVIDIA StyleGAN2-ADA network pickle (.pkl with 'G_ema')"
# Largest tensor (in elements) a record may describe: far above any StyleGAN2 weight.
_MAX_TENSOR_ELEMENTS = 1 << 31


class PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` stands for: the record, not the object.

    Attributes: ``class_name`` (e.g. 'Generator'), ``version`` (6 in StyleGAN2-ADA),
    ``module_src`` (source text, never executed) and ``state`` (the module ``__dict__``:
    ``_parameters``, ``_buffers``, ``_non_persistent_buffers_set``, ``_modules``,
    ``_init_args``, ``_init_kwargs``, ...).
    """

    __slots__ = ("class_name", "version", "module_src", "state")

    def __init__(self, class_name: str, version: int, module_src: str, state: dict[str, Any]) -> None:
        self.class_name, self.version, self.module_src, self.state = class_name, version, module_src, state

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError("refused: the pickle tries to set attributes on a persistence record")

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r}, version={self.version})"


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError("a persistence record is not of type 'class' (only network classes are supported)")
    class_name, module_src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    version = meta.get("version")
    if not isinstance(class_name, str) or not isinstance(module_src, str) or not isinstance(version, int):
        raise CheckpointError("a persistence record lacks class_name/module_src/version")
    if not isinstance(state, dict):
        raise CheckpointError(f"the persistence record of {class_name} has no state dict")
    return PersistentRecord(class_name, version, module_src, state)


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""

    def __setstate__(self, state: Any) -> None:
        if state is not None and not isinstance(state, dict):
            raise CheckpointError("an EasyDict carries a non-dict state")


_NUMPY_DTYPE_NAME = re.compile(r"(b1|[iu][1248]|f[248]|c(8|16))")


class _NumpyDType:
    """Stand-in for a pickled ``numpy.dtype`` of a plain number type (object dtypes are refused)."""

    def __init__(self, name: str) -> None:
        self.name, self.byteorder = name, "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "=", "|"):
            self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        dtype = np.dtype(self.name)
        return dtype.newbyteorder(self.byteorder) if self.byteorder in ("<", ">") else dtype


def _numpy_dtype(name: Any, align: Any = False, copy: Any = True) -> _NumpyDType:
    if not isinstance(name, str) or not _NUMPY_DTYPE_NAME.fullmatch(name):
        raise UnsafeCheckpointError(f"refused numpy dtype {name!r}: only plain number dtypes are allowed")
    return _NumpyDType(name)


def _numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise UnsafeCheckpointError("refused numpy scalar: it must be a plain number dtype and raw bytes")
    np_dtype = dtype.to_numpy()
    if len(data) != np_dtype.itemsize:
        raise CheckpointError(f"a numpy {np_dtype} scalar has {len(data)} bytes, expected {np_dtype.itemsize}")
    return np.frombuffer(data, dtype=np_dtype, count=1)[0]


def _load_from_bytes(data: Any) -> torch.TypedStorage | torch.UntypedStorage:
    """torch's own ``_load_from_bytes`` runs ``torch.load(weights_only=False)``; we never do."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("a tensor storage payload is not bytes")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(
            f"refused an embedded tensor payload (torch.storage._load_from_bytes): torch's weights-only "
            f"loader rejected it ({first_line})") from None
    except Exception as exc:  # damaged bytes: any error of torch's reader
        raise CheckpointError(f"an embedded tensor storage could not be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError(
            f"refused an embedded tensor payload: it holds a {type(storage).__name__}, not a tensor storage")
    return storage


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list, torch.Size)) and all(isinstance(v, int) and v >= 0 for v in value)


def _check_no_hooks(hooks: Any) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and len(hooks) == 0):
        raise UnsafeCheckpointError("refused a tensor with serialized backward hooks")


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError(f"refused a tensor built on a {type(storage).__name__} instead of a storage")
    if not (isinstance(storage_offset, int) and storage_offset >= 0 and _is_int_tuple(size)
            and _is_int_tuple(stride) and len(size) == len(stride) and isinstance(requires_grad, bool)):
        raise CheckpointError("a tensor record has an invalid offset/size/stride")
    _check_no_hooks(backward_hooks)
    if isinstance(storage, torch.TypedStorage):
        dtype, untyped = storage.dtype, storage._untyped_storage
    else:
        dtype, untyped = torch.uint8, storage
    numel = untyped.nbytes() // torch.empty((), dtype=dtype).element_size()
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(n > 0 for n in size) else -1
    if last >= numel or int(np.prod(size, dtype=np.float64)) > _MAX_TENSOR_ELEMENTS:
        raise CheckpointError(f"a tensor record of size {tuple(size)} reaches beyond its storage ({numel} elements)")
    tensor = torch.empty((0,), dtype=dtype).set_(untyped, storage_offset, tuple(size), tuple(stride))
    tensor.requires_grad_(requires_grad and tensor.is_floating_point())
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None) -> torch.nn.Parameter:
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise CheckpointError("a parameter record does not hold a tensor")
    _check_no_hooks(backward_hooks)
    return torch.nn.Parameter(data.detach(), requires_grad=requires_grad)


# The exact globals a genuine StyleGAN2-ADA network pickle needs (FORMATS.md), each mapped to
# a validating function of ours. Nothing else is ever resolved.
_GLOBAL_HANDLERS: dict[str, Callable[..., Any] | type] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "dnnlib.util.EasyDict": _EasyDict,
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_from_bytes,
    "numpy.dtype": _numpy_dtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "builtins.set": set,
}
ALLOWED_GLOBALS: frozenset[str] = frozenset(_GLOBAL_HANDLERS)


#: modules of NVIDIA's TensorFlow StyleGAN/StyleGAN2 code (``dnnlib.tflib.network.Network`` objects)
TENSORFLOW_MODULE_PREFIX = "dnnlib.tflib"


class TensorFlowPickleError(CheckpointError):
    """The file is a TensorFlow StyleGAN/StyleGAN2 network pickle (official NVIDIA, not malicious): it
    must be converted to the PyTorch format first; the message says how."""


def tensorflow_pickle_message(path: str | Path, key: str) -> str:
    """One line saying that ``path`` is a TensorFlow-era pickle (it names ``key``) and how to convert it."""
    return (f"{path}: a TensorFlow StyleGAN/StyleGAN2 network pickle (it refers to {key!r}), which pti does not "
            "read directly. Convert it once with NVIDIA's stylegan2-ada-pytorch (PyTorch only, no TensorFlow "
            "needed): `python legacy.py --source=" f"{path} --dest=converted.pkl` in a clone of "
            "github.com/NVlabs/stylegan2-ada-pytorch (it converts TensorFlow StyleGAN2 and StyleGAN2-ADA pickles, "
            "not those of the first StyleGAN), then give converted.pkl to pti (e.g. `pti info converted.pkl`); "
            "nothing from this file was executed")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and never imports a module.

    Raises :class:`UnsafeCheckpointError` for any other global, except the globals of NVIDIA's
    TensorFlow code (module ``dnnlib.tflib...``), which raise :class:`TensorFlowPickleError`.
    """

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if module == TENSORFLOW_MODULE_PREFIX or module.startswith(TENSORFLOW_MODULE_PREFIX + "."):
            raise TensorFlowPickleError(key)
        if key not in _GLOBAL_HANDLERS:
            raise UnsafeCheckpointError(
                f"refused global {key!r}: a StyleGAN2-ADA network pickle never needs it "
                f"(allowed: {', '.join(sorted(ALLOWED_GLOBALS))})")
        return _GLOBAL_HANDLERS[key]

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the pickle uses persistent ids (a torch.save file?), which network pickles do not")


def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; networks come back as :class:`PersistentRecord`."""
    path = Path(path)
    expected = f"expected a {FORMAT_DESCRIPTION}"
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except TensorFlowPickleError as exc:
        raise TensorFlowPickleError(tensorflow_pickle_message(path, str(exc))) from None
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{path}: {exc}. Nothing from the file was executed; do not use this file "
                                    f"unless you trust its source and know why it needs this") from None
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}; {expected}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({exc.strerror or exc}); {expected}") from None
    except Exception as exc:  # truncated or not a pickle: any error of the unpickler
        raise CheckpointError(f"{path}: damaged, truncated or not a pickle ({type(exc).__name__}: {exc}); "
                              f"{expected}; re-download it") from None
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentRecord):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: no 'G_ema' network in the pickle (found {found}); {expected}")
    return data


def to_plain(value: Any) -> Any:
    """EasyDicts/OrderedDicts/tuples inside init kwargs -> plain dicts and lists (JSON-friendly)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def record_init_kwargs(record: PersistentRecord) -> dict[str, Any]:
    """Constructor kwargs of a ``Generator`` record (positional ``_init_args`` named by our signature)."""
    state = record.state
    kwargs = to_plain(state.get("_init_kwargs") or {})
    args = state.get("_init_args") or ()
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"the {record.class_name} record has malformed _init_args/_init_kwargs")
    names = [p for p in inspect.signature(Generator.__init__).parameters if p != "self"]
    if len(args) > 5:
        raise CheckpointError(f"the {record.class_name} record has {len(args)} positional init args (at most 5)")
    kwargs.update({name: to_plain(value) for name, value in zip(names, args)})
    return kwargs


def record_state_dict(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten persistent ``_parameters``/``_buffers`` through nested ``_modules`` into state-dict keys."""
    state = record.state
    out: dict[str, torch.Tensor] = {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for table in ("_parameters", "_buffers"):
        for name, tensor in (state.get(table) or {}).items():
            if tensor is None or (table == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} in {record.class_name} is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointError(f"submodule {prefix}{name} is a {type(child).__name__}, not a persistence record")
        out.update(record_state_dict(child, prefix=f"{prefix}{name}."))
    return out


def generator_from_record(record: PersistentRecord, source: str = "<record>") -> Generator:
    """Build our Generator from a ``G_ema`` record and copy its tensors (strict)."""
    if record.class_name != "Generator":
        raise CheckpointError(f"{source}: G_ema is a {record.class_name!r}, expected a StyleGAN2-ADA 'Generator'")
    kwargs = record_init_kwargs(record)
    try:
        G = Generator(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: cannot build a StyleGAN2 Generator from the pickle's init kwargs "
                              f"{kwargs} ({exc}); is it a StyleGAN3 or other non-StyleGAN2 pickle?") from None
    load_state_dict_strict(G, record_state_dict(record), source)
    return G.eval()


def load_state_dict_strict(G: Generator, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``G.load_state_dict(strict=True)`` with a readable error naming ``source``."""
    ours = G.state_dict()
    missing = sorted(set(ours) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(ours))
    wrong_shape = sorted(k for k in set(ours) & set(state_dict) if tuple(ours[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or wrong_shape:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = [f"{label}: {few(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
        raise CheckpointError(f"{source}: the weights do not fit a StyleGAN2 Generator ({'; '.join(parts)})")
    G.load_state_dict(state_dict, strict=True)


def load_nvidia_generator(path: str | Path) -> Generator:
    """``G_ema`` of an NVIDIA network pickle as our Generator (eval mode, CPU). ``D`` etc. are not built."""
    return generator_from_record(read_network_pickle(path)["G_ema"], source=str(path))
