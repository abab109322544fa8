"""Shared implementation of ``pti invert``, ``pti tune`` and ``pti run``.

The same command runs on one process, or on many under ``torchrun`` (see :mod:`pti.jobs.distributed`):
each rank processes its share of the sorted images, then rank 0 writes ``summary.json``,
``summary.md`` and ``summary.html`` (with thumbnails) into the run folder after a barrier.
Exit status (rank 0's; the other ranks exit 0 unless their own setup fails): 0 when every image
is finished, 1 when some failed (or are missing), 2 for usage errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pti.commands._config_args import (add_config_arguments, add_execution_arguments, bounded, build_configs,
                                       build_execution, seed_type)

#: the most minutes --dist-timeout-min takes (about two years; datetime.timedelta and torch's timeout overflow
#: far above it)
MAX_TIMEOUT_MIN = 1_000_000


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.commands.align import add_face_index_argument
    from pti.core.config import InversionConfig, LocalityConfig, TuningConfig

    parser.add_argument("input", nargs="?", help="an image file or a folder of images")
    parser.add_argument("--input", dest="input_opt", help="same as the positional INPUT (give one of them)")
    parser.add_argument("--output", "-o", default="runs/default", help="run folder (default: runs/default)")
    parser.add_argument("--generator", "-g", default="demo",
                        help="generator checkpoint (.pkl/.pt/.safetensors) or zoo name (default: demo)")
    parser.add_argument("--device", default="auto",
                        help="'auto' (cuda:LOCAL_RANK if CUDA is available, else cpu), 'cpu', 'cuda' "
                             "(cuda:LOCAL_RANK), 'cuda:1', ...")
    parser.add_argument("--seed", type=seed_type(), default=None, metavar="INT",
                        help="seed for inversion and tuning (default: 0)")
    parser.add_argument("--space", choices=["w", "w+"], default=None, help="pivot space (default: w, the paper's)")
    parser.add_argument("--init", choices=["mean", "e4e"], default="mean",
                        help="start of the pivot: 'mean' (the mean w, optimised by --inv-steps, the paper's) or 'e4e' "
                             "(an e4e encoder's W+ code, refined by --inv-steps N steps, 0 allowed; implies --space w+)")
    parser.add_argument("--encoder", default=None,
                        help="with --init e4e: encoder checkpoint (official e4e .pt or pti .safetensors) or zoo name "
                             "(default: 'demo-e4e', shipped, for the demo generator; else 'e4e', the official FFHQ "
                             "encoder: `pti download e4e`)")
    add_class_index_argument(parser)
    parser.add_argument("--no-align", action="store_true", help="images are already aligned crops")
    add_face_index_argument(parser)
    parser.add_argument("--locality", action="store_true", help="turn on locality regularisation")
    parser.add_argument("--save-generator", action="store_true", help="write tuned.safetensors per image")
    parser.add_argument("--no-reuse-pivot", action="store_true", help="invert again even if pivot.pt exists")
    parser.add_argument("--redo", action="store_true",
                        help="process images even if already finished (without it, a finished image is redone "
                             "anyway when its generator, photo or settings changed, and the run says so)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_dist_timeout_argument(parser)
    add_config_arguments(parser, InversionConfig, TuningConfig, LocalityConfig)
    add_execution_arguments(parser)


def add_dist_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """``--dist-timeout-min MIN``: a finite number of minutes > 0."""
    parser.add_argument("--dist-timeout-min", type=bounded(float, gt=0, le=MAX_TIMEOUT_MIN), default=24 * 60,
                        metavar="MIN", help="under torchrun: how long the end-of-job barrier waits for the slowest "
                                            f"rank, in minutes, 0 < MIN <= {MAX_TIMEOUT_MIN} (default: 1440)")


def add_edit_argument(parser: argparse.ArgumentParser) -> None:
    """``--edit DIRECTION[:STRENGTHS]`` (repeatable): edits rendered after tuning (:mod:`pti.editing.run_edits`)."""
    parser.add_argument("--edit", action="append", default=[], metavar="DIRECTION[:STRENGTHS]",
                        help="render this edit of each photo after tuning into PHOTO/edits/ (DIRECTION_S.png per "
                             "strength, and grid.png: the pivot's edits on the original generator above the same "
                             "edits after PTI); DIRECTION as in `pti edit --direction` (smile, yaw, ganspace:K, "
                             "sefa:K, FILE.pt, C:\\dirs\\age.pt, ...), STRENGTHS comma-separated (default -3,0,3): "
                             "--edit smile --edit yaw:-3,0,3 --edit sefa:2:-2,2. Combine with +: 'smile:1+yaw:2' "
                             "(one image), '@-1,0,1' scales the combination. StyleCLIP: 'text:a smiling face', "
                             "'mapper:NAME|PATH', 'optimize:PROMPT' (see pti edit --text). Repeatable")


def add_multi_id_arguments(parser: argparse.ArgumentParser) -> None:
    """``--multi-id`` and ``--state-every-min`` of ``pti run`` (multi-image PTI: :mod:`pti.jobs.multi_id`)."""
    parser.add_argument("--multi-id", action="store_true",
                        help="tune ONE generator for all the photos (multi-image PTI, paper Sec. 4.4; "
                             "--tune-batch-size B: B photos per step): RUN/tuned.safetensors, and a pivot, "
                             "reconstruction and metrics per photo. One process; an interrupted run resumes its "
                             "tuning from the last saved state")
    parser.add_argument("--state-every-min", type=bounded(float, ge=0), default=5.0, metavar="MIN",
                        help="with --multi-id: minutes between two saves of the tuning state "
                             "(RUN/.multi_id_state.pt; 0: after every step; default 5)")


def add_class_index_argument(parser: argparse.ArgumentParser) -> None:
    """``--class-index K``: the photos' class for a conditional generator (see :mod:`pti.core.conditioning`)."""
    parser.add_argument("--class-index", type=bounded(int, ge=0), default=None, metavar="K",
                        help="conditional generators (c_dim > 0) only, and required for them: the photos' class, "
                             "0 <= K < c_dim (one-hot label); the w statistics and locality samples are drawn for it. "
                             "pti does not average over classes")


def run_job(args: argparse.Namespace, stage: str) -> int:
    import time
    from datetime import timedelta

    from pti.core.conditioning import ConditioningError, class_label
    from pti.core.config import config_to_dict
    from pti.editing.run_edits import resolve_run_edits
    from pti.encoders import default_encoder, encoder_for
    from pti.jobs import distributed
    from pti.jobs.runner import RunOptions, check_unique_names, list_images, process_images, redone_message
    from pti.jobs.summary import build_summary, session_record, write_summary
    from pti.stylegan2.checkpoints import CheckpointError, load
    from pti.core.config import inversion_defaults

    if args.input_opt and args.input and args.input_opt != args.input:  # one INPUT: never drop either silently
        print(f"pti {stage}: give one input, as INPUT ({args.input}) or as --input ({args.input_opt}), not both; for "
              f"several photos give a folder", file=sys.stderr)
        return 2
    source = args.input_opt or args.input
    if not source:
        print("pti: give an image file or folder (INPUT or --input)", file=sys.stderr)
        return 2
    inv_cfg, tune_cfg = build_configs(args, inversion_defaults(args.generator))  # the generator's projector lr
    if args.seed is not None:
        inv_cfg.seed = tune_cfg.seed = args.seed
    if args.space:
        inv_cfg.space = args.space
    if args.init == "e4e":
        if args.space == "w":
            print("pti: --init e4e gives W+ pivots (the encoder's codes); drop --space w", file=sys.stderr)
            return 2
        inv_cfg.space = "w+"
    if args.locality:
        tune_cfg.locality.enabled = True
    try:
        paths = list_images(source)
        check_unique_names(paths)
    except (FileNotFoundError, ValueError) as exc:
        print(f"pti: {exc}", file=sys.stderr)
        return 2
    if Path(args.output).exists() and not Path(args.output).is_dir():
        print(f"pti {stage}: --output {args.output} is a file, not a folder; give a run folder", file=sys.stderr)
        return 2
    try:
        ctx = distributed.setup(args.device, timeout=timedelta(minutes=args.dist_timeout_min))
        execution = build_execution(args, ctx.device.type)  # --fast / --exec-*: how the steps run (pti.fast)
    except ValueError as exc:
        print(f"pti: {exc}", file=sys.stderr)
        return 2
    tag = f"pti {stage}" + (f" [rank {ctx.rank}/{ctx.world_size}]" if ctx.distributed else "")
    run_dir = Path(args.output)
    try:
        t0 = time.perf_counter()
        try:
            G = load(args.generator, device=ctx.device).eval()
            class_label(G, args.class_index)  # a missing or out-of-range class stops here, before any image
        except (CheckpointError, ConditioningError) as exc:
            print(f"{tag}: {exc}", file=sys.stderr)
            return 2  # non-zero: torchrun stops the other ranks
        try:
            encoder = (encoder_for(G, args.encoder or default_encoder(args.generator), ctx.device)
                       if args.init == "e4e" else None)
        except (CheckpointError, ValueError, FileNotFoundError) as exc:
            print(f"{tag}: --init e4e: {exc}", file=sys.stderr)
            return 2
        try:  # directions of the original generator, before any image
            edits = resolve_run_edits(getattr(args, "edit", None) or [], G)
        except (ValueError, KeyError, IndexError, FileNotFoundError) as exc:
            print(f"{tag}: --edit: {exc}", file=sys.stderr)
            return 2
        setup_seconds = time.perf_counter() - t0
        options = RunOptions(stage="invert" if stage == "invert" else "tune", align=not args.no_align,
                             reuse_pivot=not args.no_reuse_pivot, save_generator=args.save_generator,
                             skip_finished=not args.redo, require_pivot=(stage == "tune"), progress=not args.quiet,
                             class_index=args.class_index, face_index=args.face_index, edits=edits,
                             execution=execution, encoder=encoder)
        share = distributed.shard(paths, ctx.rank, ctx.world_size)
        worker = ctx.describe()
        t0 = time.perf_counter()
        if getattr(args, "multi_id", False):  # one generator for all the photos: pti.jobs.multi_id, in one process
            if ctx.distributed:
                print(f"{tag}: --multi-id tunes one generator in one process; run it without torchrun",
                      file=sys.stderr)
                return 2
            from pti.jobs.multi_id import process_multi_id

            outcomes = process_multi_id(G, share, run_dir, inv_cfg, tune_cfg, options, worker,
                                        state_every_s=args.state_every_min * 60)
        else:
            outcomes = process_images(G, share, run_dir, inv_cfg, tune_cfg, options, worker=worker)
        loop_seconds = time.perf_counter() - t0
        done = sum(o.status == "done" for o in outcomes)
        skipped = sum(o.status == "skipped" for o in outcomes)
        failed = [o for o in outcomes if o.status == "failed"]
        print(f"{tag}: {done} done, {skipped} already finished, {len(failed)} failed of {len(share)} "
              f"-> {run_dir}", file=sys.stderr if ctx.distributed else sys.stdout)
        redone = redone_message(outcomes)
        if redone:
            print(f"{tag}: {redone}", file=sys.stderr if ctx.distributed else sys.stdout)
        for o in failed:
            print(f"  FAILED {o.name}: {o.error}", file=sys.stderr)

        distributed.barrier(ctx)  # every rank has finished its share
        sessions = distributed.all_gather_objects(ctx, session_record(worker, outcomes, setup_seconds, loop_seconds))
        status = None
        if ctx.is_main:
            # how the steps ran is not compared (pti.jobs.runner, "Reuse"): it is this run's, under "this_run";
            # each image's own is in its entry ("execution", from its metrics.json)
            info = {"input": str(source), "generator": str(args.generator), "class_index": args.class_index,
                    "config": {"inversion": config_to_dict(inv_cfg), "tuning": config_to_dict(tune_cfg)}}
            summary = build_summary(paths, run_dir, options.stage, sessions, info,
                                    execution=config_to_dict(options.execution))
            json_path, md_path = write_summary(summary, run_dir, progress=not args.quiet)
            c = summary["counts"]
            t = summary["this_run"]
            rate = (f"{t['images_per_minute']:.2f} images/min over {ctx.world_size} process(es)" if t["processed"]
                    else "nothing left to do")
            print(f"pti {stage}: {c['done']} of {c['images']} image(s) finished, {c['failed']} failed, "
                  f"{c['missing']} missing; {rate}; summary: {md_path}, {run_dir / 'summary.html'}")
            if ctx.distributed:
                for f in summary["failures"]:
                    print(f"  FAILED {f['name']} (rank {f['rank']}): {f['error']}", file=sys.stderr)
            status = 1 if c["failed"] or c["missing"] else 0
        # rank 0 gives the job's verdict: the other ranks wait for the summary to be written (so that
        # torchrun does not stop rank 0 while it writes) and exit 0 unless their setup failed.
        status = distributed.broadcast_from_main(ctx, status)
        return int(status) if ctx.is_main else 0
    finally:
        distributed.teardown(ctx)


