"""``pti bench``: time PTI's execution paths against the official-style baseline, with quality side by side."""
from __future__ import annotations

import argparse
import shlex
import sys

HELP = "time inversion/tuning per step, per image and images per minute for each execution path vs a baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.bench_presets import DEFAULT_PATHS, GENERATOR_CONFIGS, PERCEPTUAL_MODES
    from pti.commands._config_args import bounded, seed_type

    parser.description = (
        "Run PTI (inversion + pivotal tuning) on the same targets with each execution path and print a table: "
        "ms per inversion / tuning / tuning+locality step per image, seconds per image, images per minute "
        "(measured and projected to 450+350 steps), peak memory, warm-up, final MSE and perceptual distance, "
        "with ratios to the baseline path (fp32, CUDA ops, one photo at a time, for-loop Adam, a sync per step, "
        "no compilation). Path tokens, joined with '+': baseline, bf16, fp16, fp16-layers, channels-last, "
        "loop|foreach|fused, compile, cudagraphs, nosync[:N], lpips256|lpips:R, ref-ops, batched:K|batched:auto, "
        "tf32|no-tf32 (TF32 convolutions and matmuls on or off), graphs (whole steps captured as CUDA graphs), "
        "fast (= batched:auto+bf16+nosync).")
    parser.add_argument("--config", default="f1024", choices=sorted(GENERATOR_CONFIGS),
                        help="generator architecture with random weights (default: f1024, StyleGAN2 config-f 1024x1024)")
    parser.add_argument("--checkpoint", default=None, help="use this generator file instead of random weights")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--paths", default=None,
                        help=f"comma-separated paths (default on cuda: {DEFAULT_PATHS['cuda']}; "
                             f"on cpu: {DEFAULT_PATHS['cpu']}); baseline is always run first")
    parser.add_argument("--inv-steps", type=bounded(int, ge=0), default=450, help="inversion steps per photo (paper: 450)")
    parser.add_argument("--tune-steps", type=bounded(int, ge=0), default=350, help="tuning steps per photo (paper: 350)")
    parser.add_argument("--locality-steps", type=bounded(int, ge=0), default=20, help="steps of the locality-regularised timing")
    parser.add_argument("--warmup-steps", type=bounded(int, ge=0), default=2, help="steps of each untimed warm-up phase")
    parser.add_argument("--images", type=bounded(int, ge=1), default=8, help="photos per path (batched paths use chunks of K)")
    parser.add_argument("--w-avg-samples", type=bounded(int, ge=1), default=10_000, help="mapping samples for w statistics")
    parser.add_argument("--early-stop", action="store_true",
                        help="keep the paper's LPIPS early stop (default: off, every path runs every step)")
    parser.add_argument("--repeat-baseline", action="store_true",
                        help="run the baseline again at the end (shows drift on a shared machine; × uses the mean)")
    parser.add_argument("--targets", default=None, help="folder of aligned photos (default: synthetic targets)")
    parser.add_argument("--seed", type=seed_type(), default=0,
                        help="seed of the random generator weights, synthetic targets, inversion and tuning (default 0)")
    parser.add_argument("--threads", type=bounded(int, ge=1), default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--out", default=None, help="markdown file to put the table in (its own section is replaced)")
    parser.add_argument("--section", default=None,
                        help="name of the section of --out to replace (default: <config or checkpoint>-<device>); "
                             "give each run its own to keep several tables")
    parser.add_argument("--json", default=None, help="also write the raw numbers to this JSON file")
    parser.add_argument("--perceptual", default="auto", choices=PERCEPTUAL_MODES,
                        help="networks to time with: auto (LPIPS where torchvision's weights are at hand, else LPIPS "
                             "on random backbones of the same architecture: random-vgg for inversion, random-alex for "
                             "tuning; same FLOPs, never reported as quality), random (always those), effnet (the "
                             "EfficientNet-Lite0 fallback). Quality columns use LPIPS-alex or the named fallback")


def run(args: argparse.Namespace) -> int:
    import torch

    from pti.bench import DEFAULT_PATHS, BenchConfig, format_markdown, report_json, run_bench, section_key, write_section
    from pti.io_utils import atomic_write_text

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device_type = torch.device(device).type
    paths = (args.paths or DEFAULT_PATHS.get(device_type, DEFAULT_PATHS["cpu"])).split(",")
    for name, value in (("--inv-steps", args.inv_steps), ("--tune-steps", args.tune_steps),
                        ("--locality-steps", args.locality_steps), ("--warmup-steps", args.warmup_steps),
                        ("--images", args.images)):
        if value < 1:
            print(f"pti bench: {name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    cfg = BenchConfig(config=args.config, checkpoint=args.checkpoint, device=device, paths=paths,
                      inv_steps=args.inv_steps, tune_steps=args.tune_steps, locality_steps=args.locality_steps,
                      warmup_steps=args.warmup_steps, images=args.images, w_avg_samples=args.w_avg_samples,
                      early_stop=args.early_stop, targets=args.targets, seed=args.seed, threads=args.threads,
                      repeat_baseline=args.repeat_baseline, perceptual=args.perceptual)
    try:
        from pti.bench import parse_path

        for p in paths:
            parse_path(p)
        report = run_bench(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (ValueError, RuntimeError) as exc:
        print(f"pti bench: {exc}", file=sys.stderr)
        return 2
    command = "pti " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else None
    markdown = format_markdown(report, command)
    print(markdown)
    if args.out:
        write_section(args.out, args.section or section_key(report), markdown)
        print(f"pti bench: wrote {args.out}", file=sys.stderr)
    if args.json:
        atomic_write_text(report_json(report), args.json)
    return 1 if report.failures else 0
