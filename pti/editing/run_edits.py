"""Edits rendered during a run (``pti run --edit DIRECTION[:STRENGTHS]``), and the W-vs-PTI edit
renderer that ``pti demo`` uses too.

After tuning, while the tuned generator θ* is still in memory, each requested edit of the pivot
``w_p`` is rendered into the photo's (staging) folder::

    edits/<key>_<s>.png   G(w_p + s·scale·d; θ*) for each strength s (e.g. edits/smile_-3.png)
    edits/grid.png        labelled grid: for each direction a row "<pivot> (orig. G): <key>" (the pivot
                          edited on the original generator θ, as ``pti edit`` on the original would show
                          it; <pivot> names its origin and space, :func:`grid_row_names`, e.g. "W inversion"
                          or "e4e W+ + 25 steps") above a row "PTI: <key>" (the same edit on θ*); one
                          column per strength

``<key>`` is the direction spec made file-safe (:func:`edit_key`: ``smile``, ``sefa_2``, ``age`` for
``dir/age.pt``). The PTI edit at strength 0 is the PTI reconstruction (same code, noise and noise
mode: :func:`render_w_and_pti`). A finished photo is not tuned again, so edits asked for later need
its tuned weights (``--save-generator``): :func:`missing_edits_message` says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from pti.editing.direction import Direction, render_edits

if TYPE_CHECKING:
    from pti.config import TuningConfig
    from pti.pivot import Pivot

#: strengths of an edit given without them (``--edit smile``); the default of ``pti edit --strengths``
DEFAULT_STRENGTHS = "-3,0,3"
#: direction methods whose spec itself has a colon (``sefa:2``): ``sefa:2:-3,3`` gives strengths
_INDEXED_METHODS = ("ganspace", "sefa")


def parse_strengths(text: str) -> list[float]:
    """``"-3,0,3"`` -> ``[-3.0, 0.0, 3.0]``; raises ``ValueError`` for anything but comma-separated numbers."""
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"strengths must be comma-separated numbers (e.g. -3,0,3), got {text!r}") from None
    if not values:
        raise ValueError("strengths: give at least one number (e.g. -3,0,3)")
    return values


def parse_edit(text: str) -> tuple[str, tuple[float, ...]]:
    """``"DIRECTION[:STRENGTHS]"`` -> ``(direction spec, strengths)``.

    The strengths follow the last colon (``yaw:-3,0,3``, ``sefa:2:-2,2``); ``sefa:2`` and
    ``ganspace:5`` alone are directions with :data:`DEFAULT_STRENGTHS`. Raises ``ValueError``.
    """
    head, sep, tail = text.rpartition(":")
    if not sep or not head or head in _INDEXED_METHODS:
        return text, tuple(parse_strengths(DEFAULT_STRENGTHS))
    try:
        return head, tuple(parse_strengths(tail))
    except ValueError as exc:
        raise ValueError(f"--edit {text!r}: after the last ':' come the strengths ({exc}); write e.g. "
                         f"yaw:-3,0,3 or sefa:2:-3,0,3") from None


def edit_key(spec: str) -> str:
    """A file-safe key for a direction spec: ``smile`` -> ``smile``, ``sefa:2`` -> ``sefa_2``,
    ``dir/age.pt`` -> ``age``, ``pca.npz#3`` -> ``pca_3``."""
    file_part, _, key = spec.partition("#")
    path = Path(file_part)
    base = path.stem if path.suffix in (".pt", ".npy", ".npz") else file_part
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base + (f"_{key}" if key else "")).strip("_.") or "edit"


def strength_text(strength: float) -> str:
    """How a strength appears in file names and labels: ``-3``, ``0``, ``1.5`` (never ``-0``)."""
    return f"{float(strength) + 0.0:g}"


@dataclass(frozen=True)
class RunEdit:
    """One requested edit: ``direction`` (resolved for the run's original generator) at ``strengths``.

    ``key`` names its files (:func:`edit_key`), ``spec`` is the command-line text it came from.
    """

    key: str
    direction: Direction
    strengths: tuple[float, ...]
    spec: str = ""

    def files(self) -> list[str]:
        """Its PTI edit images, relative to the photo folder: ``edits/<key>_<s>.png`` per strength."""
        return [f"edits/{self.key}_{strength_text(s)}.png" for s in self.strengths]


def resolve_run_edits(texts: Sequence[str], G: torch.nn.Module) -> list[RunEdit]:
    """Parse and resolve ``--edit`` values for the original generator ``G`` (see
    :func:`pti.editing.loaders.resolve_direction` for the direction syntax).

    Raises ``ValueError`` (bad syntax, unknown or misfitting direction, a direction given twice),
    ``KeyError``/``IndexError`` (no such entry in a direction file) or ``FileNotFoundError``.
    """
    from pti.editing.loaders import resolve_direction

    edits: list[RunEdit] = []
    for text in texts:
        spec, strengths = parse_edit(text)
        edits.append(RunEdit(edit_key(spec), resolve_direction(spec, G), strengths, text))
    keys = [e.key for e in edits]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"--edit: {', '.join(repeated)} given more than once; list all its strengths in one "
                         f"--edit (e.g. {repeated[0]}:-3,0,3)")
    return edits


def edit_files(edits: Sequence[RunEdit]) -> list[str]:
    """Every file the edits write into a photo folder (relative paths), grid included."""
    return [f for e in edits for f in e.files()] + (["edits/grid.png"] if edits else [])


@torch.no_grad()
def render_w_and_pti(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", direction: Direction,
                     strengths: Sequence[float], noise_mode: str = "const", use_pivot_noise: bool = False,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One pivot edited on the original and on the tuned generator: ``(w_edits, pti_edits)``, each
    ``[S, C, H, W]`` float32 in [-1, 1] on ``tuned``'s device (S = ``len(strengths)``).

    W edits: ``G`` with the pivot's noise maps and noise mode ``'const'``, as the W inversion image is
    rendered (strength 0 reproduces it). PTI edits: ``tuned`` rendered like the PTI reconstruction, with
    ``noise_mode`` (:attr:`TuningConfig.noise_mode`) and the pivot's noise maps only when
    ``use_pivot_noise`` (strength 0 reproduces the reconstruction). Both go through
    :func:`pti.editing.direction.render_edits`.
    """
    device = next(tuned.parameters()).device
    w = pivot.w.to(device)
    noise = pivot.noise_maps(device)
    w_edits = render_edits(G, w, direction, list(strengths), noise=noise, noise_mode="const")[0, 0]
    pti_edits = render_edits(tuned, w, direction, list(strengths), noise=noise if use_pivot_noise else None,
                             noise_mode=noise_mode)[0, 0]
    return w_edits, pti_edits


def grid_row_names(pivot: "Pivot") -> tuple[str, str]:
    """The two row names of each direction in ``edits/grid.png``: the pivot edited on the original generator
    (named by :func:`pti.labels.pivot_label`, e.g. ``"e4e W+ + 25 steps (orig. G)"``) and ``"PTI"``."""
    from pti.labels import pivot_label

    return f"{pivot_label(pivot.origin, pivot.space, pivot.steps)} (orig. G)", "PTI"


def write_run_edits(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", edits: Sequence[RunEdit],
                    out_dir: Path, tune_cfg: "TuningConfig") -> list[str]:
    """Render ``edits`` of ``pivot`` and write them into ``out_dir/edits/`` (see the module docstring);
    returns the relative paths written. Each file is written atomically; ``out_dir`` is meant to be
    the photo's staging folder (:func:`pti.runner.run_one`)."""
    from pti.images import save_grid, write_image
    from pti.labels import pivot_label

    out_dir = Path(out_dir)
    columns = sorted({float(s) for e in edits for s in e.strengths})
    rows: list[list[torch.Tensor | None]] = []
    labels: list[str] = []
    for e in edits:
        w_img, pti_img = render_w_and_pti(G, tuned, pivot, e.direction, e.strengths, tune_cfg.noise_mode,
                                          tune_cfg.use_pivot_noise)
        for name, img in zip(e.files(), pti_img):
            write_image(img, out_dir / name)
        for method, images in zip(grid_row_names(pivot), (w_img, pti_img)):
            by_strength = {float(s): img for s, img in zip(e.strengths, images)}
            rows.append([by_strength.get(s) for s in columns])
            labels.append(f"{method}: {e.key}")
    resolution = int(getattr(tuned, "img_resolution", 256))
    save_grid(rows, out_dir / "edits" / "grid.png", row_labels=labels,
              col_labels=[f"s={strength_text(s)}" for s in columns], cell_size=min(256, max(128, resolution)),
              title=f"edits of the {pivot_label(pivot.origin, pivot.space, pivot.steps)} pivot\n"
                    f"orig. G: the original generator; PTI: the tuned one")
    return edit_files(edits)


def missing_edits_message(run_dir: Path, names: Sequence[str], edits: Sequence[RunEdit]) -> str:
    """What to do about finished photos (``names``) that lack some of the requested ``edits``."""
    run_dir = Path(run_dir)
    kept = [n for n in names if (run_dir / n / "tuned.safetensors").is_file()]
    lost = [n for n in names if n not in kept]

    def few(items: Sequence[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    text = (f"{run_dir}: {len(names)} finished photo(s) lack some of the requested edits ({few(list(names))}); "
            f"a finished photo is not tuned again, and its edits need its tuned weights.")
    if kept:
        spec, strengths = parse_edit(edits[0].spec)
        text += (f" {len(kept)} kept them (tuned.safetensors): render with `pti edit {run_dir / kept[0]} "
                 f"--direction {spec} --strengths={','.join(strength_text(s) for s in strengths)}`.")
    if lost:
        text += (f" {len(lost)} were run without --save-generator ({few(lost)}): run again with --redo "
                 f"--save-generator to tune them again (their pivot.pt is reused) and keep the weights for "
                 f"later edits.")
    return text
