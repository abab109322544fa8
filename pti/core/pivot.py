"""The pivot: the result of inversion (or of an encoder), its file format, and the errors of a run gone bad.

A :class:`Pivot` holds ``w_p`` (``[1, num_ws, w_dim]``), the optimised noise maps, the loss
histories and where it came from. ``Pivot.save``/``Pivot.load`` write and read it as a
``weights_only``-loadable torch file (format ``pti-pivot-v1``: a dict of the fields below plus
``"format"``), so loading a pivot never runs code from the file. :func:`load_pivot` also reads
codes written by other tools (bare tensors, NVIDIA's ``projected_w.npz``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pti.core.divergence import DivergenceError, diverged_message, is_diverged


class NonFiniteLossError(DivergenceError):
    """A loss became NaN or infinite; the image is abandoned and nothing is written for it."""


def step_failure(what: str, step: int, loss: float, rms: float) -> DivergenceError | None:
    """The error an optimisation step calls for, judged before its update: :class:`NonFiniteLossError` when
    ``loss`` is NaN/inf, else :class:`~pti.core.divergence.DivergenceError` when ``rms``, the RMS pixel value
    of its image (the largest over a batch), has diverged (:func:`~pti.core.divergence.is_diverged`); None
    when neither. ``what`` names the loop ('inversion', 'tuning')."""
    if not math.isfinite(loss):
        return NonFiniteLossError(f"{what} loss became {loss} at step {step}")
    if is_diverged(rms):
        return DivergenceError(diverged_message(what, step, rms))
    return None


def check_step(what: str, step: int, loss: float, rms: float) -> None:
    """Raise :func:`step_failure`'s error for a step's loss and image RMS, if there is one."""
    error = step_failure(what, step, loss, rms)
    if error is not None:
        raise error


@dataclass
class Pivot:
    """The result of inversion.

    Attributes:
        w: ``[1, num_ws, w_dim]`` float32 (all rows equal for ``space='w'``).
        noise: optimised noise maps, one ``[1, 1, R, R]`` per ``G.synthesis.noise_layers()`` entry
            (empty when noise was not optimised).
        space: 'w' or 'w+'.
        loss_history: per-step total loss.
        perceptual_history: per-step perceptual distance.
        steps: steps run; seconds: wall time (of a batch from :func:`pti.fast.project_batch`: its wall time
            divided by the number of photos, see :mod:`pti.fast`); config: the InversionConfig as a dict.
        c: the class label ``[1, c_dim]`` it was inverted with (conditional generators), else None.
        origin: where ``w`` came from: 'projector' (optimised from the mean w, :func:`pti.core.projector.project`),
            'e4e' (an encoder's W+ code, then ``steps`` refinement steps of the projector), 'w_init' (a given
            start, then ``steps`` steps) or 'file' (a bare code from another tool, :func:`load_pivot`: no noise
            maps, no generator fingerprint).
    """

    w: torch.Tensor
    noise: list[torch.Tensor] = field(default_factory=list)
    space: str = "w"
    loss_history: list[float] = field(default_factory=list)
    perceptual_history: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    perceptual_name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    generator: str = ""  # weights_fingerprint of the generator it was inverted with ("" in older files)
    c: torch.Tensor | None = None
    origin: str = "projector"

    def check_fits(self, G: torch.nn.Module, what: str = "the generator") -> None:
        """Raise ValueError unless ``w`` is ``[1, G.num_ws, G.w_dim]`` and the noise maps match G's noise layers."""
        if tuple(self.w.shape) != (1, int(G.num_ws), int(G.w_dim)):
            raise ValueError(f"the pivot's w has shape {tuple(self.w.shape)} but {what} needs "
                             f"[1, {int(G.num_ws)}, {int(G.w_dim)}] (num_ws, w_dim): it was made with another generator")
        if self.noise:
            wanted = [(int(layer.resolution),) * 2 for layer in G.synthesis.noise_layers()]
            have = [tuple(n.shape[-2:]) for n in self.noise]
            if have != wanted:
                raise ValueError(f"the pivot's {len(have)} noise maps do not match the {len(wanted)} noise layers "
                                 f"of {what}: it was made with another generator")

    def noise_maps(self, device: torch.device | str | None = None) -> list[torch.Tensor] | None:
        """The optimised noise maps for ``G.synthesis(..., noise=...)`` (on ``device`` if given), or None when
        none were optimised (0 inversion steps, an encoder's code): G then uses its own ``noise_const``."""
        if not self.noise:
            return None
        return [n.to(device) for n in self.noise] if device is not None else list(self.noise)

    def to(self, device: torch.device | str) -> "Pivot":
        return Pivot(**{**self.__dict__, "w": self.w.to(device), "noise": [n.to(device) for n in self.noise],
                        "c": None if self.c is None else self.c.to(device)})

    def save(self, path: str | Path) -> None:
        """Write a ``weights_only``-loadable torch file atomically."""
        from pti.io_utils import atomic_torch_save

        atomic_torch_save({**self.__dict__, "w": self.w.detach().cpu(),
                           "noise": [n.detach().cpu() for n in self.noise],
                           "c": None if self.c is None else self.c.detach().cpu(), "format": "pti-pivot-v1"}, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "Pivot":
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable pti pivot file (expected a torch file written by "
                             f"Pivot.save): {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != "pti-pivot-v1" or "w" not in data:
            raise ValueError(f"{path}: not a pti pivot file (expected format 'pti-pivot-v1')")
        data.pop("format")
        return cls(**data)



def _read_pivot_file(path: Path) -> Any:
    """The content of a pivot file without running code from it: numpy for ``.npz`` (its ``'w'``) and
    ``.npy`` (``allow_pickle=False``), ``torch.load(weights_only=True)`` for anything else."""
    import pickle

    import numpy as np

    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "w" not in data.files:
                    raise ValueError(f"{path}: an .npz without a 'w' array (found {sorted(data.files)}); expected "
                                     "NVIDIA's projected_w.npz (np.savez(path, w=[1, num_ws, w_dim]))")
                return np.array(data["w"])
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return torch.load(path, map_location="cpu", weights_only=True)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable pivot ({exc}); numpy files must hold plain number arrays, "
                         "not pickled objects") from None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a readable pivot file ({type(exc).__name__}: {first})") from None


def load_pivot(path: str | Path, G: torch.nn.Module, map_location: str | torch.device = "cpu") -> Pivot:
    """A pivot for ``G`` from a pti pivot file or a W+ code written by another tool.

    Accepted: pti's ``pivot.pt`` (:meth:`Pivot.load`); a bare tensor of shape ``[num_ws, w_dim]`` or
    ``[1, num_ws, w_dim]`` saved with ``torch.save`` (``.pt``, read with ``weights_only=True``) or
    ``np.save`` (``.npy``); NVIDIA's projector output ``projected_w.npz`` (``np.savez(path, w=...)``,
    ``w`` of shape ``[1, num_ws, w_dim]``; stylegan2-ada-pytorch ``projector.py``). Numpy files are
    read with ``allow_pickle=False``. A code from elsewhere becomes a float32 ``Pivot`` with
    ``origin='file'``, no noise maps (G renders with its own ``noise_const``), no generator
    fingerprint, ``space='w'`` when its rows are equal else ``'w+'``.

    Raises:
        ValueError: unreadable file, or a code of any other shape (the message names it and
            ``[num_ws, w_dim]`` of ``G``). A pti pivot is returned as stored: check it with
            :meth:`Pivot.check_fits`.
    """
    import numpy as np

    path = Path(path)
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    data = _read_pivot_file(path)
    if isinstance(data, dict) and data.get("format") == "pti-pivot-v1":
        return Pivot.load(path, map_location=map_location)  # the caller checks it with Pivot.check_fits
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "fiu":
            raise ValueError(f"{path}: holds a {data.dtype} array, expected float numbers")
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, torch.Tensor):
        found = f"a dict with keys {sorted(map(str, data))[:6]}" if isinstance(data, dict) else \
            f"a {type(data).__name__}"
        raise ValueError(f"{path}: holds {found}, not a pivot: expected pti's pivot.pt, a [{num_ws}, {w_dim}] or "
                         f"[1, {num_ws}, {w_dim}] tensor (num_ws, w_dim of the generator), or projected_w.npz")
    shape = tuple(data.shape)
    if shape not in ((num_ws, w_dim), (1, num_ws, w_dim)):
        raise ValueError(f"{path}: a code of shape {list(shape)}, but the generator needs [{num_ws}, {w_dim}] or "
                         f"[1, {num_ws}, {w_dim}] (num_ws, w_dim)")
    w = data.detach().to(torch.float32).reshape(1, num_ws, w_dim)
    if not torch.isfinite(w).all():
        raise ValueError(f"{path}: the code contains NaN or infinite values")
    space = "w" if bool((w == w[:, :1]).all()) else "w+"
    return Pivot(w=w.to(map_location), space=space, origin="file", config={"source": str(path)})
