"""``pti edit``: render W-space edits of a pivot as a labelled grid."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HELP = "apply W-space edit directions (InterFaceGAN, GANSpace, SeFa) to a pivot and write a labelled grid"

# argparse takes "-3,0,3" for an option; let this command's parser read comma lists of
# (negative) numbers as values (``--strengths=-3,0,3`` works regardless)
_NUMBER_LIST = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]*(,\s*-?[\d.]+)+$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = _NUMBER_LIST  # noqa: SLF001 (see _NUMBER_LIST)
    parser.add_argument("--generator", required=True,
                        help="checkpoint path or zoo name; for a PTI edit, the tuned generator (tuned.safetensors)")
    parser.add_argument("--pivot", required=True, help="pivot file written by inversion (pivot.pt)")
    parser.add_argument("--direction", required=True, action="append",
                        help="ganspace:K, sefa:K, FILE.pt (InterFaceGAN [1, w_dim]), FILE.npz#K (GANSpace), "
                             "FILE.pt#NAME (pti collection) or a shipped name (yaw, smile, mouth_open for the demo "
                             "generator); repeat for several rows")
    parser.add_argument("--strengths", default="-3,0,3",
                        help="comma-separated strengths, in sigmas of W for computed/fitted directions and in the "
                             "file's units for official InterFaceGAN files (default -3,0,3)")
    parser.add_argument("--layers", default=None,
                        help="restrict the edit to style inputs START:STOP (half-open, e.g. 0:4); default: the "
                             "direction's own range, usually all")
    parser.add_argument("--direction-generator", default=None,
                        help="generator that ganspace:/sefa: directions are computed from (default --generator; "
                             "give the original checkpoint when --generator is a tuned one)")
    parser.add_argument("--out", default=None,
                        help="output PNG (default: PIVOT_DIR/edits/<direction>.png)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def parse_strengths(text: str) -> list[float]:
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--strengths must be comma-separated numbers (e.g. -3,0,3), got {text!r}") from None
    if not values:
        raise ValueError("--strengths needs at least one number")
    return values


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name if "/" in text else text).strip("_") or "edit"


def run(args: argparse.Namespace) -> int:
    import torch

    from pti.editing.direction import DirectionMismatchError, render_edits
    from pti.editing.loaders import parse_layers, resolve_direction
    from pti.images import save_grid
    from pti.inversion import Pivot
    from pti.stylegan2.checkpoints import load

    try:
        strengths = parse_strengths(args.strengths)
        layers = parse_layers(args.layers)
    except ValueError as exc:
        print(f"pti edit: {exc}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    G = load(args.generator).eval().requires_grad_(False).to(device)
    G_dir = G if args.direction_generator is None else load(args.direction_generator).eval().requires_grad_(False)
    pivot = Pivot.load(args.pivot, map_location=device)
    try:
        pivot.check_fits(G, what=f"generator {args.generator}")
        directions = [resolve_direction(spec, G_dir.to(device), layers=layers) for spec in args.direction]
        for d in directions:
            d.check(int(G.w_dim), int(G.num_ws), what=f"generator {args.generator}")
    except (DirectionMismatchError, ValueError, KeyError, IndexError, FileNotFoundError) as exc:
        print(f"pti edit: {exc}", file=sys.stderr)
        return 1
    noise = [n.to(device) for n in pivot.noise] if pivot.noise else None
    images = render_edits(G, pivot.w.to(device), directions, strengths, noise=noise, noise_mode="const")[0]
    out = Path(args.out) if args.out else Path(args.pivot).parent / "edits" / (
        "+".join(_safe_name(s) for s in args.direction) + ".png")
    col_labels = [f"{s:+g}" if s else "0" for s in strengths]
    row_labels = [d.name + (f" [{d.layers[0]}:{d.layers[1]}]" if d.layers else "") for d in directions]
    save_grid([row for row in images], out, row_labels=row_labels, col_labels=col_labels,
              title=f"{Path(args.pivot).name} on {Path(str(args.generator)).name}")
    for d in directions:
        print(f"{d.name}: {d.source} (one unit of strength = {d.scale:.4g} in W)")
    print(f"wrote {out}")
    return 0
