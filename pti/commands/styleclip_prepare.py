"""``pti styleclip-prepare``: StyleCLIP global directions for a generator (channel statistics and Δi_c).

Computes them (``--generator G``; resumable per layer) or imports StyleCLIP's precomputed FFHQ files
(``--import-ffhq``, for NVIDIA's FFHQ generator: ``fs3.npy`` downloaded or ``--fs3 PATH``, and
``--s-mean-std PATH`` if you have it). The result lands in ``<cache>/<generator fingerprint>_<CLIP>/``,
where ``pti edit --text`` finds it. Prepare on the *original* generator: PTI's tuned generators use the
original's directions, as in the paper.
"""
from __future__ import annotations

import argparse
import sys

from pti.commands._config_args import bounded, seed_type

HELP = "compute (or import) StyleCLIP global directions for a generator, for `pti edit --text`"


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--clip-model``, ``--clip-weights``, ``--random-clip`` (shared with ``pti edit``)."""
    parser.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name (default ViT-B-32, StyleCLIP's)")
    parser.add_argument("--clip-weights", default=None,
                        help="local CLIP weights (open_clip_model.safetensors of "
                             "huggingface.co/timm/vit_base_patch32_clip_224.openai); default: download OpenAI's")
    parser.add_argument("--random-clip", action="store_true",
                        help="randomly initialised CLIP (offline tests and demos only: the edits are meaningless)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="checkpoint path or zoo name (the original generator)")
    add_clip_arguments(parser)
    parser.add_argument("--cache", default=None,
                        help="folder of prepared directions (default: $PTI_CACHE_DIR/styleclip or ~/.cache/pti/styleclip)")
    parser.add_argument("--stat-samples", type=bounded(int, ge=1), default=100_000,
                        help="samples for the channel mean/std at psi 0.7 (default 100000, the paper's)")
    parser.add_argument("--samples", type=bounded(int, ge=1), default=100, help="samples each Δi_c averages over (default 100)")
    parser.add_argument("--max-resolution", type=bounded(int, ge=1), default=128,
                        help="channels of conv layers up to this resolution get a direction (default 128)")
    parser.add_argument("--batch-size", type=bounded(int, ge=1), default=16, help="images per CLIP batch (default 16)")
    parser.add_argument("--seed", type=seed_type(), default=0, help="sampling seed (default 0)")
    parser.add_argument("--import-ffhq", action="store_true",
                        help="import StyleCLIP's precomputed FFHQ fs3.npy (downloaded unless --fs3) instead of computing")
    parser.add_argument("--fs3", default=None, help="a local StyleCLIP fs3.npy (with --import-ffhq)")
    parser.add_argument("--s-mean-std", default=None,
                        help="a local StyleCLIP S_mean_std (with --import-ffhq; default: computed from the generator)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=bounded(int, ge=1), default=None, help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    import torch

    from pti.editing.styleclip.global_directions import (PrepareConfig, cache_folder, cache_root, prepare,
                                                         save_prepared)
    from pti.stylegan2.checkpoints import load, weights_fingerprint

    if args.threads:
        torch.set_num_threads(max(1, args.threads))
    if (args.fs3 or args.s_mean_std) and not args.import_ffhq:
        print("pti styleclip-prepare: --fs3/--s-mean-std go with --import-ffhq", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    G = load(args.generator).eval().requires_grad_(False).to(device)
    root = args.cache or cache_root()
    fp = weights_fingerprint(G)
    if args.import_ffhq:
        from pti.editing.styleclip.files import StyleClipFileError, download_fs3, import_global_directions

        try:
            fs3 = args.fs3 or download_fs3()
            gd = import_global_directions(G, fs3, args.s_mean_std, stat_samples=args.stat_samples,
                                          clip_key=args.clip_model)
        except StyleClipFileError as exc:
            print(f"pti styleclip-prepare: {exc}", file=sys.stderr)
            return 2
        folder = cache_folder(root, fp, args.clip_model)
        folder.mkdir(parents=True, exist_ok=True)
        path = save_prepared(gd, folder)
        print(f"{gd.source}\nwrote {path}")
        return 0
    clip = load_clip_from_args(args, device)
    if clip is None:
        return 2
    cfg = PrepareConfig(stat_samples=args.stat_samples, samples=args.samples, max_resolution=args.max_resolution,
                        seed=args.seed, batch_size=args.batch_size)
    folder = cache_folder(root, fp, clip.key)
    try:
        gd = prepare(G, clip, folder, cfg, progress=True)
    except ValueError as exc:
        print(f"pti styleclip-prepare: {exc}", file=sys.stderr)
        return 2
    kept = int((gd.channel_dirs.abs().sum(1) > 0).sum())
    print(f"{kept} channels with a direction (of {gd.channel_dirs.shape[0]}); wrote {folder}")
    return 0


def load_clip_from_args(args: argparse.Namespace, device: "torch.device") -> "Clip | None":  # noqa: F821
    """The CLIP of ``--clip-model/--clip-weights/--random-clip``, or None after printing the error."""
    from pti.editing.styleclip.clip_model import ClipWeightsError, load_clip

    try:
        clip = load_clip(args.clip_model, pretrained=None if args.random_clip else "openai",
                         weights=args.clip_weights, device=device)
    except ClipWeightsError as exc:
        print(f"pti: {exc}", file=sys.stderr)
        return None
    if clip.random_weights:
        print("pti: CLIP has RANDOM weights (--random-clip): text edits are meaningless; for tests and offline "
              "demos only", file=sys.stderr)
    return clip
