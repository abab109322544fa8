"""The StyleCLIP options of ``pti edit`` (``--text``, ``--mapper``, ``--method optimize``) and their run.

``pti edit RUN/PHOTO --text "a smiling face" [--neutral "a face"] [--alpha 4.1] [--beta auto]`` (global
directions, prepared beforehand with ``pti styleclip-prepare`` on the run's original generator),
``pti edit RUN/PHOTO --mapper NAME|PATH`` and ``pti edit RUN/PHOTO --text ... --method optimize``. Output,
as for W directions and laid out, rendered and written as ``pti run --edit`` writes them
(:class:`pti.editing.run_edits.RunEditFiles`): ``edits/<key>.png`` (or ``--out``: a row of the pivot edited on the
original generator above a PTI row on the tuned one, labelled by :func:`pti.editing.run_edits.grid_row_names`),
``edits/<key>_<s>.png`` per PTI edit and ``edits/<key>.json`` saying what the edit is. The images record the edit
(PNG text :data:`pti.commands.edit.RECORD_KEY`), and an existing output that holds another edit is refused
(exit 2) unless ``--overwrite``, by the W form's rule (:func:`pti.commands.edit.existing_output`; the JSON record:
its fields). No torch at import (the parser is built without it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_styleclip_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the StyleCLIP options to ``pti edit``'s parser; ``--direction`` becomes optional (one of
    ``--direction``, ``--text``, ``--mapper`` is needed: checked in :func:`run_styleclip_edit`)."""
    from pti.commands.styleclip_prepare import add_clip_arguments

    for action in parser._actions:  # noqa: SLF001 - --direction is not needed for a StyleCLIP edit
        if action.dest == "direction":
            action.required = False
    group = parser.add_argument_group("StyleCLIP (text-driven edits; Patashnik et al. 2021)")
    group.add_argument("--text", default=None, help="target text, e.g. 'a smiling face' (global directions, or "
                                                     "--method optimize)")
    group.add_argument("--neutral", default="a face", help="neutral text of a global direction (default 'a face')")
    group.add_argument("--alpha", type=float, default=4.1, help="global-direction strength α (default 4.1)")
    group.add_argument("--beta", default="0.15",
                       help="disentanglement threshold β, or 'auto' (the largest keeping >= 20 channels; default 0.15)")
    group.add_argument("--method", choices=("global", "optimize"), default="global",
                       help="for --text: global directions (default) or latent optimisation")
    group.add_argument("--steps", type=int, default=300, help="--method optimize: Adam steps (default 300)")
    group.add_argument("--lr", type=float, default=0.1, help="--method optimize: learning rate (default 0.1)")
    group.add_argument("--l2-lambda", type=float, default=0.008,
                       help="--method optimize: weight of ||w - w_pivot||^2 (default 0.008)")
    group.add_argument("--mapper", default=None,
                       help="StyleCLIP mapper: an official name (afro, angry, beyonce, bobcut, bowlcut, curly_hair, "
                            "depp, hilary_clinton, mohawk, purple_hair, surprised, taylor_swift, trump, zuckerberg; "
                            "downloaded once) or a checkpoint path")
    group.add_argument("--mapper-strength", type=float, default=0.06,
                       help="k in w + k·M(w) (default 0.06, the official PTI's)")
    group.add_argument("--styleclip-cache", default=None,
                       help="folder of prepared global directions (default: pti styleclip-prepare's)")
    add_clip_arguments(group)


def wants_styleclip(args: argparse.Namespace) -> bool:
    """Whether ``pti edit`` was asked for a StyleCLIP edit (or for nothing, which this reports)."""
    return bool(getattr(args, "text", None) or getattr(args, "mapper", None) or not getattr(args, "direction", None))


def _parse_beta(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        beta = float(text)
    except ValueError:
        raise ValueError(f"--beta must be a number or 'auto', got {text!r}") from None
    if not beta >= 0:
        raise ValueError(f"--beta must be >= 0, got {text!r}")
    return beta


def run_styleclip_edit(args: argparse.Namespace) -> int:
    """Run a StyleCLIP ``pti edit``: the inputs as for W directions (:func:`pti.commands.edit.load_inputs`)."""
    if args.direction and (args.text or args.mapper):
        print("pti edit: give --direction (W directions) or --text/--mapper (StyleCLIP), not both", file=sys.stderr)
        return 2
    if not (args.direction or args.text or args.mapper):
        print("pti edit: give --direction DIRECTION, --text 'a smiling face' or --mapper NAME", file=sys.stderr)
        return 2
    if args.text and args.mapper:
        print("pti edit: give --text or --mapper, not both", file=sys.stderr)
        return 2
    from pti.commands.edit import existing_output, inputs_record, load_inputs, record_text
    from pti.commands.styleclip_prepare import load_clip_from_args
    from pti.editing.run_edits import plan_run_edits
    from pti.editing.styleclip.edits import global_edit, mapper_edit, optimize_edit
    from pti.editing.styleclip.global_directions import NoChannelError
    from pti.editing.styleclip.mapper import MapperCheckpointError
    from pti.editing.styleclip.optimize import OptimizeConfig
    from pti.io_utils import atomic_write_json
    from pti.stylegan2.checkpoints import CheckpointError
    from pti.zoo import ZooError

    try:
        beta = _parse_beta(args.beta)
        loaded = load_inputs(args)
    except (ValueError, CheckpointError, OSError) as exc:
        print(f"pti edit: {exc}", file=sys.stderr)
        return 2
    original = loaded.G_dir
    try:
        if args.mapper:
            edit = mapper_edit(args.mapper, int(original.w_dim), strengths=(0.0, args.mapper_strength))
        else:
            clip = load_clip_from_args(args, loaded.device)
            if clip is None:
                return 2
            if args.method == "optimize":
                edit = optimize_edit(clip, args.text, OptimizeConfig(steps=args.steps, lr=args.lr,
                                                                     l2_lambda=args.l2_lambda))
            else:
                edit = global_edit(original, clip, args.text, args.neutral, args.alpha, beta,
                                   root=Path(args.styleclip_cache) if args.styleclip_cache else None)
    except (FileNotFoundError, NoChannelError, MapperCheckpointError, ZooError, KeyError, ValueError) as exc:
        print(f"pti edit: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    out_dir = Path(loaded.inputs.pivot).parent
    grid = Path(args.out) if args.out else out_dir / "edits" / f"{edit.key}.png"
    files = plan_run_edits(loaded.G, loaded.pivot, [edit], out_dir, grid=grid, title=f"{out_dir.name}: {edit.spec}",
                           column_label=edit.column_label)
    record_file = out_dir / "edits" / f"{edit.key}.json"
    grid_text = grid.relative_to(out_dir).as_posix() if grid.is_relative_to(out_dir) else str(grid.resolve())
    summary = edit.record(grid_text)
    # the rule of the W form (pti.commands.edit.existing_output), for every file this edit writes, decided before
    # rendering where it can be: a file recording the same edit, or holding the same pixels, may be rewritten
    record = {**inputs_record(loaded.inputs), "styleclip": edit.identity()}
    checks = {path: existing_output(path, record, args.overwrite, size, _refusal(path, path == grid))
              for path, size in files.sizes().items()}
    refusal = _summary_refusal(record_file, summary, args.overwrite) or next(
        (c.refusal for c in checks.values() if c.refuses(None)), None)
    if refusal is None:
        rendered = {**files.render(original, loaded.G, loaded.pivot, loaded.inputs), grid: files.grid_image()}
        refusal = next((checks[path].refusal for path, image in rendered.items() if checks[path].refuses(image)), None)
    if refusal is not None:
        print(f"pti edit: {refusal}", file=sys.stderr)
        return 2
    written = files.write(text=record_text(record))
    atomic_write_json(summary, record_file)
    print(edit.description)
    print(f"wrote {', '.join(str(p) for p in written[:-1] + [record_file, grid])}")
    return 0


_OTHERS = "another text, mapper, method, strengths, beta, neutral text, CLIP model, pivot or generator"


def _refusal(path: Path, is_grid: bool) -> str:
    """The refusal to replace ``path``, an output of a StyleCLIP edit (only the grid can move: ``--out``)."""
    from pti.commands.edit import overwrite_refusal

    return overwrite_refusal(path, _OTHERS, ", or --out to write the grid elsewhere" if is_grid else "")


def _summary_refusal(path: Path, summary: dict, overwrite: bool) -> str | None:
    """Why ``edits/<key>.json`` (``path``) must not be replaced by ``summary``, or None: it exists (without
    ``overwrite``) and records another edit (a field other than ``grid`` differs; a field it lacks is not a
    difference, so records written before a field was added still match) or is no such record."""
    from pti.io_utils import read_json_object

    if overwrite or not path.exists():
        return None
    old = read_json_object(path)
    if "method" in old and all(old[k] == summary.get(k) for k in old if k != "grid"):
        return None
    return _refusal(path, False)
