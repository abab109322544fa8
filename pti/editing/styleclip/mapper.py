"""StyleCLIP's latent mapper (Patashnik et al. 2021, Sec. 5), loading the official checkpoints.

The levels mapper has three MLPs, over the coarse (W+ rows 0-3), medium (4-7) and fine (8-) rows; each
is PixelNorm followed by 4 equalised fully connected layers (lr multiplier 0.01, leaky ReLU 0.2 with
gain √2 after the bias). The edit is ``w' = w + k·M(w)``; the official PTI renders with k = 0.06
(StyleCLIP's own inference uses 0.1). A mapper whose group was trained off (e.g. ``afro``'s fine
mapper) contributes zero there.

Two details follow StyleCLIP's code, so that the official weights give the official edits:
PixelNorm normalises over dimension 1 of the ``[N, rows, 512]`` group, i.e. across the group's W+ rows
(not across the 512 features), and the layers are applied to that 3-D tensor row-wise.

Checkpoint layout (``torch.save`` of ``{'state_dict': ..., 'opts': {...}}``, read with ``weights_only``):
``mapper.{course,medium,fine}_mapping.mapping.{1..4}.{weight [512, 512], bias [512]}`` ("course" is
StyleCLIP's spelling), plus ``decoder.*`` (a copy of the FFHQ generator, ignored here). ``opts`` holds the
training options (``mapper_type`` 'LevelsMapper', ``no_*_mapper`` flags). Weights are stored divided by
the lr multiplier: the layer uses ``weight · lr_mul/√in`` and ``bias · lr_mul``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

#: the group names in StyleCLIP's checkpoints, with the W+ rows each reads (stop None: to the end)
GROUPS: tuple[tuple[str, int, int | None], ...] = (("course", 0, 4), ("medium", 4, 8), ("fine", 8, None))
LR_MUL = 0.01
NUM_LAYERS = 4
#: the official PTI's mapper strength (its StyleCLIP inference script)
PTI_STRENGTH = 0.06


class MapperCheckpointError(ValueError):
    """A file is not a StyleCLIP levels-mapper checkpoint, or it does not fit the generator."""


@dataclass(frozen=True)
class MapperEntry:
    """An official StyleCLIP mapper: its name, download URL (Google Drive, StyleCLIP's ``utils.py``) and the
    groups the official PTI switches off for it (``no_coarse``, ``no_medium``, ``no_fine``)."""

    name: str
    url: str
    no_fine: bool = False

    @property
    def filename(self) -> str:
        return f"styleclip/mappers/{self.name}.pt"


def _drive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


#: the 14 mappers the official PTI applies (scripts/pti_styleclip.py), with StyleCLIP's Drive ids
MAPPERS: Mapping[str, MapperEntry] = MappingProxyType({e.name: e for e in (
    MapperEntry("afro", _drive("1i5vAqo4z0I-Yon3FNft_YZOq7ClWayQJ"), no_fine=True),
    MapperEntry("angry", _drive("1g82HEH0jFDrcbCtn3M22gesWKfzWV_ma"), no_fine=True),
    MapperEntry("beyonce", _drive("1KJTc-h02LXs4zqCyo7pzCp0iWeO6T9fz")),
    MapperEntry("bobcut", _drive("1IvyqjZzKS-vNdq_OhwapAcwrxgLAY8UF"), no_fine=True),
    MapperEntry("bowlcut", _drive("1xwdxI2YCewSt05dEHgkpmmzoauPjEnnZ"), no_fine=True),
    MapperEntry("curly_hair", _drive("1xZ7fFB12Ci6rUbUfaHPpo44xUFzpWQ6M"), no_fine=True),
    MapperEntry("depp", _drive("1FPiJkvFPG_y-bFanxLLP91wUKuy-l3IV")),
    MapperEntry("hilary_clinton", _drive("1X7U2zj2lt0KFifIsTfOOzVZXqYyCWVll")),
    MapperEntry("mohawk", _drive("1oMMPc8iQZ7dhyWavZ7VNWLwzf9aX4C09"), no_fine=True),
    MapperEntry("purple_hair", _drive("14H0CGXWxePrrKIYmZnDD2Ccs65EEww75")),
    MapperEntry("surprised", _drive("1F-mPrhO-UeWrV1QYMZck63R43aLtPChI"), no_fine=True),
    MapperEntry("taylor_swift", _drive("10jHuHsKKJxuf3N0vgQbX_SMEQgFHDrZa")),
    MapperEntry("trump", _drive("14v8D0uzy4tOyfBU3ca9T0AzTt3v-dNyh")),
    MapperEntry("zuckerberg", _drive("1NjDcMUL8G-pO3i_9N6EPpQNXeMc3Ar1r")),
)})


class _EqualLinearLrelu(nn.Module):
    """StyleCLIP's EqualLinear with the fused leaky ReLU: ``lrelu(x Wᵀ·(lr_mul/√in) + b·lr_mul)·√2``."""

    def __init__(self, dim: int, lr_mul: float = LR_MUL) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.scale, self.lr_mul = lr_mul / math.sqrt(dim), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul, 0.2) * math.sqrt(2)


class _PixelNormRows(nn.Module):
    """StyleCLIP's PixelNorm on ``[N, rows, dim]`` groups: normalises over dimension 1 (the rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class _GroupMLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        # index 0 is the PixelNorm, as in the checkpoints' ``mapping.{1..4}`` names
        self.mapping = nn.Sequential(_PixelNormRows(), *[_EqualLinearLrelu(dim) for _ in range(NUM_LAYERS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapping(x)


class LevelsMapper(nn.Module):
    """``M(w)``: W+ codes ``[N, num_ws, w_dim]`` -> offsets of the same shape (zero for absent groups).

    Args:
        dim: w_dim (512 for the official mappers).
        groups: which of ``'course'``, ``'medium'``, ``'fine'`` have an MLP.
    """

    def __init__(self, dim: int = 512, groups: tuple[str, ...] = ("course", "medium", "fine")) -> None:
        super().__init__()
        self.dim = dim
        unknown = set(groups) - {g for g, _, _ in GROUPS}
        if unknown:
            raise ValueError(f"unknown mapper groups {sorted(unknown)}")
        for name in groups:
            setattr(self, f"{name}_mapping", _GroupMLP(dim))
        self.groups = tuple(g for g, _, _ in GROUPS if g in groups)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim != 3 or w.shape[2] != self.dim or w.shape[1] <= 8:
            raise ValueError(f"the mapper takes W+ codes [N, num_ws > 8, {self.dim}], got {tuple(w.shape)}")
        parts = []
        for name, start, stop in GROUPS:
            rows = w[:, start:stop]
            parts.append(getattr(self, f"{name}_mapping")(rows) if name in self.groups else torch.zeros_like(rows))
        return torch.cat(parts, dim=1)


def load_mapper(path: str | Path, w_dim: int | None = None, disabled: tuple[str, ...] = ()
                ) -> tuple[LevelsMapper, dict[str, Any]]:
    """Load a StyleCLIP levels-mapper checkpoint: ``(mapper in eval mode, opts)``.

    ``disabled``: groups (``'course'``, ``'medium'``, ``'fine'``) to leave out even if the file has them, as
    the official PTI does per mapper (:attr:`MapperEntry.no_fine`).

    Raises :class:`MapperCheckpointError` for a file that is missing, not readable with ``weights_only``,
    not in the levels-mapper layout (wrong keys or shapes, a single or style-space mapper), or whose width
    differs from ``w_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise MapperCheckpointError(f"{path}: no such mapper checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch's weights-only reader rejects
        raise MapperCheckpointError(f"{path}: not readable as weights only ({type(exc).__name__}: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); StyleCLIP "
                                    "mapper files hold {'state_dict', 'opts'}") from None
    layout = ("expected a StyleCLIP levels-mapper checkpoint: {'state_dict': {'mapper.course_mapping.mapping.1.weight', "
              "...}, 'opts': {...}}")
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise MapperCheckpointError(f"{path}: {layout}")
    opts = data.get("opts") if isinstance(data.get("opts"), dict) else {}
    mapper_type = opts.get("mapper_type", "LevelsMapper")
    if mapper_type != "LevelsMapper" or opts.get("work_in_stylespace"):
        raise MapperCheckpointError(f"{path}: a {'style-space' if opts.get('work_in_stylespace') else mapper_type} "
                                    "mapper; only StyleCLIP's LevelsMapper (the official pretrained mappers) is "
                                    "supported")
    state = {k[len("mapper."):]: v for k, v in data["state_dict"].items() if k.startswith("mapper.")}
    groups = tuple(g for g, _, _ in GROUPS if any(k.startswith(f"{g}_mapping.") for k in state))
    state = {k: v for k, v in state.items() if k.split("_mapping.")[0] not in disabled}
    groups = tuple(g for g in groups if g not in disabled)
    if not groups:
        raise MapperCheckpointError(f"{path}: no mapper.*_mapping weights; {layout}")
    first = state.get(f"{groups[0]}_mapping.mapping.1.weight")
    if not isinstance(first, torch.Tensor) or first.ndim != 2 or first.shape[0] != first.shape[1]:
        raise MapperCheckpointError(f"{path}: {groups[0]}_mapping.mapping.1.weight is missing or not square; {layout}")
    dim = int(first.shape[0])
    if w_dim is not None and dim != int(w_dim):
        raise MapperCheckpointError(f"{path}: the mapper works on {dim}-D codes but the generator has w_dim {w_dim} "
                                    "(StyleCLIP's mappers belong to the FFHQ 1024 generator)")
    mapper = LevelsMapper(dim, groups)
    expected = mapper.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    if missing or extra or wrong:
        raise MapperCheckpointError(
            f"{path}: not the levels-mapper layout (missing {missing[:3]}, unexpected {extra[:3]}, wrong shape "
            f"{wrong[:3]}); {layout}")
    mapper.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return mapper.eval().requires_grad_(False), {k: v for k, v in opts.items()
                                                 if isinstance(v, (str, int, float, bool, type(None)))}


def apply_mapper(mapper: LevelsMapper, w: torch.Tensor, strength: float = PTI_STRENGTH,
                 num_ws: int | None = None) -> torch.Tensor:
    """``w + strength · M(w)``. ``w``: ``[N, num_ws, w_dim]`` or ``[N, w_dim]`` (a W pivot, broadcast to W+
    with ``num_ws`` rows). Returns W+ codes ``[N, num_ws, w_dim]``; strength 0 returns ``w`` itself (the mapper is
    not run), so that the edit at 0 renders the pivot exactly."""
    if w.ndim == 2:
        if num_ws is None:
            raise ValueError("pass num_ws to apply a mapper to [N, w_dim] codes")
        w = w[:, None, :].expand(-1, int(num_ws), -1)
    if not strength:
        return w
    with torch.no_grad():
        return w + float(strength) * mapper.to(w.device)(w)


def mapper_entry(name: str) -> MapperEntry:
    """The official mapper ``name``; ``KeyError`` lists the names."""
    try:
        return MAPPERS[name]
    except KeyError:
        raise KeyError(f"unknown StyleCLIP mapper {name!r}: give a checkpoint path or one of "
                       f"{', '.join(MAPPERS)}") from None


def resolve_mapper(spec: str, cache: Path | None = None, download: bool = True, progress: bool = True) -> Path:
    """A mapper file for ``spec``: an existing path, or an official name (downloaded into the pti cache with
    :func:`pti.zoo.download`, which prints the sha256 it computes). Raises ``KeyError`` / ``pti.zoo.ZooError``."""
    path = Path(spec)
    if path.suffix == ".pt" or path.exists():
        if not path.is_file():
            raise MapperCheckpointError(f"{path}: no such mapper checkpoint")
        return path
    from pti.zoo import ZooEntry, ZooError, cache_dir, download as zoo_download

    entry = mapper_entry(spec)
    zoo = ZooEntry(name=f"styleclip-{entry.name}", filename=entry.filename, resolution=1024, kind="mapper",
                   description=f"StyleCLIP levels mapper '{entry.name}' (FFHQ 1024)", url=entry.url,
                   page=entry.url.replace("usercontent.google.com/download?id=", "google.com/file/d/").split("&")[0],
                   license="MIT (orpatashnik/StyleCLIP); trained on NVIDIA's FFHQ generator (non-commercial)")
    local = (cache or cache_dir()) / zoo.filename
    if local.is_file():
        return local
    if not download:
        raise ZooError(f"{local}: mapper {spec!r} is not downloaded yet")
    return zoo_download(zoo, cache=cache, progress=progress).path


__all__ = ["LevelsMapper", "MapperCheckpointError", "MapperEntry", "MAPPERS", "PTI_STRENGTH", "load_mapper",
           "apply_mapper", "mapper_entry", "resolve_mapper"]
