"""StyleCLIP's precomputed FFHQ global-direction files, imported for a pti generator.

- ``fs3.npy`` (StyleCLIP's ``global_directions/npy/ffhq/fs3.npy``, the same file in ``global_torch``): float32
  ``[C, 512]``, the unit Δi_c of the non-toRGB style channels of NVIDIA's FFHQ 1024 generator in synthesis
  order (6,048 rows for all 17 conv layers; a file covering only the layers up to 128 px has 5,376). Rows
  for layers it does not cover are zero here. Downloaded by :func:`download_fs3` from the StyleCLIP
  repository, with the sha256 it computes printed, as :mod:`pti.zoo` does.
- ``S_mean_std``: a Python pickle ``[means, stds]`` of two lists with one numpy ``[C_l]`` array per style
  layer (toRGB layers included, synthesis order), written by StyleCLIP's ``GetCode.py --code_type
  s_mean_std``. StyleCLIP publishes no download; pass your own. It is read with an unpickler that builds
  plain numpy number arrays and refuses every other global, so no code from the file is run. Without it the
  statistics are computed from the generator (:func:`pti.editing.styleclip.global_directions.channel_stats`).

The files belong to NVIDIA's FFHQ generator (``pti download ffhq``) and ViT-B/32; importing them for another
generator fails on the channel counts, and a tuned generator takes the original's files.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pti.editing.style_space import style_layers

FS3_URL = "https://raw.githubusercontent.com/orpatashnik/StyleCLIP/main/global_directions/npy/ffhq/fs3.npy"


class StyleClipFileError(ValueError):
    """A StyleCLIP file is missing, refused or does not fit the generator."""


def fs3_entry() -> "ZooEntry":  # noqa: F821
    """The zoo-style entry of StyleCLIP's FFHQ ``fs3.npy`` (no published sha256: the download prints it)."""
    from pti.zoo import ZooEntry

    return ZooEntry(name="styleclip-fs3-ffhq", filename="styleclip/fs3_ffhq.npy", resolution=1024, kind="styleclip",
                    description="StyleCLIP global directions Δi_c for NVIDIA's FFHQ 1024 generator and ViT-B/32",
                    url=FS3_URL, page="https://github.com/orpatashnik/StyleCLIP/tree/main/global_directions/npy/ffhq",
                    license="MIT (orpatashnik/StyleCLIP); computed from NVIDIA's FFHQ generator (non-commercial)")


def download_fs3(cache: Path | None = None, progress: bool = True) -> Path:
    """Download ``fs3.npy`` into the pti cache (``pti.zoo.download``: temporary file, progress, rename; the
    computed sha256 is printed and an ``UnverifiedDownloadWarning`` issued). Raises ``pti.zoo.ZooError`` offline."""
    import sys

    from pti.zoo import download

    result = download(fs3_entry(), cache=cache, progress=progress)
    print(f"{result.path}: sha256 {result.sha256}", file=sys.stderr)
    return result.path


# --- S_mean_std: a pickle of numpy arrays, read without running code ----------------------------------------

class _ArrayRecord:
    """What ``numpy.core.multiarray._reconstruct`` + ``__setstate__`` build in a pickle: kept as data."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        from pti.stylegan2.nvidia_pickle import _NumpyDType

        if not (isinstance(state, tuple) and len(state) == 5):
            raise StyleClipFileError("a pickled numpy array has an unexpected state")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _NumpyDType) or not isinstance(raw, bytes) or \
                not all(isinstance(n, int) and n >= 0 for n in shape):
            raise StyleClipFileError("refused a pickled numpy array that is not plain numbers")
        np_dtype = dtype.to_numpy()
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * np_dtype.itemsize:
            raise StyleClipFileError("a pickled numpy array has the wrong number of bytes")
        self.array = np.frombuffer(raw, dtype=np_dtype, count=count).reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> _ArrayRecord:
    if cls is not _NDARRAY:
        raise StyleClipFileError("refused a numpy reconstruct of anything but ndarray")
    return _ArrayRecord()


_NDARRAY = object()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        from pti.stylegan2.nvidia_pickle import _numpy_dtype

        key = f"{module}.{name}"
        if key in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
            return _reconstruct
        if key == "numpy.ndarray":
            return _NDARRAY
        if key == "numpy.dtype":
            return _numpy_dtype
        raise StyleClipFileError(f"refused global {key!r}: S_mean_std holds only numpy arrays")


def _plain(obj: Any) -> Any:
    if isinstance(obj, _ArrayRecord):
        return obj.array
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    return obj


def read_s_mean_std(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(means, stds)`` of a StyleCLIP ``S_mean_std`` file: lists of 1-D float arrays, one per style layer."""
    path = Path(path)
    if not path.is_file():
        raise StyleClipFileError(f"{path}: no such S_mean_std file")
    try:
        with open(path, "rb") as f:
            data = _plain(_NumpyOnlyUnpickler(f).load())
    except StyleClipFileError as exc:
        raise StyleClipFileError(f"{path}: {exc}; nothing from the file was executed") from None
    except Exception as exc:  # noqa: BLE001 - truncated or not a pickle
        raise StyleClipFileError(f"{path}: not a StyleCLIP S_mean_std pickle ({type(exc).__name__}: {exc})") from None
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, list) for x in data)
            and all(isinstance(a, np.ndarray) and a.ndim in (1, 2) for x in data for a in x)):
        raise StyleClipFileError(f"{path}: expected [means, stds], two lists of numpy arrays (StyleCLIP's GetCode.py)")
    means, stds = ([np.asarray(a, dtype=np.float32).reshape(-1) for a in x] for x in data)
    return means, stds


def import_global_directions(G: torch.nn.Module, fs3: str | Path, s_mean_std: str | Path | None = None,
                             stat_samples: int = 100_000, clip_key: str = "ViT-B-32",
                             progress: bool = True) -> "GlobalDirections":  # noqa: F821
    """:class:`~pti.editing.styleclip.global_directions.GlobalDirections` of ``G`` from StyleCLIP's files.

    Raises :class:`StyleClipFileError` when a file is missing, refused, or its channel counts do not match
    ``G``'s style layers (it was made for another generator).
    """
    from pti.editing.styleclip.global_directions import GlobalDirections, channel_stats
    from pti.stylegan2.checkpoints import weights_fingerprint

    fs3 = Path(fs3)
    if not fs3.is_file():
        raise StyleClipFileError(f"{fs3}: no such fs3.npy; download it with `pti styleclip-prepare --import-ffhq` "
                                 f"or from {FS3_URL}")
    try:
        dirs = np.load(fs3, allow_pickle=False)
    except ValueError as exc:
        raise StyleClipFileError(f"{fs3}: not a numpy array file ({exc})") from None
    layers = style_layers(G)
    conv = [layer for layer in layers if not layer.is_torgb]
    total = sum(layer.channels for layer in conv)
    prefix_sums = list(np.cumsum([layer.channels for layer in conv]))
    if dirs.ndim != 2 or int(dirs.shape[0]) not in prefix_sums:
        raise StyleClipFileError(
            f"{fs3}: {tuple(dirs.shape)} does not fit this generator, whose non-toRGB style layers have "
            f"{total} channels (a file may cover the first layers only: {prefix_sums[:3]}...{prefix_sums[-1]} rows); "
            "StyleCLIP's FFHQ file belongs to NVIDIA's FFHQ 1024 generator")
    full = torch.zeros([total, dirs.shape[1]])
    full[:dirs.shape[0]] = torch.from_numpy(np.ascontiguousarray(dirs, dtype=np.float32))
    if s_mean_std is not None:
        means, stds = read_s_mean_std(s_mean_std)
        shapes = [a.shape[0] for a in means]
        if shapes != [layer.channels for layer in layers] or [a.shape[0] for a in stds] != shapes:
            raise StyleClipFileError(f"{s_mean_std}: per-layer sizes {shapes} do not match this generator's style "
                                     f"layers {[layer.channels for layer in layers]}")
        mean = [torch.from_numpy(a.copy()) for a in means]
        std = [torch.from_numpy(a.copy()) for a in stds]
        stats_source = str(s_mean_std)
    else:
        mean, std = channel_stats(G, stat_samples, progress=progress)
        stats_source = f"statistics of {stat_samples} samples at psi 0.7"
    return GlobalDirections(layers, mean, std, full, clip=clip_key, generator=weights_fingerprint(G),
                            source=f"StyleCLIP files {fs3} ({dirs.shape[0]} rows) and {stats_source}")


__all__ = ["FS3_URL", "StyleClipFileError", "download_fs3", "fs3_entry", "read_s_mean_std", "import_global_directions"]
