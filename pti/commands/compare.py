"""``pti compare``: W, W+, e4e and PTI on the same aligned photos, scored alike, with a summary (see
:mod:`pti.jobs.compare`). Runs on one process or sharded under torchrun, like ``pti run``; exit status 0 when
every photo is finished, 1 when some failed, 2 for usage errors."""
from __future__ import annotations

import argparse
import sys

HELP = "the paper's comparison: W, W+, e4e and PTI (and edits) on each photo, with summary.md/json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.commands._config_args import add_config_arguments, add_execution_arguments, bounded, seed_type
    from pti.commands._pti_jobs import add_class_index_argument, add_dist_timeout_argument
    from pti.commands.align import add_face_index_argument
    import typing

    from pti.core.config import InversionConfig, LocalityConfig, PerceptualNet, TuningConfig

    parser.add_argument("input", help="an image file or a folder of images (e.g. the CelebA-HQ test split)")
    parser.add_argument("--output", "-o", default="runs/compare", help="run folder (default: runs/compare)")
    parser.add_argument("--methods", default="w,w+,e4e,pti",
                        help="comma list of w, w+, e4e, pti (tuned on the W pivot, the paper's), pti-e4e (tuned on "
                             "the e4e pivot) (default: w,w+,e4e,pti)")
    parser.add_argument("--edit", action="append", default=[], metavar="DIRECTION[,DIRECTION][:STRENGTHS]",
                        help="score this edit of every method: identity after editing and, for smile/yaw/"
                             "mouth_open, the change of dlib's landmark score. DIRECTION as in `pti edit "
                             "--direction`; STRENGTHS comma-separated (default -3,0,3); several directions may "
                             "share strengths: --edit smile,yaw:-3,3. Repeatable")
    parser.add_argument("--metric-net", default=None,
                        choices=list(typing.get_args(PerceptualNet)),
                        help="perceptual network of the metrics table (default: the tuning's, --tune-perceptual-net, "
                             "LPIPS-alex as the paper; GANInverter's published table uses vgg)")
    parser.add_argument("--generator", "-g", default="demo",
                        help="generator checkpoint (.pkl/.pt/.safetensors) or zoo name (default: demo)")
    parser.add_argument("--encoder", default=None,
                        help="e4e encoder for e4e/pti-e4e: checkpoint or zoo name (default: 'demo-e4e' for the demo "
                             "generator, else 'e4e': `pti download e4e`)")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' (cuda:LOCAL_RANK), 'cuda:1', ...")
    parser.add_argument("--seed", type=seed_type(), default=None, help="seed for inversion and tuning (default: 0)")
    add_class_index_argument(parser)
    parser.add_argument("--no-align", action="store_true", help="images are already aligned crops")
    add_face_index_argument(parser)
    parser.add_argument("--locality", action="store_true", help="turn on PTI's locality regularisation")
    parser.add_argument("--redo", action="store_true", help="compare photos again even if finished")
    parser.add_argument("--threads", type=bounded(int, ge=1), default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_dist_timeout_argument(parser)
    add_config_arguments(parser, InversionConfig, TuningConfig, LocalityConfig)
    add_execution_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import time
    from datetime import timedelta
    from pathlib import Path

    import torch

    from pti.commands._config_args import build_configs, build_execution
    from pti.core.conditioning import ConditioningError, class_label
    from pti.core.config import config_to_dict
    from pti.editing.run_edits import STYLECLIP_PREFIXES, resolve_run_edits
    from pti.encoders import default_encoder, encoder_for
    from pti.jobs import distributed
    from pti.jobs.compare import CompareOptions, compare_photos, expand_edit_lists, parse_methods
    from pti.jobs.compare_summary import build_compare_summary, write_compare_summary
    from pti.jobs.folder import check_unique_names, list_images
    from pti.stylegan2.checkpoints import CheckpointError, load
    from pti.core.config import inversion_defaults

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        methods = parse_methods(args.methods)
        inv_cfg, tune_cfg = build_configs(args, inversion_defaults(args.generator))
        paths = list_images(args.input)
        check_unique_names(paths)
        ctx = distributed.setup(args.device, timeout=timedelta(minutes=args.dist_timeout_min))
        execution = build_execution(args, ctx.device.type)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pti compare: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None:
        inv_cfg.seed = tune_cfg.seed = args.seed
    tune_cfg.locality.enabled = tune_cfg.locality.enabled or args.locality
    tag = "pti compare" + (f" [rank {ctx.rank}/{ctx.world_size}]" if ctx.distributed else "")
    run_dir = Path(args.output)
    try:
        t0 = time.perf_counter()
        try:
            G = load(args.generator, device=ctx.device).eval()
            class_label(G, args.class_index)
            encoder_name = args.encoder or default_encoder(args.generator)
            encoder = (encoder_for(G, encoder_name, ctx.device)
                       if {"e4e", "pti-e4e"} & set(methods) else None)
            styleclip = [e for e in args.edit if e.startswith(STYLECLIP_PREFIXES)]
            if styleclip:
                raise ValueError(f"--edit {styleclip[0]!r}: pti compare scores W-space directions (InterFaceGAN, "
                                 f"GANSpace, SeFa, files); StyleCLIP edits run with pti edit or pti run --edit")
            edits = resolve_run_edits(expand_edit_lists(args.edit), G)
        except (CheckpointError, ConditioningError, ValueError, KeyError, IndexError, FileNotFoundError) as exc:
            print(f"{tag}: {exc}", file=sys.stderr)
            return 2
        options = CompareOptions(methods=methods, edits=edits, align=not args.no_align, face_index=args.face_index,
                                 class_index=args.class_index, skip_finished=not args.redo, progress=not args.quiet,
                                 execution=execution, encoder=encoder, metric_net=args.metric_net)
        setup_seconds = time.perf_counter() - t0
        outcomes = compare_photos(G, distributed.shard(paths, ctx.rank, ctx.world_size), run_dir, inv_cfg, tune_cfg,
                                  options, worker=ctx.describe())
        for o in outcomes:
            if o.status == "failed":
                print(f"  FAILED {o.name}: {o.error}", file=sys.stderr)
        distributed.barrier(ctx)
        gathered = distributed.all_gather_objects(ctx, [o.brief() for o in outcomes])
        status = None
        if ctx.is_main:
            info = {"input": str(args.input), "generator": str(args.generator),
                    "encoder": encoder_name if encoder is not None else None,
                    "steps": f"{inv_cfg.steps} inversion, {tune_cfg.steps} tuning",
                    "setup_seconds": setup_seconds, "world_size": ctx.world_size,
                    "config": {"inversion": config_to_dict(inv_cfg), "tuning": config_to_dict(tune_cfg),
                               "execution": config_to_dict(execution)}}
            summary = build_compare_summary(paths, run_dir, [b for rank in gathered for b in rank], info)
            _, md_path = write_compare_summary(summary, run_dir)
            c = summary["counts"]
            print(f"pti compare: {c['done']} of {c['photos']} photo(s) compared, {c['failed']} failed, "
                  f"{c['missing']} missing; summary: {md_path}")
            status = 1 if c["failed"] or c["missing"] else 0
        status = distributed.broadcast_from_main(ctx, status)
        return int(status) if ctx.is_main else 0
    finally:
        distributed.teardown(ctx)
