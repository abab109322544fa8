"""The StyleCLIP options of ``pti edit`` (``--text``, ``--mapper``, ``--method optimize``) and their run.

``pti edit RUN/PHOTO --text "a smiling face" [--neutral "a face"] [--alpha 4.1] [--beta auto]`` (global
directions, prepared beforehand with ``pti styleclip-prepare`` on the run's original generator),
``pti edit RUN/PHOTO --mapper NAME|PATH`` and ``pti edit RUN/PHOTO --text ... --method optimize``. Output,
as for W directions and written by the same function (:func:`pti.editing.run_edits.write_run_edits`):
``edits/<key>.png`` (or ``--out``: a row of the pivot edited on the original generator above a PTI row on the
tuned one, labelled by :func:`pti.editing.run_edits.grid_row_names`), ``edits/<key>_<s>.png`` per PTI edit and
``edits/<key>.json`` saying what the edit is. No torch at import (the parser is built without it).
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
    from pti.commands.edit import load_inputs
    from pti.commands.styleclip_prepare import load_clip_from_args
    from pti.editing.run_edits import write_run_edits
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
    written = write_run_edits(original, loaded.G, loaded.pivot, [edit], out_dir, loaded.inputs, grid=grid,
                              title=f"{out_dir.name}: {edit.spec}", column_label=edit.column_label)
    record = out_dir / "edits" / f"{edit.key}.json"
    grid_text = grid.relative_to(out_dir).as_posix() if grid.is_relative_to(out_dir) else str(grid.resolve())
    atomic_write_json(edit.record(grid_text), record)
    print(edit.description)
    print(f"wrote {', '.join(str(p) for p in written[:-1] + [record, grid])}")
    return 0
