"""``pti train-demo``: train (or resume) the 64x64 demo StyleGAN2 on DCGAN faces."""
from __future__ import annotations

import argparse

from pti.commands._config_args import bounded, seed_type

HELP = "train or resume the small demo StyleGAN2 on faces sampled from the DigiFace-1M DCGAN (CPU or CUDA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="train_runs/demo",
                        help="run directory (state.pt, log.txt, samples/, the export and the resume copy)")
    parser.add_argument("--kimg", type=bounded(float, gt=0), default=1000.0, help="train until this many thousand images are seen")
    parser.add_argument("--resume", default="auto",
                        help="'auto' (the newer of OUT/state.pt and OUT/demo_resume.pt; a new run when "
                             "neither exists), 'none', or a state file")
    parser.add_argument("--threads", type=bounded(int, ge=1), default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=seed_type(), default=0, help="seed of a new run")
    parser.add_argument("--batch", type=bounded(int, ge=1), default=None, help="images per step of a new run (default 16)")
    parser.add_argument("--r1-gamma", type=bounded(float, ge=0), default=None,
                        help="R1 weight (default 0.01; also changes a resumed run)")
    parser.add_argument("--g-lr", type=bounded(float, gt=0), default=None,
                        help="G learning rate (default 0.002; also changes a resumed run)")
    parser.add_argument("--d-lr", type=bounded(float, gt=0), default=None,
                        help="D learning rate (default 0.005; also changes a resumed run)")
    parser.add_argument("--channel-base", type=bounded(int, ge=1), default=None, help="synthesis channel_base of a new run")
    parser.add_argument("--channel-max", type=bounded(int, ge=1), default=None, help="synthesis channel_max of a new run")
    parser.add_argument("--z-dim", type=bounded(int, ge=1), default=None, help="z_dim = w_dim of a new run (default 256)")
    parser.add_argument("--init", default=None,
                        help="start a new run's G and G_ema from this pti .safetensors generator (its architecture "
                             "replaces --z-dim/--channel-*): stage 2 of the demo recipe, the adversarial fine-tune "
                             "of the distilled generator (python -m pti.train.distill)")
    parser.add_argument("--d-warmup-kimg", type=bounded(float, ge=0), default=None,
                        help="with --init: thousands of images on which only D trains (default 0)")
    parser.add_argument("--distill-weight", type=bounded(float, ge=0), default=None,
                        help="weight of the distillation anchor of a new run: unmixed G samples are pulled towards "
                             "the DCGAN's image for the same z (L1 + perceptual; needs z_dim 100, e.g. --init of a "
                             "distilled generator). Default 0: off; also changes a resumed run")
    parser.add_argument("--style-mixing", type=bounded(float, ge=0, le=1), default=None,
                        help="style-mixing probability per sample (default 0.9; also changes a resumed run)")
    parser.add_argument("--ema-kimg", type=bounded(float, ge=0), default=None,
                        help="G_ema half-life in thousands of images (default 10; also changes a resumed run)")
    parser.add_argument("--ema-rampup", type=bounded(float, ge=0), default=None,
                        help="G_ema half-life ramp-up: at most this fraction of the images seen (default 0.05; 0: "
                             "off, the half-life is --ema-kimg from the start; also changes a resumed run)")
    parser.add_argument("--augment", default=None,
                        help="DiffAugment policies applied before D, comma-separated from color,translation,cutout, "
                             "or 'none' (default: all three; also changes a resumed run). The real images are fresh "
                             "DCGAN samples at every step, so D cannot overfit them; augmentation is for finite data")
    parser.add_argument("--state-every", type=bounded(float, gt=0), default=600.0, help="seconds between state.pt saves")
    parser.add_argument("--grid-every", type=bounded(float, gt=0), default=600.0, help="seconds between sample grids")
    parser.add_argument("--export-every", type=bounded(float, ge=0), default=900.0,
                        help="seconds between exports of G_ema and the compact resume copy (0: never)")
    parser.add_argument("--export", default=None,
                        help="G_ema export path (default OUT/demo_generator.safetensors); the shipped demo "
                             "generator is replaced only when given its path, pti/assets/demo_generator.safetensors")
    parser.add_argument("--resume-copy", default=None,
                        help="compact resume state path (default OUT/demo_resume.pt)")
    parser.add_argument("--no-assets", action="store_true",
                        help="write neither the export nor the compact resume copy (and do not resume from them)")
    parser.add_argument("--max-steps", type=bounded(int, ge=0), default=None, help="stop after this many steps (for checks)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from pti.train.demo import (EXPORT_NAME, RESUME_COPY_NAME, RESUME_OVERRIDABLE, ScheduleConfig, TrainDemoConfig,
                                config_for_init, train)

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"seed": args.seed}
    for name in ("batch", "r1_gamma", "g_lr", "d_lr", "channel_base", "channel_max", "d_warmup_kimg", "ema_kimg",
                 "distill_weight"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.style_mixing is not None:
        overrides["style_mixing_prob"] = args.style_mixing
    if args.augment is not None:
        from pti.train.augment import parse_policies

        try:
            overrides["augment"] = parse_policies(args.augment)
        except ValueError as exc:
            raise SystemExit(f"pti train-demo: --augment {exc}") from None
    if args.ema_rampup is not None:  # >= 0, checked by the parser
        overrides["ema_rampup"] = args.ema_rampup or None
    if args.z_dim is not None:
        overrides.update(z_dim=args.z_dim, w_dim=args.z_dim)
    cfg = dataclasses.replace(TrainDemoConfig(), **overrides)
    if args.init:
        cfg = config_for_init(cfg, args.init)

    def written(given: str | None, default_name: str) -> Path | None:
        # a path given here is relative to the working directory; the default one to the run folder
        return None if args.no_assets else Path(given).resolve() if given else Path(default_name)

    schedule = ScheduleConfig(
        state_interval_s=args.state_every, grid_interval_s=args.grid_every, export_interval_s=args.export_every,
        export_path=written(args.export, EXPORT_NAME), resume_copy_path=written(args.resume_copy, RESUME_COPY_NAME))
    resume_overrides = {k for k in RESUME_OVERRIDABLE if k in overrides}
    trainer = train(cfg, args.out, kimg=args.kimg, resume=args.resume, device=args.device, schedule=schedule,
                    max_steps=args.max_steps, resume_overrides=resume_overrides)
    print(f"pti train-demo: {trainer.nimg / 1000:.2f} kimg seen, state in {Path(args.out) / 'state.pt'}")
    return 0
