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
``dir/age.pt``; ``smile1+yaw2`` for the combined edit ``smile:1+yaw:2``, :class:`EditSpec`).
The PTI edit at strength 0 is the PTI reconstruction (same code, noise and noise
mode: :func:`render_pair`). A finished photo is not tuned again, so edits asked for later need
its tuned weights (``--save-generator``): :func:`missing_edits_message` says so.

W/W+ directions (:class:`RunEdit`) and StyleCLIP edits (:class:`pti.editing.styleclip.edits.StyleClipEdit`) are
both an :class:`Edit`: :func:`render_pair` renders either on the two generators and :func:`write_run_edits`
writes either's files and grid rows (``pti run --edit``, and ``pti edit --text/--mapper`` with its own grid name,
title and column labels).
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import torch

from pti.editing.direction import Direction, render_edits
from pti.io_utils import read_json_object

if TYPE_CHECKING:
    from PIL import Image

    from pti.core.config import TuningConfig
    from pti.core.pivot import Pivot

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
    if not all(math.isfinite(v) for v in values):  # nan, inf, 1e400: no image, and a file name like smile_nan.png
        raise ValueError(f"strengths must be finite numbers (e.g. -3,0,3), got {text!r}")
    return values


#: joins the terms of a combined edit (``smile:1+yaw:2``); a ``+`` followed by a digit or ``.`` is a sign
COMBINE = "+"
#: separates a value's overall strengths (``smile:1+yaw:2@-1,0,1``; also ``yaw@-3,0,3``)
OVERALL = "@"
_DIRECTION_FILES = (".pt", ".npy", ".npz")


def _names_existing_file(text: str) -> bool:
    """Whether ``text`` (up to a ``#KEY``) is an existing file: then its ``:``, ``+`` and ``@`` are part of it."""
    file_part = text.partition("#")[0]
    return bool(file_part) and Path(file_part).is_file()


def _colon_in_path(text: str, index: int) -> bool:
    """Whether the colon at ``index`` belongs to a path: a drive letter (``C:\\`` or ``C:/`` at the start) or a
    colon inside the file part of ``text`` that names an existing file."""
    if index == 1 and text[0].isalpha() and text[2:3] in ("\\", "/"):
        return True
    return index < len(text.partition("#")[0]) and _names_existing_file(text)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.lower().endswith(_DIRECTION_FILES)


def split_strengths(text: str) -> tuple[str, tuple[float, ...] | None]:
    """``"DIRECTION[:STRENGTHS]"`` -> ``(direction, strengths or None)``.

    The strengths follow the last colon when they parse as numbers (``yaw:-3,0,3``, ``sefa:2:-2,2``,
    ``C:\\d\\age.pt:1``). ``sefa:2`` and ``ganspace:5`` alone are directions, and so is a colon of a
    drive letter (``C:\\d\\age.pt``, ``C:/d/age.pt``) or inside the path of an existing file, or before a
    path-like rest (``runs:3/age.pt``). Raises ``ValueError`` (without an option name) for other text.
    """
    head, sep, tail = text.rpartition(":")
    if not sep or not head or head in _INDEXED_METHODS or _colon_in_path(text, len(head)):
        return text, None
    try:
        return head, tuple(parse_strengths(tail))
    except ValueError as exc:
        if _looks_like_path(tail):
            return text, None
        raise ValueError(f"{text!r}: after the last ':' come the strengths ({exc}); write e.g. yaw:-3,0,3 or "
                         f"sefa:2:-3,0,3") from None


@dataclass(frozen=True)
class EditSpec:
    """One parsed edit value (``pti run --edit``, ``pti edit --direction``).

    Syntax: ``DIRECTION[:STRENGTHS]`` (one direction, e.g. ``yaw:-3,0,3``), or a combined edit
    ``DIRECTION[:WEIGHT]+DIRECTION[:WEIGHT]...[@STRENGTHS]`` (e.g. ``smile:1+yaw:2``, ``age:3+yaw:1@-1,0,1``):
    the sum of each direction at its weight (default 1) in its own strength unit, rendered at each of the
    overall STRENGTHS (default 1: the combination as written). ``DIRECTION@STRENGTHS`` works too.

    Attributes:
        terms: ``(direction spec, weight)`` pairs; one pair with weight 1 for a plain direction.
        strengths: the strengths given in the text, or None (then :attr:`default_strengths` or the
            command's ``--strengths``).
        text: the value as given.
    """

    terms: tuple[tuple[str, float], ...]
    strengths: tuple[float, ...] | None
    text: str

    @property
    def combined(self) -> bool:
        """More than one direction, or one at a weight other than 1."""
        return len(self.terms) > 1 or self.terms[0][1] != 1.0

    @property
    def default_strengths(self) -> tuple[float, ...]:
        """:data:`DEFAULT_STRENGTHS` for a plain direction, ``(1.0,)`` (as written) for a combined edit."""
        return (1.0,) if self.combined else tuple(parse_strengths(DEFAULT_STRENGTHS))

    @property
    def key(self) -> str:
        """File-safe key: :func:`edit_key` of a plain direction; ``smile1+yaw2`` (``+`` joins terms, a key ending
        in a digit gets ``_`` before its weight: ``sefa_2_1``) for a combined edit."""
        if not self.combined:
            return edit_key(self.terms[0][0])
        parts = []
        for spec, weight in self.terms:
            k = edit_key(spec)
            parts.append(k + ("_" if k[-1].isdigit() else "") + strength_text(weight))
        return COMBINE.join(parts)

    @property
    def label(self) -> str:
        """Grid label: the key of a plain direction, ``smile 1 + yaw 2`` for a combined edit."""
        if not self.combined:
            return self.key
        return " + ".join(f"{edit_key(spec)} {strength_text(weight)}" for spec, weight in self.terms)


def parse_edit(text: str) -> EditSpec:
    """Parse an edit value (syntax in :class:`EditSpec`). ``+`` and ``@`` are read as syntax unless the whole
    value (up to ``#KEY``) names an existing file; an ``@`` is read as one only when numbers follow it.

    Raises ``ValueError`` with a message that does not repeat the option name (callers prefix it).
    """
    if not text or not text.strip():
        raise ValueError("empty edit: give a direction, e.g. smile, yaw:-3,0,3 or smile:1+yaw:2")
    if _names_existing_file(text):
        return EditSpec(((text, 1.0),), None, text)
    body, overall = text.strip(), None
    head, sep, tail = body.rpartition(OVERALL)
    if sep and head:
        try:
            body, overall = head.strip(), tuple(parse_strengths(tail))
        except ValueError as exc:
            if not _looks_like_path(tail):  # else an '@' of a (missing) file's name: reported as a file below
                raise ValueError(f"{text!r}: '{OVERALL}' is followed by the strengths of the whole edit ({exc}); "
                                 f"write e.g. smile:1+yaw:2@-1,0,1, or leave '{OVERALL}' out") from None
    # terms are separated by '+' with or without spaces around it ("smile:1 + yaw:2")
    terms_text = [t.strip() for t in re.split(r"\+(?![\d.])", body)] if not _names_existing_file(body) else [body]
    if len(terms_text) == 1 and overall is None:
        spec, strengths = split_strengths(terms_text[0])
        return EditSpec(((spec, 1.0),), strengths, text)
    terms = []
    for term in terms_text:
        if not term:
            raise ValueError(f"{text!r}: an empty term; write e.g. smile:1+yaw:2")
        spec, weights = split_strengths(term)
        if weights is not None and len(weights) != 1:
            raise ValueError(f"{text!r}: each term of a combined edit takes one weight ({term!r} has "
                             f"{len(weights)}); put a strength list after '@', e.g. smile:1+yaw:2@-1,0,1")
        terms.append((spec, weights[0] if weights else 1.0))
    return EditSpec(tuple(terms), overall, text)


def resolve_edit(spec: EditSpec, G: torch.nn.Module, layers: tuple[int, int] | None = None) -> Direction:
    """The direction of ``spec`` for ``G`` (:func:`pti.editing.loaders.resolve_direction` per term); a combined
    edit is :func:`pti.editing.direction.combine` of its terms, named by :attr:`EditSpec.label`."""
    from pti.editing.direction import combine
    from pti.editing.loaders import resolve_direction

    if not spec.combined:
        return resolve_direction(spec.terms[0][0], G, layers=layers)
    return combine([(resolve_direction(d, G, layers=layers), w) for d, w in spec.terms], int(G.num_ws),
                   name=spec.label)


def edit_key(spec: str) -> str:
    """A file-safe key for a direction spec: ``smile`` -> ``smile``, ``sefa:2`` -> ``sefa_2``,
    ``dir/age.pt`` and ``C:\\d\\age.pt`` -> ``age``, ``pca.npz#3`` -> ``pca_3``."""
    file_part, _, key = spec.partition("#")
    name = re.split(r"[\\/]", file_part)[-1]
    base = Path(name).stem if Path(name).suffix in _DIRECTION_FILES else file_part
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base + (f"_{key}" if key else "")).strip("_.") or "edit"


def edit_file_stem(keys: Sequence[str], layers: tuple[int, int] | None = None,
                   strengths: Sequence[float] | None = None) -> str:
    """The output name of a grid of edit rows (``pti edit``): the rows' keys joined by ``,``, then ``_L0-4``
    for a layer range and ``_s-1_0_1`` for strengths other than the default ones (None), e.g.
    ``smile_L0-4``, ``smile,yaw_s-2_2``, ``smile1+yaw2``."""
    stem = ",".join(keys)
    if layers is not None:
        stem += f"_L{layers[0]}-{layers[1]}"
    if strengths is not None:
        stem += "_s" + "_".join(strength_text(s) for s in strengths)
    return stem


#: the ``--edit`` prefixes of StyleCLIP edits (:mod:`pti.editing.styleclip.edits`); everything else is a W/W+ direction
STYLECLIP_PREFIXES = ("text:", "mapper:", "optimize:")


def strength_text(strength: float) -> str:
    """How a strength appears in file names and labels: ``-3``, ``0``, ``1.5`` (never ``-0``)."""
    return f"{float(strength) + 0.0:g}"


@dataclass(frozen=True)
class RunEdit:
    """One requested edit: ``direction`` (resolved for the run's original generator) at ``strengths``.

    ``key`` names its files (:attr:`EditSpec.key`), ``spec`` is the command-line text it came from,
    ``label`` names its grid rows (:attr:`EditSpec.label`; empty: the key).
    """

    key: str
    direction: Direction
    strengths: tuple[float, ...]
    spec: str = ""
    label: str = ""

    def files(self) -> list[str]:
        """Its PTI edit images, relative to the photo folder: ``edits/<key>_<s>.png`` per strength."""
        return [f"edits/{self.key}_{strength_text(s)}.png" for s in self.strengths]

    @torch.no_grad()
    def render(self, G: torch.nn.Module, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
               noise_mode: str = "const") -> torch.Tensor:
        """The edit of codes ``w`` (``[N, w_dim]`` or ``[N, num_ws, w_dim]``) on ``G`` at every strength:
        ``[N, S, C, H, W]`` float32 in [-1, 1] (:func:`pti.editing.direction.render_edits`)."""
        return render_edits(G, w, self.direction, list(self.strengths), noise=noise, noise_mode=noise_mode)[:, 0]


class Edit(Protocol):
    """An edit that :func:`render_pair` and :func:`write_run_edits` take: :class:`RunEdit` (a W/W+ direction) or
    :class:`pti.editing.styleclip.edits.StyleClipEdit`. ``key`` names its files, ``label`` its grid rows (empty:
    the key); ``files()`` are its PTI images ``edits/<key>_<s>.png``, one per strength; ``render(G, w, noise,
    noise_mode)`` gives ``[N, S, C, H, W]`` images of codes ``w`` at every strength."""

    key: str
    strengths: tuple[float, ...]

    @property
    def label(self) -> str: ...

    def files(self) -> list[str]: ...

    def render(self, G: torch.nn.Module, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
               noise_mode: str = "const") -> torch.Tensor: ...


class RenderSettings(Protocol):
    """How a tuned generator is rendered: :class:`pti.core.config.TuningConfig`'s ``noise_mode`` and
    ``use_pivot_noise`` (a run's, or ``pti edit``'s reading of the run's)."""

    noise_mode: str
    use_pivot_noise: bool


def resolve_run_edits(texts: Sequence[str], G: torch.nn.Module) -> list[RunEdit]:
    """Parse and resolve ``--edit`` values for the original generator ``G`` (see
    :func:`pti.editing.loaders.resolve_direction` for the direction syntax).

    Combined edits (``smile:1+yaw:2``, :class:`EditSpec`) are one RunEdit each. Raises ``ValueError`` (bad
    syntax, unknown or misfitting direction, a direction given twice), ``KeyError``/``IndexError`` (no such
    entry in a direction file) or ``FileNotFoundError``; messages do not repeat ``--edit`` (callers prefix it), except
    the hint for a comma before any colon (``smile,yaw``: several edits are several ``--edit``).
    """
    edits: list[RunEdit] = []
    for text in texts:
        if text.startswith(STYLECLIP_PREFIXES):  # StyleCLIP (pti.editing.styleclip.edits)
            from pti.editing.styleclip.edits import resolve_run_edit

            edits.append(resolve_run_edit(text, G))  # type: ignore[arg-type]
            continue
        try:
            spec = parse_edit(text)
            direction = resolve_edit(spec, G)
        except ValueError as exc:
            if "," not in text.partition(":")[0]:
                raise
            raise ValueError(f"{exc}; repeat --edit for several edits (--edit smile --edit yaw), or give strengths "
                             f"after a colon (yaw:-3,0,3)") from exc
        edits.append(RunEdit(spec.key, direction, spec.strengths or spec.default_strengths, text, spec.label))
    _check_distinct_keys(edits)
    return edits


def _direction_identity(edit: RunEdit) -> tuple:
    """What an edit renders, up to its strengths: its terms with direction files as absolute paths."""
    if not edit.spec or edit.spec.startswith(STYLECLIP_PREFIXES):
        return (edit.spec or edit.key,)
    spec = parse_edit(edit.spec)
    terms = []
    for name, weight in spec.terms:
        file_part, hash_, entry = name.partition("#")
        if _looks_like_path(file_part) or Path(file_part).is_file():
            file_part = str(Path(file_part).resolve())
        terms.append((file_part + hash_ + entry, weight))
    return tuple(terms)


def _check_distinct_keys(edits: Sequence[RunEdit]) -> None:
    """Raise ``ValueError`` when two edits would write the same files (``edits/<key>_<s>.png``): the same direction
    given twice (list its strengths once), or two directions with the same name (two files ``a/row.pt`` and
    ``b/row.pt``: rename one)."""
    by_key: dict[str, list[RunEdit]] = {}
    for e in edits:
        by_key.setdefault(e.key, []).append(e)
    for key, group in by_key.items():
        if len(group) < 2:
            continue
        if len({_direction_identity(e) for e in group}) == 1:
            spec = parse_edit(group[0].spec) if len(_direction_identity(group[0])) and \
                isinstance(_direction_identity(group[0])[0], tuple) else None
            example = (f"{spec.text.rpartition(OVERALL)[0] or spec.text}{OVERALL}-1,0,1" if spec and spec.combined
                       else f"{spec.terms[0][0]}:-3,0,3" if spec else f"{group[0].spec}")
            raise ValueError(f"{group[0].spec or key} given more than once; list all its strengths in one "
                             f"--edit (e.g. {example})")
        raise ValueError(f"{' and '.join(repr(e.spec) for e in group)} are different directions with the same "
                         f"name {key!r}: their images would overwrite each other (edits/{key}_<s>.png); copy "
                         f"or rename a file so that the names differ (e.g. {key}_2.pt)")


def edit_files(edits: Sequence[Edit]) -> list[str]:
    """Every file the edits write into a photo folder (relative paths), grid included."""
    return [f for e in edits for f in e.files()] + (["edits/grid.png"] if edits else [])


def render_noise(pivot: "Pivot", device: torch.device, tuned: bool, noise_mode: str = "const",
                 use_pivot_noise: bool = False) -> tuple[list[torch.Tensor] | None, str]:
    """``(noise, noise_mode)`` that a pivot is rendered with, for ``G.synthesis``: on the original generator
    (``tuned=False``) its own noise maps and ``'const'``, as the W inversion image (inversion.png); on a tuned one
    ``noise_mode`` (:attr:`TuningConfig.noise_mode`) with the pivot's noise maps only when ``use_pivot_noise``, as
    the PTI reconstruction (reconstruction.png). Edits (:func:`render_pair`) and ``pti run``'s images
    (:func:`pti.jobs.runner.render`) follow this one rule."""
    if not tuned:
        return pivot.noise_maps(device), "const"
    return (pivot.noise_maps(device) if use_pivot_noise else None), noise_mode


def render_pair(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", edit: Edit, noise_mode: str = "const",
                use_pivot_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One pivot edited on the original and on the tuned generator: ``(w_edits, pti_edits)``, each
    ``[S, C, H, W]`` float32 in [-1, 1] on ``tuned``'s device (S = ``len(edit.strengths)``).

    W edits: ``G`` rendered as the W inversion image (strength 0 reproduces it); PTI edits: ``tuned`` rendered as
    the PTI reconstruction (strength 0 reproduces it), with ``noise_mode`` and ``use_pivot_noise``
    (:func:`render_noise`). Both through ``edit.render``.
    """
    device = next(tuned.parameters()).device
    w = pivot.w.to(device)
    w_noise, w_mode = render_noise(pivot, device, False)
    pti_noise, pti_mode = render_noise(pivot, device, True, noise_mode, use_pivot_noise)
    return (edit.render(G, w, noise=w_noise, noise_mode=w_mode)[0],
            edit.render(tuned, w, noise=pti_noise, noise_mode=pti_mode)[0])


def render_w_and_pti(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", direction: Direction,
                     strengths: Sequence[float], noise_mode: str = "const", use_pivot_noise: bool = False,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`render_pair` of ``direction`` at ``strengths`` (``pti demo``'s edits)."""
    return render_pair(G, tuned, pivot, RunEdit(direction.name, direction, tuple(strengths)), noise_mode,
                       use_pivot_noise)


def grid_row_names(pivot: "Pivot") -> tuple[str, str]:
    """The two row names of each direction in ``edits/grid.png``: the pivot edited on the original generator
    (named by :func:`pti.labels.pivot_label`, e.g. ``"e4e W+ + 25 steps (orig. G)"``) and ``"PTI"``."""
    from pti.labels import pivot_label

    return f"{pivot_label(pivot.origin, pivot.space, pivot.steps)} (orig. G)", "PTI"


@dataclass
class RunEditFiles:
    """The files :func:`write_run_edits` writes for ``edits`` (see the module docstring), laid out before anything is
    rendered (:func:`plan_run_edits`): each PTI edit image (``images``, ``image_size`` pixels square) and the
    labelled ``grid`` (one column per strength of ``columns``, :meth:`sizes` gives its size). :meth:`render`
    renders the PTI images and the grid's rows, :meth:`grid_image` the grid, :meth:`write` writes them all."""

    edits: Sequence[Edit]
    out_dir: Path
    images: list[Path]
    image_size: int
    grid: Path
    columns: list[float]
    row_labels: list[str]
    col_labels: list[str]
    cell_size: int
    title: str
    pixels: dict[Path, "Image.Image"] = field(default_factory=dict)
    rows: list[list[torch.Tensor | None]] = field(default_factory=list)

    def sizes(self) -> dict[Path, tuple[int, int]]:
        """``(width, height)`` in pixels of every file, the grid last (:func:`pti.images.grid_size`)."""
        from pti.images import grid_size

        sizes = {path: (self.image_size, self.image_size) for path in self.images}
        sizes[self.grid] = grid_size(len(self.row_labels), len(self.columns), self.cell_size, self.row_labels,
                                     self.col_labels, self.title)
        return sizes

    def render(self, G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot",
               tune_cfg: "TuningConfig | RenderSettings") -> dict[Path, "Image.Image"]:
        """Render the edits (:func:`render_pair`, as ``tune_cfg`` says): the PTI images (path -> PIL image, kept in
        :attr:`pixels`) and the grid's rows (:attr:`rows`, a row on ``G`` and a row on ``tuned`` per edit)."""
        from pti.images import tensor_to_pil

        self.pixels, self.rows = {}, []
        for e in self.edits:
            w_img, pti_img = render_pair(G, tuned, pivot, e, tune_cfg.noise_mode, tune_cfg.use_pivot_noise)
            for name, img in zip(e.files(), pti_img):
                self.pixels[self.out_dir / name] = tensor_to_pil(img)
            for images in (w_img, pti_img):
                by_strength = {float(s): img for s, img in zip(e.strengths, images)}
                self.rows.append([by_strength.get(s) for s in self.columns])
        return self.pixels

    def _grid_arguments(self) -> dict:
        return {"row_labels": self.row_labels, "col_labels": self.col_labels, "cell_size": self.cell_size,
                "title": self.title}

    def grid_image(self) -> "Image.Image":
        """The grid of the rendered rows (:func:`pti.images.render_grid`), as :meth:`write` writes it."""
        from pti.images import render_grid

        return render_grid(self.rows, what=str(self.grid), **self._grid_arguments())

    def write(self, text: dict[str, str] | None = None) -> list[Path]:
        """Write the rendered PTI images and the grid, each atomically, with ``text`` as PNG text chunks
        (:func:`pti.images.save_png`); returns the paths written, the grid last."""
        from pti.images import save_grid, save_png

        for path, image in self.pixels.items():
            save_png(image, path, text=text)
        save_grid(self.rows, self.grid, text=text, **self._grid_arguments())
        return list(self.pixels) + [self.grid]


def plan_run_edits(tuned: torch.nn.Module, pivot: "Pivot", edits: Sequence[Edit], out_dir: Path, *,
                   grid: Path | None = None, title: str | None = None,
                   column_label: Callable[[float], str] | None = None) -> RunEditFiles:
    """The :class:`RunEditFiles` of ``edits`` of ``pivot`` (nothing rendered yet): the PTI images
    ``out_dir/edits/<key>_<s>.png`` and the grid ``grid`` (default ``out_dir/edits/grid.png``) with, for each edit,
    a row on the original generator and a row on ``tuned`` (:func:`grid_row_names`), one column per strength of any
    edit labelled ``column_label(s)`` (default ``s=<s>``), under ``title`` (default: which pivot, which
    generators)."""
    from pti.labels import pivot_label

    out_dir = Path(out_dir)
    columns = sorted({float(s) for e in edits for s in e.strengths})
    labels = [f"{method}: {e.label or e.key}" for e in edits for method in grid_row_names(pivot)]
    resolution = int(getattr(tuned, "img_resolution", 256))
    return RunEditFiles(
        edits, out_dir, [out_dir / name for e in edits for name in e.files()], resolution,
        Path(grid) if grid is not None else out_dir / "edits" / "grid.png", columns, labels,
        [column_label(s) if column_label else f"s={strength_text(s)}" for s in columns],
        min(256, max(128, resolution)),
        title or f"edits of the {pivot_label(pivot.origin, pivot.space, pivot.steps)} pivot\n"
                 f"orig. G: the original generator; PTI: the tuned one")


def write_run_edits(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", edits: Sequence[Edit],
                    out_dir: Path, tune_cfg: "TuningConfig | RenderSettings", *, grid: Path | None = None,
                    title: str | None = None, column_label: Callable[[float], str] | None = None) -> list[Path]:
    """Render ``edits`` of ``pivot`` (:func:`render_pair`, rendered as ``tune_cfg`` says) and write each PTI edit
    ``out_dir/edits/<key>_<s>.png`` and the labelled grid ``grid`` (:func:`plan_run_edits`; see the module
    docstring). Returns the paths written (the grid last). Each file is written atomically; ``out_dir`` is meant to
    be the photo's staging folder (:func:`pti.jobs.runner.run_one`). ``pti edit --text/--mapper`` plans, checks,
    renders and writes in steps (:class:`RunEditFiles`)."""
    files = plan_run_edits(tuned, pivot, edits, out_dir, grid=grid, title=title, column_label=column_label)
    files.render(G, tuned, pivot, tune_cfg)
    return files.write()


def missing_edits_message(run_dir: Path, names: Sequence[str], edits: Sequence[RunEdit]) -> str:
    """What to do about finished photos (``names``) that lack some of the requested ``edits``: the hint names the
    edits that the first photo with tuned weights lacks (its ``metrics.json`` ``files``)."""
    run_dir = Path(run_dir)
    kept = [n for n in names if (run_dir / n / "tuned.safetensors").is_file()]
    lost = [n for n in names if n not in kept]

    def few(items: Sequence[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    text = (f"{run_dir}: {len(names)} finished photo(s) lack some of the requested edits ({few(list(names))}); "
            f"a finished photo is not tuned again, and its edits need its tuned weights.")
    if kept:
        done = set(read_json_object(run_dir / kept[0] / "metrics.json").get("files") or {})
        missing = [e for e in edits if not set(e.files()) <= done] or list(edits)  # only the grid: all of them
        text += (f" {len(kept)} kept them (tuned.safetensors): render with `pti edit "
                 f"{shlex.quote(str(run_dir / kept[0]))} "
                 + " ".join(f"--direction {shlex.quote(e.spec)}" for e in missing) + "`.")
    if lost:
        text += (f" {len(lost)} {'was' if len(lost) == 1 else 'were'} run without --save-generator ({few(lost)}): run again with "
                 f"--save-generator to tune them again (their pivot.pt is reused) and keep the weights for "
                 f"later edits.")
    return text


def tuned_generator_file(folder: Path) -> Path | None:
    """The tuned generator that a run's photo folder ``RUN/PHOTO`` was rendered with, or None (the run kept no
    weights): ``RUN/PHOTO/tuned.safetensors`` (``pti run --save-generator``), else, for a ``--multi-id`` run, the
    run's one ``RUN/tuned.safetensors`` when ``RUN/multi_id.json`` lists the photo (and the photo's
    ``metrics.json`` records that tuning: the same ``tuning.key``, :mod:`pti.jobs.multi_id`)."""
    folder = Path(folder)
    if (folder / "tuned.safetensors").is_file():
        return folder / "tuned.safetensors"
    shared = folder.parent / "tuned.safetensors"
    record = read_json_object(folder.parent / "multi_id.json")
    photos = record.get("photos")
    if not shared.is_file() or not isinstance(photos, list) or folder.name not in photos:
        return None
    key = (read_json_object(folder / "metrics.json").get("tuning") or {}).get("key")
    return shared if key is None or key == record.get("key") else None


def no_tuned_weights_message(folder: Path, then: str) -> str:
    """The error for a photo folder without tuned weights (:func:`tuned_generator_file` is None): how to get them
    (``pti run ... --save-generator`` redoes such photos, reusing their pivot.pt), then ``then``."""
    folder = Path(folder)
    source = read_json_object(folder.parent / "summary.json").get("input")  # the run's own input, if known
    source = shlex.quote(source) if isinstance(source, str) and source else "INPUT"
    return (f"{folder}: no tuned.safetensors: this run did not keep the tuned weights (it was made without "
            f"--save-generator). Run `pti run {source} --output {shlex.quote(str(folder.parent))} --save-generator` "
            f"(it tunes the photos without kept weights again, reusing their pivot.pt){then}")
