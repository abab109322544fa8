"""``pti fit-boundaries``: InterFaceGAN boundaries for a generator, scored with dlib landmarks."""
from __future__ import annotations

import argparse
import sys

from pti.commands._config_args import bounded, seed_type

HELP = "fit InterFaceGAN boundaries (yaw, smile, mouth_open) for a generator from dlib-scored samples"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="checkpoint path or zoo name (e.g. demo)")
    parser.add_argument("--samples", type=bounded(int, ge=1), default=4000, help="generated samples to score (default 4000)")
    parser.add_argument("--out", required=True, help="output .pt collection (e.g. pti/assets/boundaries_demo.pt)")
    parser.add_argument("--attributes", default="yaw,smile,mouth_open",
                        help="comma-separated attributes (default yaw,smile,mouth_open)")
    parser.add_argument("--seed", type=seed_type(), default=0, help="sampling seed (default 0)")
    parser.add_argument("--truncation", type=bounded(float, ge=0, le=1), default=1.0, help="truncation psi for the samples, in [0, 1] (default 1)")
    parser.add_argument("--extreme-fraction", type=bounded(float, gt=0, le=0.5), default=0.3,
                        help="fraction of scored samples taken from each end of the score range, in (0, 0.5] (default 0.3)")
    parser.add_argument("--heldout-fraction", type=bounded(float, gt=0, lt=1), default=0.25,
                        help="fraction of labelled samples held out to measure accuracy, in (0, 1) (default 0.25)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=bounded(int, ge=1), default=32,
                        help="samples rendered and scored per forward pass (default 32)")


def markdown_table(fits_metadata: dict) -> str:
    """A model-card table of the fits recorded in a collection's metadata."""
    lines = ["| boundary | held-out accuracy | train accuracy | held-out / train samples | "
             "Spearman (held-out, all scored) | scored fraction |",
             "|---|---|---|---|---|---|"]
    for name, s in fits_metadata.items():
        lines.append(f"| {name} | {s['heldout_accuracy']:.3f} | {s['train_accuracy']:.3f} | "
                     f"{s['n_heldout']} / {s['n_train']} | {s['heldout_spearman']:.3f} | "
                     f"{s.get('scored_fraction', float('nan')):.3f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from pti.editing.interfacegan import fit_generator_boundaries
    from pti.editing.loaders import save_directions
    from pti.editing.scorers import ATTRIBUTES
    from pti.stylegan2.checkpoints import load

    attributes = [a.strip() for a in args.attributes.split(",") if a.strip()]
    unknown = set(attributes) - set(ATTRIBUTES)
    if unknown:
        print(f"pti fit-boundaries: unknown attributes {sorted(unknown)}; available: {', '.join(ATTRIBUTES)}",
              file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    G = load(args.generator).eval().requires_grad_(False).to(device)
    try:
        fits, metadata = fit_generator_boundaries(G, attributes, args.samples, seed=args.seed,
                                                  truncation_psi=args.truncation,
                                                  extreme_fraction=args.extreme_fraction,
                                                  heldout_fraction=args.heldout_fraction, batch_size=args.batch_size)
    except ValueError as exc:  # e.g. too few faces detected in the samples
        print(f"pti fit-boundaries: {args.generator}: {exc}", file=sys.stderr)
        return 1
    metadata["generator"] = str(args.generator)
    save_directions(args.out, [f.direction for f in fits], metadata)
    print(f"wrote {len(fits)} boundaries to {args.out}")
    print(markdown_table(metadata["fits"]))
    return 0
