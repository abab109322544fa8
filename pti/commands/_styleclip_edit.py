"""The StyleCLIP options of ``pti edit`` (``--text``, ``--mapper``, ``--method optimize``) and their run.

``pti edit RUN/PHOTO --text "a smiling face" [--neutral "a face"] [--alpha 4.1] [--beta auto]`` (global
directions, prepared beforehand with ``pti styleclip-prepare`` on the run's original generator),
``pti edit RUN/PHOTO --mapper NAME|PATH`` and ``pti edit RUN/PHOTO --text ... --method optimize``. Output,
as for W directions: ``edits/<key>.png`` (a W row on the original generator above a PTI row on the tuned
one), ``edits/<key>_<s>.png`` per PTI edit and ``edits/<key>.json`` saying what the edit is.
No torch at import (the parser is built without it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


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


def run_styleclip_edit(args: argparse.Namespace, resolve_inputs: Callable[[argparse.Namespace], object]) -> int:
    """Run a StyleCLIP ``pti edit``; ``resolve_inputs`` is :func:`pti.commands.edit.resolve_inputs`."""
    if args.direction and (args.text or args.mapper):
        print("pti edit: give --direction (W directions) or --text/--mapper (StyleCLIP), not both", file=sys.stderr)
        return 2
    if not (args.direction or args.text or args.mapper):
        print("pti edit: give --direction DIRECTION, --text 'a smiling face' or --mapper NAME", file=sys.stderr)
        return 2
    if args.text and args.mapper:
        print("pti edit: give --text or --mapper, not both", file=sys.stderr)
        return 2
    import torch

    from pti.commands.styleclip_prepare import load_clip_from_args
    from pti.editing.styleclip.edits import global_edit, mapper_edit, optimize_edit, write_edits
    from pti.editing.styleclip.global_directions import NoChannelError
    from pti.editing.styleclip.mapper import MapperCheckpointError
    from pti.editing.styleclip.optimize import OptimizeConfig
    from pti.core.pivot import load_pivot
    from pti.stylegan2.checkpoints import CheckpointError, load
    from pti.zoo import ZooError

    try:
        beta = _parse_beta(args.beta)
        inputs = resolve_inputs(args)
        if args.out:
            from pti.commands.edit import unwritable_reason

            if unwritable_reason(Path(args.out)):
                raise ValueError(unwritable_reason(Path(args.out)))
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tuned = load(inputs.generator).eval().requires_grad_(False).to(device)
        original = tuned if inputs.direction_generator is None else \
            load(inputs.direction_generator).eval().requires_grad_(False).to(device)
        pivot = load_pivot(inputs.pivot, tuned, map_location=device)
    except (ValueError, CheckpointError, FileNotFoundError) as exc:
        print(f"pti edit: {exc}", file=sys.stderr)
        return 2
    try:
        if args.mapper:
            edit = mapper_edit(args.mapper, int(original.w_dim), strengths=(0.0, args.mapper_strength))
        else:
            clip = load_clip_from_args(args, device)
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
    out_dir = Path(inputs.pivot).parent
    grid = f"edits/{edit.key}.png"
    written = write_edits(original, tuned, pivot, [edit], out_dir, inputs.noise_mode, inputs.pivot_noise,
                          grid_name=grid, title=f"{out_dir.name}: {edit.spec}")
    if args.out:
        import shutil

        shutil.copyfile(out_dir / grid, args.out)
    print(edit.description)
    print(f"wrote {', '.join(str(out_dir / w) for w in written)}" + (f" and {args.out}" if args.out else ""))
    return 0
