"""Shared implementation of ``pti invert``, ``pti tune`` and ``pti run``."""
from __future__ import annotations

import argparse
import sys

from pti.commands._config_args import add_config_arguments, build_configs


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.config import InversionConfig, LocalityConfig, TuningConfig

    parser.add_argument("input", nargs="?", help="an image file or a folder of images")
    parser.add_argument("--input", dest="input_opt", help="same as the positional INPUT")
    parser.add_argument("--output", "-o", default="runs/default", help="run folder (default: runs/default)")
    parser.add_argument("--generator", "-g", default="demo",
                        help="generator checkpoint (.pkl/.pt/.safetensors) or zoo name (default: demo)")
    parser.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--seed", type=int, default=None, help="seed for inversion and tuning (default: 0)")
    parser.add_argument("--space", choices=["w", "w+"], default=None, help="pivot space (default: w, the paper's)")
    parser.add_argument("--no-align", action="store_true", help="images are already aligned crops")
    parser.add_argument("--locality", action="store_true", help="turn on locality regularisation")
    parser.add_argument("--save-generator", action="store_true", help="write tuned.safetensors per image")
    parser.add_argument("--no-reuse-pivot", action="store_true", help="invert again even if pivot.pt exists")
    parser.add_argument("--redo", action="store_true", help="process images even if already finished")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(parser, InversionConfig, TuningConfig, LocalityConfig)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"pti: --device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def run_job(args: argparse.Namespace, stage: str) -> int:
    from pti.runner import RunOptions, list_images, process_images
    from pti.stylegan2.checkpoints import load

    source = args.input_opt or args.input
    if not source:
        print("pti: give an image file or folder (INPUT or --input)", file=sys.stderr)
        return 2
    inv_cfg, tune_cfg = build_configs(args)
    if args.seed is not None:
        inv_cfg.seed = tune_cfg.seed = args.seed
    if args.space:
        inv_cfg.space = args.space
    if args.locality:
        tune_cfg.locality.enabled = True
    try:
        paths = list_images(source)
    except FileNotFoundError as exc:
        print(f"pti: {exc}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    G = load(args.generator, device=device).eval()
    options = RunOptions(stage="invert" if stage == "invert" else "tune", align=not args.no_align,
                         reuse_pivot=not args.no_reuse_pivot, save_generator=args.save_generator,
                         skip_finished=not args.redo, require_pivot=(stage == "tune"), progress=not args.quiet)
    outcomes = process_images(G, paths, args.output, inv_cfg, tune_cfg, options)
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    print(f"pti {stage}: {done} done, {skipped} already finished, {len(failed)} failed -> {args.output}")
    for o in failed:
        print(f"  FAILED {o.name}: {o.error}", file=sys.stderr)
    return 1 if failed else 0
