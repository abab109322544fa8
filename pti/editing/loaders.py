"""Reading and writing direction files.

Formats read (never with pickle code execution: ``torch.load(weights_only=True)`` and
``numpy.load(allow_pickle=False)``):

- **InterFaceGAN, as shipped by the official PTI repo** (``editings/interfacegan_directions/
  age.pt, smile.pt, rotation.pt``): a bare tensor ``[1, w_dim]`` written with ``torch.save``,
  applied there as ``w + factor * direction``. InterFaceGAN's own boundaries are the same
  array as ``.npy``; an ``.npz`` holding one array (or ``FILE.npz#ARRAY``) is read the same way.
  **One row per style input** (``[num_ws, w_dim]``, or ``[1, num_ws, w_dim]``, as STIT and
  others save directions for W+ codes): rows equal to within :data:`ROW_TOLERANCE` are one W
  direction; differing rows are a W+ direction, each row added to its style input
  (``w + factor * direction`` row-wise; a W pivot is broadcast to W+ first). Any other row
  count than 1 or the generator's ``num_ws`` is refused, naming both.
- **GANSpace** component files (``.npz`` from the GANSpace repo): ``lat_comp [K, 1, w_dim]``
  (unit rows), ``lat_mean [1, w_dim]``, ``lat_stdev [K]``, plus activation-space keys
  (``act_comp``, ``act_mean``, ``act_stdev``, ``var_ratio``, ``random_stdevs``) that editing
  does not need. The ``.pt`` variant used by encoder4editing/PTI (``ffhq_pca.pt``) is a dict
  ``{'comp': [K, 1, w_dim], 'mean': [1, w_dim], 'std': [K]}``. Edits here are relative, as in
  GANSpace (``w + strength * std_k * comp_k``); PTI's own ganspace helper instead sets the
  component coordinate to ``strength`` (absolute), so equal numbers give different images.
- **pti direction collections** (``.pt``): ``{'format': 'pti-directions-v1', 'directions':
  {name: Direction.to_dict()}, 'metadata': {...}}``, e.g. ``pti/assets/boundaries_demo.pt``.

:func:`resolve_direction` turns a command-line name into a Direction for a generator.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pti.editing.direction import Direction, DirectionMismatchError
from pti.editing.ganspace import PCABasis
from pti.io_utils import atomic_path, atomic_torch_save

COLLECTION_FORMAT = "pti-directions-v1"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_BOUNDARIES = ASSETS / "boundaries_demo.pt"


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such direction file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a tensor/dict torch file readable with weights_only=True ({exc}); "
                         "direction files must hold plain tensors (re-save it with torch.save(tensor))") from exc


#: rows of a ``[num_ws, w_dim]`` direction file closer than this, relative to the largest entry, are equal
#: (a W direction). Rows written as one vector repeated are bitwise equal; rows computed one by one in
#: float32 (e.g. normalised per row) differ by a few ulps (float32 eps 1.2e-7; measured up to 2.6e-7 relative
#: for 512-d rows normalised one by one at 18 scales, tests/test_direction_files.py). 1e-5 admits that
#: rounding, and a W+ difference this small moves a code by 1e-5 of the edit's own size: no visible change.
ROW_TOLERANCE = 1e-5


def _as_vector(array: Any, path: Path, what: str, num_ws: int | None = None) -> torch.Tensor:
    """``[w_dim]`` (a W direction) or ``[num_ws, w_dim]`` (a W+ direction, rows differ) from a file's array."""
    t = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array).float()
    if t.ndim == 3 and t.shape[0] == 1:  # [1, num_ws, w_dim], a batch of one
        t = t[0]
    if t.ndim == 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 1:
        return t
    if t.ndim != 2:
        raise ValueError(f"{path}: {what} must have shape [w_dim], [1, w_dim] or [num_ws, w_dim], got "
                         f"{tuple(t.shape)}")
    rows = int(t.shape[0])
    if num_ws is not None and rows != num_ws:
        raise DirectionMismatchError(
            f"{path}: {what} has {rows} rows but the generator has num_ws {num_ws} style inputs; a direction "
            f"file holds one row [1, w_dim] (W) or one row per style input [{num_ws}, w_dim] (W+)")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{path}: {what} holds non-finite values")
    spread = float((t - t[0:1]).abs().max())
    if spread <= ROW_TOLERANCE * float(t.abs().max()):
        return t[0]  # one vector repeated: a W direction
    return t


def _check(direction: Direction, w_dim: int | None, num_ws: int | None) -> Direction:
    if w_dim is not None:
        direction.check(w_dim, num_ws)
    return direction


# --- InterFaceGAN ------------------------------------------------------------------------

def load_interfacegan(path: str | Path, name: str | None = None, layers: tuple[int, int] | None = None,
                      w_dim: int | None = None, num_ws: int | None = None, key: str = "") -> Direction:
    """Read an InterFaceGAN boundary: a ``.pt`` tensor as in the PTI repo, an ``.npy`` array, or an
    ``.npz`` holding one array (``key`` names it when it holds several).

    Shapes: ``[w_dim]`` or ``[1, w_dim]`` (W); ``[num_ws, w_dim]`` or ``[1, num_ws, w_dim]``: equal rows
    (within :data:`ROW_TOLERANCE`) are a W direction, differing rows a W+ direction. ``scale`` is the
    stored array's norm, so ``apply(w, d, f)`` equals the official ``w + f * direction`` (row by row).
    Pass the generator's ``w_dim`` and ``num_ws`` to have a mismatch (another ``w_dim``, a row count
    other than 1 or ``num_ws``) reported as :class:`DirectionMismatchError` naming the file.
    """
    path = Path(path)
    if path.suffix in (".npy", ".npz"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such direction file")
        raw: Any = _npz_array(path, key) if path.suffix == ".npz" else np.load(path, allow_pickle=False)
    else:
        raw = _torch_load(path)
    if not isinstance(raw, (torch.Tensor, np.ndarray)):
        raise ValueError(f"{path}: expected a bare tensor [1, w_dim] or [num_ws, w_dim] (InterFaceGAN format), "
                         f"got {type(raw).__name__}; for a pti direction collection use PATH#NAME")
    vec = _as_vector(raw, path, "an InterFaceGAN boundary", num_ws)
    norm = float(vec.double().norm())
    space = " (W+, one row per style input)" if vec.ndim == 2 else ""
    return _check(Direction(vector=vec, layers=layers, name=name or path.stem,
                            source=f"InterFaceGAN boundary {path}{space}", scale=norm), w_dim, num_ws)


def _npz_array(path: Path, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        if key:
            if key not in data.files:
                raise KeyError(f"{path}: no array {key!r}; it holds {sorted(data.files)} (use {path}#ARRAY)")
            return data[key]
        if len(data.files) != 1:
            raise ValueError(f"{path}: holds {len(data.files)} arrays {sorted(data.files)}; choose the direction "
                             f"with {path}#ARRAY")
        return data[data.files[0]]


def save_interfacegan(direction: Direction, path: str | Path) -> None:
    """Write ``scale * vector`` as a ``[1, w_dim]`` float32 tensor, the official PTI format, or
    ``[num_ws, w_dim]`` for a W+ direction (the layer range is not representable there and is dropped)."""
    tensor = (direction.vector.double() * direction.scale).float()
    tensor = (tensor if tensor.ndim == 2 else tensor.reshape(1, -1)).contiguous()
    atomic_torch_save(tensor, path)


# --- GANSpace ------------------------------------------------------------------------------

def load_ganspace_basis(path: str | Path) -> PCABasis:
    """Read a GANSpace ``.npz`` (``lat_comp``, ``lat_mean``, ``lat_stdev``) or an
    encoder4editing/PTI ``.pt`` dict (``comp``, ``mean``, ``std``)."""
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GANSpace file")
        with np.load(path, allow_pickle=False) as data:
            missing = {"lat_comp", "lat_stdev"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a GANSpace component file (missing {sorted(missing)}; "
                                 f"has {sorted(data.files)})")
            comp, std = data["lat_comp"], data["lat_stdev"]
            mean = data["lat_mean"] if "lat_mean" in data.files else None
            var_ratio = data["var_ratio"] if "var_ratio" in data.files else None
    else:
        data = _torch_load(path)
        if not isinstance(data, dict) or not {"comp", "std"} <= set(data):
            raise ValueError(f"{path}: expected a GANSpace dict with keys 'comp', 'mean', 'std'")
        comp, std, mean, var_ratio = data["comp"], data["std"], data.get("mean"), None
    comp_t = torch.as_tensor(np.asarray(comp), dtype=torch.float32)
    if comp_t.ndim == 3 and comp_t.shape[1] == 1:
        comp_t = comp_t[:, 0]
    if comp_t.ndim != 2:
        raise ValueError(f"{path}: components must be [K, 1, w_dim] or [K, w_dim] (W-space PCA), got "
                         f"{tuple(comp_t.shape)}; per-layer (W+) or activation-space components are not supported")
    k, w_dim = comp_t.shape
    std_t = torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(-1)
    if std_t.numel() != k:
        raise ValueError(f"{path}: {k} components but {std_t.numel()} standard deviations")
    mean_t = (torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(-1) if mean is not None
              else torch.zeros(w_dim))
    vr = (torch.as_tensor(np.asarray(var_ratio), dtype=torch.float32).reshape(-1) if var_ratio is not None
          else torch.full([k], float("nan")))
    return PCABasis(components=comp_t, stdev=std_t, mean=mean_t, var_ratio=vr, source=f"GANSpace file {path}")


def load_ganspace(path: str | Path, component: int, layers: tuple[int, int] | None = None,
                  w_dim: int | None = None, num_ws: int | None = None) -> Direction:
    """Component ``component`` of a GANSpace file as a Direction (``scale`` = its stdev)."""
    basis = load_ganspace_basis(path)
    k = basis.components.shape[0]
    if not 0 <= component < k:
        raise IndexError(f"{path}: component {component} out of range (the file has {k})")
    return _check(basis.directions(layers, prefix=f"{Path(path).stem}_pc")[component], w_dim, num_ws)


def save_ganspace_npz(basis: PCABasis, path: str | Path) -> None:
    """Write the latent-space keys of a GANSpace ``.npz`` (``lat_comp [K, 1, w_dim]``,
    ``lat_mean [1, w_dim]``, ``lat_stdev [K]``, ``var_ratio [K]``)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: GANSpace files end in .npz")
    arrays = {"lat_comp": basis.components.float().numpy()[:, None, :],
              "lat_mean": basis.mean.float().numpy()[None, :],
              "lat_stdev": basis.stdev.float().numpy(),
              "var_ratio": basis.var_ratio.float().numpy()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object keeps numpy from appending another .npz
            np.savez_compressed(f, **arrays)


# --- pti collections -----------------------------------------------------------------------

def save_directions(path: str | Path, directions: Sequence[Direction], metadata: dict[str, Any] | None = None) -> None:
    """Write several directions (keyed by name) and JSON-like ``metadata`` to one ``.pt`` file."""
    names = [d.name for d in directions]
    if len(set(names)) != len(names) or "" in names:
        raise ValueError(f"directions saved together need distinct non-empty names, got {names}")
    atomic_torch_save({"format": COLLECTION_FORMAT, "directions": {d.name: d.to_dict() for d in directions},
                       "metadata": dict(metadata or {})}, path)


def load_directions(path: str | Path) -> tuple[dict[str, Direction], dict[str, Any]]:
    """Read a pti collection: ``({name: Direction}, metadata)``."""
    path = Path(path)
    data = _torch_load(path)
    if not isinstance(data, dict) or data.get("format") != COLLECTION_FORMAT:
        raise ValueError(f"{path}: not a pti direction collection (expected format {COLLECTION_FORMAT!r})")
    return {name: Direction.from_dict(d) for name, d in data["directions"].items()}, dict(data.get("metadata", {}))


# --- names used on the command line -------------------------------------------------------

def parse_layers(text: str | None) -> tuple[int, int] | None:
    """``"START:STOP"`` (half-open, over num_ws) -> ``(start, stop)``; None/"" -> None."""
    if not text:
        return None
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"layers must be START:STOP (e.g. 0:4 for style inputs 0..3), got {text!r}") from None
    return start, stop


def demo_boundary_names() -> list[str]:
    if not DEMO_BOUNDARIES.is_file():
        return []
    return sorted(load_directions(DEMO_BOUNDARIES)[0])


def resolve_direction(spec: str, G: torch.nn.Module, layers: tuple[int, int] | None = None,
                      cache: bool = True) -> Direction:
    """A Direction for ``G`` from a command-line name.

    ``spec`` is one of:
      - ``ganspace:K`` / ``sefa:K``: component K computed from ``G`` (cached), its strength unit set
        by :mod:`pti.editing.strength` (1 = a 4/255 mean image change);
      - ``FILE.npz#K`` or ``FILE.pt#K`` (GANSpace dict): GANSpace component K;
      - ``FILE.pt#NAME``: direction NAME of a pti collection;
      - ``FILE.pt`` / ``FILE.npy`` / ``FILE.npz`` (one array, or ``FILE.npz#ARRAY``): an InterFaceGAN
        boundary ``[1, w_dim]`` or ``[num_ws, w_dim]`` (:func:`load_interfacegan`), or a one-direction
        collection;
      - ``NAME``: a boundary shipped for the demo generator (``pti/assets/boundaries_demo.pt``).
    ``layers`` overrides the direction's layer range. The result is checked against
    ``G.w_dim`` and ``G.num_ws``.
    """
    w_dim, num_ws = int(G.w_dim), int(G.num_ws)
    method, _, index = spec.partition(":")
    if method in ("ganspace", "sefa") and index:
        k = int(index)
        if not 0 <= k < w_dim:
            raise ValueError(f"{spec}: component {k} out of range (w_dim {w_dim} gives components 0..{w_dim - 1})")
        n_comp = min(w_dim, max(k + 1, 16))
        if method == "ganspace":
            from pti.editing.ganspace import ganspace_basis

            d = ganspace_basis(G, num_components=n_comp, cache=cache).directions()[k]
        else:
            from pti.editing.sefa import sefa_directions

            d = sefa_directions(G, num_components=n_comp, layers=layers, cache=cache, calibrate=False)[k]
        if layers is not None:
            d = d.with_layers(layers)
        from pti.editing.strength import calibrated

        return _check(calibrated(G, [d], cache=cache)[0], w_dim, num_ws)

    file_part, _, key = spec.partition("#")
    path = Path(file_part)
    if path.suffix in (".pt", ".npy", ".npz") or path.exists():
        d = _load_file_direction(path, key, num_ws)
        return _check(d.with_layers(layers) if layers is not None else d, w_dim, num_ws)

    names = demo_boundary_names()
    if spec in names:
        found, meta = load_directions(DEMO_BOUNDARIES)
        d = found[spec]
        expected = meta.get("mapping_sha256")
        if expected:
            from pti.stylegan2.checkpoints import weights_fingerprint

            if int(meta.get("w_dim", w_dim)) == w_dim and weights_fingerprint(G, ("mapping.",)) != expected \
                    and not _demo_mapping(G):
                warnings.warn(f"{DEMO_BOUNDARIES}: boundary {spec!r} was fitted on the shipped demo generator, "
                              "and this generator's mapping network differs: the boundary may not mean "
                              f"{spec!r} here. Resolve directions on the generator the pivot was inverted with "
                              "(pti edit --direction-generator ORIGINAL), or fit boundaries for this one "
                              "(`pti fit-boundaries --generator GENERATOR`)", stacklevel=2)
        return _check(d.with_layers(layers) if layers is not None else d, w_dim, num_ws)
    raise ValueError(f"unknown direction {spec!r}: give ganspace:K, sefa:K, a file (.pt/.npy, .npz#K, .pt#NAME) "
                     f"or a shipped name ({', '.join(names) if names else f'none shipped: {DEMO_BOUNDARIES} missing'})")


def _demo_mapping(G: torch.nn.Module) -> bool:
    """Whether ``G``'s mapping weights are the shipped demo generator's, as they are or rounded through float16:
    a generator tuned from it (PTI trains the synthesis network only; ``pti run --save-generator`` keeps float16
    weights), for which the demo boundaries hold."""
    from safetensors import safe_open

    path = ASSETS / "demo_generator.safetensors"
    state = {k: v for k, v in G.state_dict().items() if k.startswith("mapping.")}
    if not path.is_file() or not state:
        return False
    with safe_open(str(path), framework="pt") as f:
        if set(state) != {k for k in f.keys() if k.startswith("mapping.")}:
            return False
        for name, value in state.items():
            ref, value = f.get_tensor(name), value.detach().to("cpu")
            if ref.shape != value.shape or not (torch.equal(ref, value) or torch.equal(
                    ref.to(torch.float16).to(value.dtype), value)):
                return False
    return True


def _load_file_direction(path: Path, key: str, num_ws: int | None = None) -> Direction:
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such direction file")
        with np.load(path, allow_pickle=False) as data:
            ganspace = "lat_comp" in data.files
        if not ganspace:
            return load_interfacegan(path, num_ws=num_ws, key=key)
        if not key:
            raise ValueError(f"{path}: a GANSpace file holds several components; choose one with {path}#K")
        return load_ganspace(path, int(key))
    if path.suffix == ".npy":
        return load_interfacegan(path, num_ws=num_ws)
    data = _torch_load(path)
    if isinstance(data, torch.Tensor):
        return load_interfacegan(path, num_ws=num_ws)
    if isinstance(data, dict) and data.get("format") == COLLECTION_FORMAT:
        found, _ = load_directions(path)
        if not key and len(found) == 1:
            return next(iter(found.values()))
        if key not in found:
            raise KeyError(f"{path}: no direction {key!r}; it holds {sorted(found)} (use {path}#NAME)")
        return found[key]
    if isinstance(data, dict) and {"comp", "std"} <= set(data):
        if not key:
            raise ValueError(f"{path}: a GANSpace file holds several components; choose one with {path}#K")
        return load_ganspace(path, int(key))
    raise ValueError(f"{path}: not a direction file (expected an InterFaceGAN tensor [1, w_dim] or [num_ws, "
                     "w_dim], a GANSpace dict/npz or a pti direction collection)")


__all__ = ["load_interfacegan", "save_interfacegan", "load_ganspace", "load_ganspace_basis", "save_ganspace_npz",
           "save_directions", "load_directions", "resolve_direction", "parse_layers", "DirectionMismatchError"]
