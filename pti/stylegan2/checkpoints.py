"""Generator checkpoints: one :func:`load` for four formats, and :func:`save` for ours.

==============================  ==================  ==============================================
format name                     file                read by
==============================  ==================  ==============================================
``nvidia-pkl``                  ``*.pkl``           restricted unpickler (:mod:`.nvidia_pickle`),
                                                    never runs code from the file
``rosinality-pt``               ``*.pt``/``*.pth``  ``torch.load(weights_only=True)`` + key
                                                    mapping (:mod:`.rosinality`)
``pti-nvidia-state-dict-v1``    ``*.pt``/``*.pth``  ``torch.load(weights_only=True)``: ``pti export``'s
                                                    file for NVIDIA's code (:mod:`.export`), told
                                                    from a rosinality file by its ``format`` tag
``pti-safetensors``             ``*.safetensors``   safetensors; constructor kwargs as JSON in the
                                                    header metadata (written by :func:`save`)
==============================  ==================  ==============================================

A zoo name (``'demo'``, ``'ffhq'``; see :mod:`pti.zoo`) may be given instead of a path.
Every failure is a :class:`CheckpointError` naming the file and the expected format;
a file that asks for code to be run raises :class:`UnsafeCheckpointError`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pti import __version__
from pti.io_utils import atomic_path
from pti.stylegan2 import nvidia_pickle, rosinality
from pti.stylegan2.errors import CheckpointError, UnsafeCheckpointError
from pti.stylegan2.export import EXPORT_FORMAT, generator_from_export, is_export
from pti.stylegan2.networks import Generator
from pti.stylegan2.nvidia_pickle import load_state_dict_strict
from pti.stylegan2.rosinality import estimate_w_avg, from_rosinality_state_dict, to_rosinality_checkpoint, \
    to_rosinality_state_dict, torch_load_weights_only

NATIVE_FORMAT = "pti-safetensors"
NATIVE_FORMAT_VERSION = 1
_NATIVE_DESCRIPTION = "pti generator file (.safetensors written by pti.stylegan2.save)"
# Header metadata keys of the native format (safetensors metadata values are strings).
META_FORMAT = "pti_format"
META_FORMAT_VERSION = "pti_format_version"
META_INIT_KWARGS = "pti_init_kwargs"
META_PTI_VERSION = "pti_version"
_META_FORMAT_VALUE = "pti.stylegan2.Generator"
T = TypeVar("T")

__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "load", "load_with_format", "save", "detect_format",
    "to_rosinality_state_dict", "to_rosinality_checkpoint", "from_rosinality_state_dict", "estimate_w_avg",
    "NATIVE_FORMAT",
]


def weights_fingerprint(module: torch.nn.Module, prefixes: Iterable[str] = ("",)) -> str:
    """sha256 (64 hex characters) over the names, dtypes, shapes and bytes of ``module``'s state-dict
    entries whose name starts with one of ``prefixes`` (``""``: all of them), in sorted name order.

    Two generators with the same architecture but different weights get different fingerprints; the same
    weights on another device or in another file format get the same one. Stored as ``Pivot.generator``
    (the generator a pivot was inverted with), as ``mapping_sha256`` of fitted boundaries and as the key
    of the direction cache (:mod:`pti.editing.cache`; ``prefixes=("mapping.",)``: the weights GANSpace reads).
    """
    import hashlib

    prefixes = tuple(prefixes)
    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        if not name.startswith(prefixes):
            continue
        t = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def read_pti_safetensors(path: Path, format_value: str, what: str, description: str, parse: Callable[[Any], T],
                         version: int = NATIVE_FORMAT_VERSION) -> tuple[T, dict[str, torch.Tensor]]:
    """Read a file of pti's safetensors layout (see :func:`write_pti_safetensors`): ``(parse(the JSON of
    META_INIT_KWARGS), tensors)``, floating-point tensors as float32 (a float16 file is read back as float32).

    ``format_value``: the META_FORMAT the file must carry; ``what`` (``"generator"``, ``"encoder"``) and
    ``description`` (what a right file is) go into the errors. ``parse`` may raise ``ValueError``/``TypeError``
    for a config it refuses. Raises :class:`CheckpointError` (naming ``path``) for an unreadable or truncated
    file, missing or foreign metadata, a refused config, or a format version newer than ``version`` (the newest
    this pti reads).
    """
    expected = f"expected a {description}"
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: (t.float() if t.is_floating_point() else t) for key in f.keys()
                       for t in [f.get_tensor(key)]}
    except Exception as exc:  # truncated or not safetensors: any error of the safetensors reader
        raise CheckpointError(f"{path}: damaged, truncated or not a safetensors file ({type(exc).__name__}: {exc}); "
                              f"{expected}") from None
    if metadata.get(META_FORMAT) != format_value or META_INIT_KWARGS not in metadata:
        raise CheckpointError(f"{path}: a safetensors file without pti's {what} metadata "
                              f"({META_FORMAT}={format_value!r}, {META_INIT_KWARGS}); {expected}")
    try:
        found = int(metadata.get(META_FORMAT_VERSION, "0"))
        config = parse(json.loads(metadata[META_INIT_KWARGS]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable or invalid {what} metadata ({exc}); {expected}") from None
    if found > version:
        raise CheckpointError(f"{path}: written in pti {what} format version {found} (by pti "
                              f"{metadata.get(META_PTI_VERSION, '?')}); this pti reads up to version "
                              f"{version}: upgrade pti")
    return config, tensors


def write_pti_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor], format_value: str, what: str,
                          config: Any, version: int = NATIVE_FORMAT_VERSION) -> Path:
    """Write ``tensors`` (CPU, contiguous) as safetensors with pti's header metadata: META_FORMAT
    ``format_value``, META_FORMAT_VERSION ``version``, META_INIT_KWARGS (``config`` as JSON, sorted keys) and
    META_PTI_VERSION. Atomic: written to a temporary name beside ``path`` and renamed, with
    :func:`pti.io_utils.atomic_path`'s file mode. Returns ``path``.

    Raises:
        ValueError: ``path`` does not end in ``.safetensors``, or ``config`` is not JSON-serialisable
            (``what``, e.g. ``"generator"``, names the object in the message).
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{path}: pti saves {what}s as .safetensors; give a file name ending in .safetensors")
    try:
        init_kwargs = json.dumps(config, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"{path}: the {what}'s init kwargs cannot be stored as JSON ({exc})") from None
    metadata = {META_FORMAT: format_value, META_FORMAT_VERSION: str(version),
                META_INIT_KWARGS: init_kwargs, META_PTI_VERSION: __version__}
    with atomic_path(path) as tmp:
        mode = tmp.stat().st_mode
        save_file(dict(tensors), str(tmp), metadata=metadata)
        tmp.chmod(mode)  # safetensors writes a new file readable by its owner only; keep atomic_path's mode
    return path


def _load_native(path: Path) -> Generator:
    init_kwargs, tensors = read_pti_safetensors(path, _META_FORMAT_VALUE, "generator", _NATIVE_DESCRIPTION, dict)
    try:
        G = Generator(**init_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the stored init kwargs {init_kwargs} do not build a Generator ({exc})") from None
    load_state_dict_strict(G, tensors, str(path))
    return G.eval()


_TORCH_FILE_DESCRIPTION = f"{rosinality.FORMAT_DESCRIPTION} or a pti export ({EXPORT_FORMAT}, from `pti export`)"


def _load_torch_file(path: Path) -> tuple[Generator, str]:
    """A ``.pt``/``.pth`` read once with ``weights_only=True``: pti's export to NVIDIA's code (a dict whose
    ``format`` names it, :func:`.export.generator_from_export`) or a rosinality checkpoint (``g_ema``)."""
    expected = f"expected a {_TORCH_FILE_DESCRIPTION}"
    ckpt = torch_load_weights_only(path, expected, allow=(argparse.Namespace,))
    if is_export(ckpt):
        return generator_from_export(ckpt, str(path)), EXPORT_FORMAT
    missing = "no 'g_ema' state dict and no pti export 'format' in the file"
    return rosinality.generator_from_checkpoint(ckpt, path, missing, expected), rosinality.FORMAT_NAME


def _named(name: str, loader: Callable[[Path], Generator]) -> Callable[[Path], tuple[Generator, str]]:
    return lambda path: (loader(path), name)


# extension -> (format name detect_format reports, loader returning the generator and the format it found)
_LOADERS: dict[str, tuple[str, Callable[[Path], tuple[Generator, str]]]] = {
    ".pkl": (nvidia_pickle.FORMAT_NAME, _named(nvidia_pickle.FORMAT_NAME, nvidia_pickle.load_nvidia_generator)),
    ".pt": (rosinality.FORMAT_NAME, _load_torch_file),
    ".pth": (rosinality.FORMAT_NAME, _load_torch_file),
    ".safetensors": (NATIVE_FORMAT, _named(NATIVE_FORMAT, _load_native)),
}


def detect_format(path: str | Path) -> str:
    """Format name of a checkpoint path, from its extension (:class:`CheckpointError` if unknown); a ``.pt`` is
    named ``rosinality-pt`` here, and :func:`load_with_format` tells a pti export (``EXPORT_FORMAT``) by its content."""
    path = Path(path)
    try:
        return _LOADERS[path.suffix.lower()][0]
    except KeyError:
        raise CheckpointError(
            f"{path}: unknown checkpoint extension {path.suffix or '(none)'!r}; expected .pkl (NVIDIA "
            f"StyleGAN2-ADA network pickle), .pt/.pth (rosinality stylegan2-pytorch, or pti export) or .safetensors "
            f"(pti)") from None


def _resolve(path_or_name: str | Path) -> Path:
    """A path as given, or the local file of a zoo name (downloaded if needed)."""
    from pti import zoo

    return zoo.resolve_checkpoint(path_or_name, "generator", f"(nor a zoo name: {', '.join(zoo.ZOO)}); give a "
                                  f".pkl, .pt or .safetensors generator checkpoint", CheckpointError)


def load_with_format(path_or_name: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, str]:
    """Load a generator and say which format it came in (``nvidia-pkl``, ``rosinality-pt``, ``pti-safetensors``,
    ``pti-nvidia-state-dict-v1``: a ``pti export`` file).

    The generator is in eval mode on ``device``; its parameters require grad (ready for tuning).
    """
    path = _resolve(path_or_name)
    detect_format(path)  # an unknown extension: its error
    G, fmt = _LOADERS[path.suffix.lower()][1](path)
    return G.to(device), fmt


def load(path_or_name: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from a checkpoint path or zoo name; see :func:`load_with_format`."""
    return load_with_format(path_or_name, device=device)[0]


def save(G: Generator, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``G`` in pti's format: safetensors with ``G.init_kwargs`` (JSON) in the header.

    ``dtype``: store the floating-point tensors in this type (``torch.float16`` halves the file: 2 bytes
    per weight; relative rounding error at most 2**-11); :func:`load` always gives float32 weights.
    None keeps them as they are. Atomic: written to a temporary name beside ``path`` and renamed.
    Returns ``path``.
    """
    tensors = {key: value.detach().to("cpu", dtype if dtype is not None and value.is_floating_point() else None)
               .contiguous() for key, value in G.state_dict().items()}
    return write_pti_safetensors(path, tensors, _META_FORMAT_VALUE, "generator", G.init_kwargs)
