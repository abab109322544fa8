"""``pti edit``: render W-space edits of a pivot as a labelled grid.

``pti edit RUN/PHOTO --direction smile`` takes a photo folder of ``pti run``: its ``pivot.pt`` and
``tuned.safetensors`` (kept by ``pti run --save-generator``; a ``--multi-id`` run's ``RUN/tuned.safetensors``);
directions are resolved on the run's original generator (``RUN/summary.json``). ``--generator G --pivot FILE``
names both explicitly and, for a pivot in a run's photo folder, renders the same (:func:`resolve_inputs`).

``--direction`` takes what ``pti run --edit`` takes (:class:`pti.editing.run_edits.EditSpec`: own strengths,
combinations ``smile:1+yaw:2[@STRENGTHS]``); each row is rendered at its own strengths, one column per strength
of any row. The default output name carries the rows, the layer range and non-default strengths
(:func:`pti.editing.run_edits.edit_file_stem`), and an existing file that holds another edit (its PNG text
record :data:`RECORD_KEY`, else its pixels, differ) is replaced only with ``--overwrite`` (else exit 2).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from pti.core.pivot import Pivot

HELP = ("edit a pivot with W/W+ directions (InterFaceGAN, GANSpace, SeFa, files, combinations) or StyleCLIP "
        "(--text, --mapper) and write a labelled grid")

# argparse takes "-3,0,3" for an option; let this command's parser read comma lists of
# (negative) numbers as values (``--strengths=-3,0,3`` works regardless)
_NUMBER_LIST = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]*(,\s*-?[\d.]+)+$")


#: pti.editing.run_edits.DEFAULT_STRENGTHS, written here too so that building the parser imports no torch
#: (tests/test_cli_setup.py; tests/test_run_edits.py checks that the two agree)
DEFAULT_STRENGTHS = "-3,0,3"


#: pti edit's own options after the photo folder, in --help order: (flag, keywords of ``add_argument``); the
#: StyleCLIP ones follow (:func:`pti.commands._styleclip_edit.add_styleclip_arguments`)
_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--generator", {"help": "checkpoint path or zoo name; for a PTI edit, the tuned generator (tuned.safetensors; "
                             "default with a photo folder: its tuned.safetensors)"}),
    ("--pivot", {"help": "pivot file written by inversion (pivot.pt), a bare [num_ws, w_dim] or [1, num_ws, w_dim] "
                         "W+ code (.pt, .npy), NVIDIA's projected_w.npz, or a run's photo folder"}),
    ("--direction", {"required": True, "action": "append", "metavar": "DIRECTION[:STRENGTHS]",
                     "help": "ganspace:K, sefa:K, FILE.pt (InterFaceGAN [1, w_dim] or [num_ws, w_dim]; also .npy, "
                             ".npz), FILE.npz#K (GANSpace), FILE.pt#NAME (pti collection) or a shipped name (yaw, "
                             "smile, mouth_open for the demo generator), optionally with its own strengths "
                             "(yaw:-3,0,3); combine directions with + and a weight each, e.g. 'smile:1+yaw:2' (one "
                             "image: smile 1 and yaw 2 together), and scale the combination with @STRENGTHS "
                             "('smile:1+yaw:2@-1,0,1'); a file whose name has + or @ must exist. Repeat for "
                             "several rows"}),
    ("--strengths", {"help": "comma-separated strengths for rows without their own; for computed/fitted directions "
                             "1 unit = a 4/255 mean image change (pti.editing.strength), for official InterFaceGAN "
                             f"files the file's units (default {DEFAULT_STRENGTHS}; 1 for a combination)"}),
    ("--layers", {"help": "restrict the edit to style inputs START:STOP (half-open, e.g. 0:4); default: the "
                          "direction's own range, usually all"}),
    ("--direction-generator", {"help": "generator that directions are resolved on (ganspace:/sefa: are computed from "
                                       "it; default: the run's original generator for a photo folder, else "
                                       "--generator; give the original checkpoint when --generator is a tuned one)"}),
    ("--out", {"help": "output PNG (default: PIVOT_DIR/edits/<name>.png, the name carrying the directions, the layer "
                       "range and non-default strengths: smile.png, smile_L0-4.png, smile,yaw_s-2_2.png, "
                       "smile1+yaw2.png)"}),
    ("--overwrite", {"action": "store_true",
                     "help": "replace an existing output that holds another edit (without it, pti edit refuses with "
                             "exit 2; rewriting the same edit is always allowed)"}),
    ("--device", {"help": "torch device (default: cuda if available, else cpu)"}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = _NUMBER_LIST  # noqa: SLF001 (see _NUMBER_LIST)
    parser.add_argument("photo", nargs="?", default=None,
                        help="a photo folder of a `pti run` (RUN/PHOTO): its pivot.pt and tuned.safetensors "
                             "(kept by `pti run --save-generator`; a --multi-id run's RUN/tuned.safetensors) are "
                             "used, rendered as the run rendered reconstruction.png")
    for flag, options in _OPTIONS:
        parser.add_argument(flag, **options)
    from pti.commands._styleclip_edit import add_styleclip_arguments

    add_styleclip_arguments(parser)  # --text, --mapper, --method optimize (StyleCLIP)


class _UsageError(ValueError):
    """Bad or missing inputs: the command exits with status 2 and this message."""


@dataclass
class EditInputs:
    """What to edit: the generator, the pivot file, the generator directions are resolved on (None: the
    same), and how to render (``noise_mode``; ``use_pivot_noise``: use the pivot's noise maps instead of the
    generator's own; :class:`pti.editing.run_edits.RenderSettings`). The defaults are how ``pti run`` renders with a
    tuned generator by default (:class:`pti.core.config.TuningConfig`: ``noise_mode='const'``,
    ``use_pivot_noise=False``)."""

    generator: str
    pivot: Path
    direction_generator: str | None = None
    noise_mode: str = "const"
    use_pivot_noise: bool = False


@dataclass
class LoadedInputs:
    """:class:`EditInputs` loaded (:func:`load_inputs`): ``G``, the generator to edit, on ``device``; ``G_dir``, the
    generator directions are resolved on and StyleCLIP's "orig. G" rows are rendered with (the run's original
    generator; ``G`` itself when none other is named), on ``device``; ``pivot``, checked to fit ``G``."""

    inputs: EditInputs
    device: "torch.device"
    G: "torch.nn.Module"
    G_dir: "torch.nn.Module"
    pivot: "Pivot"



def _same_generator(a: str, b: str) -> bool:
    """Whether two generator arguments (paths or zoo names) name the same generator: equal text or the same file."""
    return a == b or (Path(a).is_file() and Path(b).is_file() and Path(a).resolve() == Path(b).resolve())


def unwritable_reason(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (a part of its folder is an existing file, or ``path`` is a
    folder), or None; checked before any work so that the error is one line, not a traceback."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"cannot write {path}: {parent} is a file, not a folder"
    return None


def resolve_inputs(args: argparse.Namespace) -> EditInputs:
    """The :class:`EditInputs` of the arguments; raises :class:`_UsageError`.

    The pivot is a run's photo folder (positional or ``--pivot``: its ``pivot.pt``) or a pivot file. A pivot
    in a run's photo folder (one with ``metrics.json``), whichever form names it, is edited as the run made
    it: the generator defaults to the photo's tuned weights (``RUN/PHOTO/tuned.safetensors``, or a
    ``--multi-id`` run's ``RUN/tuned.safetensors``: :func:`pti.editing.run_edits.tuned_generator_file`),
    rendered as the run rendered its reconstruction (the tuning config's ``noise_mode`` and ``use_pivot_noise``
    in ``metrics.json``), so strength 0 reproduces ``reconstruction.png``; the run's original generator
    (``RUN/summary.json``), given as ``--generator``, is rendered as ``inversion.png`` (the pivot's noise
    maps, ``'const'``); directions are resolved on the original generator unless ``--direction-generator``.
    A pivot file outside a run is rendered with the generator's own constant noise (the runner's default).
    """
    from pti.editing.run_edits import no_tuned_weights_message, tuned_generator_file
    from pti.io_utils import read_json_object
    from pti.jobs.folder import render_settings

    if args.photo and args.pivot:
        raise _UsageError("give a run's photo folder (RUN/PHOTO) or --pivot, not both")
    target = args.photo or args.pivot
    if not target:
        raise _UsageError("give a run's photo folder (pti edit RUN/PHOTO ...) or --generator and --pivot")
    source = Path(target)
    if not source.exists():
        raise _UsageError(f"{source}: no such folder or file; give a photo folder of a `pti run` (RUN/PHOTO) "
                          "or --generator G --pivot FILE")
    if source.is_dir():
        folder, pivot = source, source / "pivot.pt"
        if not pivot.is_file():
            raise _UsageError(f"{source}: no pivot.pt here; give a photo folder of a `pti run` (RUN/PHOTO)")
    else:
        pivot, folder = source, source.parent if (source.parent / "metrics.json").is_file() else None
        if not args.generator:
            raise _UsageError(f"{source}: with a pivot file, --generator is needed (or give a run's photo folder)")
    if folder is None:
        return EditInputs(args.generator, pivot, args.direction_generator)
    original = read_json_object(folder.parent / "summary.json").get("generator")
    original = original if isinstance(original, str) and original else None
    generator = args.generator
    if generator is None:
        tuned = tuned_generator_file(folder)
        if tuned is None:
            raise _UsageError(no_tuned_weights_message(
                folder, ", or pass --generator ORIGINAL to edit the W pivot without PTI"))
        generator = str(tuned)
    inputs = EditInputs(generator, pivot, args.direction_generator or original)
    if original is not None and _same_generator(generator, original):
        inputs.use_pivot_noise = True  # the original generator: as inversion.png is rendered
    else:
        inputs.noise_mode, inputs.use_pivot_noise = render_settings(folder)
    return inputs


def load_inputs(args: argparse.Namespace) -> LoadedInputs:
    """What ``args`` names (:func:`resolve_inputs`), loaded (:class:`LoadedInputs`), after checking that ``--out``
    can be written; ``pti edit`` with W directions and with StyleCLIP (``--text``, ``--mapper``) both start here.
    Raises :class:`_UsageError`, ``ValueError`` (a pivot that does not fit the generator),
    :class:`pti.stylegan2.checkpoints.CheckpointError` or ``OSError``."""
    import torch

    from pti.core.pivot import load_pivot
    from pti.stylegan2.checkpoints import load

    inputs = resolve_inputs(args)
    if args.out and unwritable_reason(Path(args.out)):
        raise _UsageError(unwritable_reason(Path(args.out)))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    G = load(inputs.generator).eval().requires_grad_(False).to(device)
    G_dir = G if inputs.direction_generator is None else \
        load(inputs.direction_generator).eval().requires_grad_(False).to(device)
    pivot = load_pivot(inputs.pivot, G, map_location=device)
    pivot.check_fits(G, what=f"generator {inputs.generator}")
    return LoadedInputs(inputs, device, G, G_dir, pivot)


def run(args: argparse.Namespace) -> int:
    from pti.commands._styleclip_edit import run_styleclip_edit, wants_styleclip

    if wants_styleclip(args):
        return run_styleclip_edit(args)
    from pti.editing.direction import DirectionMismatchError, render_edits
    from pti.editing.loaders import parse_layers
    from pti.editing.run_edits import edit_file_stem, parse_edit, parse_strengths, resolve_edit, strength_text
    from pti.images import grid_size, render_grid, save_png
    from pti.labels import pivot_label
    from pti.stylegan2.checkpoints import CheckpointError

    try:
        strengths = tuple(parse_strengths(args.strengths)) if args.strengths is not None else None
        specs = [parse_edit(text) for text in args.direction]
        layers = parse_layers(args.layers)
        loaded = load_inputs(args)
        inputs, G, pivot, device = loaded.inputs, loaded.G, loaded.pivot, loaded.device
        generator, pivot_path = inputs.generator, inputs.pivot
        if layers is not None and layers[1] > int(G.num_ws):
            raise _UsageError(f"--layers {args.layers}: {generator} has {int(G.num_ws)} style inputs (num_ws); "
                              f"choose START:STOP within 0:{int(G.num_ws)}")
        directions = [resolve_edit(spec, loaded.G_dir, layers=layers) for spec in specs]
        for d in directions:
            d.check(int(G.w_dim), int(G.num_ws), what=f"generator {generator}")
    except (DirectionMismatchError, ValueError, KeyError, IndexError, CheckpointError, OSError) as exc:
        # user errors, all of them (unknown or misfitting directions, --layers out of range, missing files): one
        # line, exit 2 as in `pti run`; a KeyError's text is quoted by str(), so its argument is shown instead
        print(f"pti edit: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2
    if inputs.noise_mode == "random":
        print(f"pti edit: note: {generator} is rendered with random noise (the run's --tune-noise-mode random): "
              "each render draws new noise, so strength 0 does not reproduce reconstruction.png exactly",
              file=sys.stderr)
    # each row at its own strengths (given in its value, else --strengths, else its default); columns: all of them
    row_strengths = [spec.strengths or strengths or spec.default_strengths for spec in specs]
    columns = sorted({s for row in row_strengths for s in row})
    defaults = sorted({s for spec in specs for s in spec.default_strengths})
    out = Path(args.out) if args.out else pivot_path.parent / "edits" / (edit_file_stem(
        [spec.key for spec in specs], layers, None if columns == defaults else columns) + ".png")
    col_labels = [f"{s:+g}" if s else "0" for s in columns]
    row_labels = [d.name + (f" [{d.layers[0]}:{d.layers[1]}]" if d.layers else "") for d in directions]
    title = (f"edits of the {pivot_label(pivot.origin, pivot.space, pivot.steps)} pivot "
             f"on {Path(str(generator)).name}")
    cell = int(G.img_resolution)
    record = {**inputs_record(inputs), "layers": layers,
              "rows": [[spec.text, [strength_text(s) for s in row]] for spec, row in zip(specs, row_strengths)]}
    # an existing file that holds another edit is refused before any rendering when that is decidable (see
    # existing_output); only an image of the grid's size without this record needs the grid's pixels
    existing = existing_output(out, record, args.overwrite,
                               grid_size(len(directions), len(columns), cell, row_labels, col_labels, title))
    if existing.refuses(None):
        print(f"pti edit: {existing.refusal}", file=sys.stderr)
        return 2
    noise = pivot.noise_maps(device) if inputs.use_pivot_noise else None
    rows = []
    for d, row in zip(directions, row_strengths):
        images = render_edits(G, pivot.w.to(device), d, list(row), noise=noise, noise_mode=inputs.noise_mode)[0, 0]
        by_strength = dict(zip(row, images))
        rows.append([by_strength.get(s) for s in columns])
    grid = render_grid(rows, row_labels=row_labels, col_labels=col_labels, cell_size=cell, title=title, what=str(out))
    if existing.refuses(grid):
        print(f"pti edit: {existing.refusal}", file=sys.stderr)
        return 2
    try:
        save_png(grid, out, text=record_text(record))
    except OSError as exc:  # e.g. a folder that cannot be made, no permission, a full disk
        print(f"pti edit: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for d in directions:
        print(f"{d.name}: {d.source} (one unit of strength = {d.scale:.4g} in W)")
    print(f"wrote {out}")
    return 0


#: PNG text chunk that records what an edit grid shows (its generator, pivot, rows and strengths; for a StyleCLIP
#: edit, its images and grid: :func:`pti.commands._styleclip_edit.run_styleclip_edit`)
RECORD_KEY = "pti-edit"


def record_text(record: dict) -> dict[str, str]:
    """The PNG text chunks that record ``record`` (a JSON object) in an output: :data:`RECORD_KEY` -> its JSON."""
    return {RECORD_KEY: json.dumps(record, sort_keys=True)}


def _path_text(value: str | Path | None) -> str | None:
    """An absolute path for an existing file (the same file under any working directory), else the text."""
    if value is None:
        return None
    return str(Path(value).resolve()) if Path(value).exists() else str(value)


def inputs_record(inputs: EditInputs) -> dict[str, str | None]:
    """The part of an output's record (:data:`RECORD_KEY`) that says what was edited: generator, pivot and direction
    generator, each an absolute path where it is a file."""
    return {"generator": _path_text(inputs.generator), "pivot": _path_text(inputs.pivot),
            "direction_generator": _path_text(inputs.direction_generator)}


@dataclass(frozen=True)
class Existing:
    """What an existing output file means for a new image (:func:`existing_output`): ``refusal`` says why it must not
    be replaced (None: it may be); with ``pixels`` (the file's, RGB) the refusal stands only if the new image's
    pixels differ from them."""

    refusal: str | None = None
    pixels: "np.ndarray | None" = None

    def refuses(self, grid: "Image.Image | None") -> bool:
        """Whether writing the image ``grid`` is refused; ``grid`` None: not rendered yet (refused only when decided
        without it)."""
        import numpy as np

        if self.refusal is None:
            return False
        if self.pixels is None:
            return True
        return grid is not None and not np.array_equal(self.pixels, np.asarray(grid.convert("RGB")))


def overwrite_refusal(out: Path, what: str = "other directions, layers, strengths, pivot or generator",
                      elsewhere: str = ", or --out to write elsewhere") -> str:
    """The one line that refuses to replace ``out``, which holds another edit (``what`` may differ)."""
    return f"{out} exists and holds another edit ({what}); pass --overwrite to replace it{elsewhere}"


def existing_output(out: Path, record: dict, overwrite: bool, size: tuple[int, int], refusal: str | None = None,
                    ) -> Existing:
    """Whether ``out`` may be replaced by the image that ``record`` describes, of ``size`` (width, height) pixels,
    decided before rendering where it can be: yes when ``out`` does not exist, ``overwrite`` is set or ``out``
    records the same edit (its PNG text :data:`RECORD_KEY`); no when it is not a readable image or its size differs;
    otherwise (another or no record, the same size) yes only if the image's pixels equal its pixels. ``refusal``:
    the message (default :func:`overwrite_refusal` of ``out``). W directions (the grid) and StyleCLIP edits (its
    images and grid) are both checked here."""
    import numpy as np
    from PIL import Image

    if overwrite or not out.exists():
        return Existing()
    refusal = refusal or overwrite_refusal(out)
    try:
        with Image.open(out) as old:
            if getattr(old, "text", {}).get(RECORD_KEY) == record_text(record)[RECORD_KEY]:
                return Existing()
            if old.size == tuple(size):
                return Existing(refusal, np.asarray(old.convert("RGB")))
    except (OSError, ValueError):
        pass  # not a readable image: another file, refused
    return Existing(refusal)
