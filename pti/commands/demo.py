"""``pti demo``: the offline end-to-end PTI demo on real photos."""
from __future__ import annotations

import argparse

HELP = "align, invert (W, W+), pivotal-tune and edit real photos; writes figures/demo_*.png and demo_metrics.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.commands._config_args import add_config_arguments, add_execution_arguments
    from pti.commands._pti_jobs import add_class_index_argument
    from pti.commands.align import add_face_index_argument
    from pti.core.config import InversionConfig, LocalityConfig, TuningConfig

    parser.add_argument("--generator", "-g", default="demo", help="checkpoint or zoo name (default: demo; 'ffhq')")
    parser.add_argument("--images", default=None, help="a photo or folder of photos (default: the bundled photos)")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    parser.add_argument("--out", default="figures", help="output folder (default: figures)")
    parser.add_argument("--edits", default=None, help="comma-separated directions (e.g. smile,yaw,ganspace:0)")
    parser.add_argument("--strengths", default="-3,0,3", help="comma-separated edit strengths (default: -3,0,3)")
    parser.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_face_index_argument(parser)
    add_class_index_argument(parser)
    add_config_arguments(parser, InversionConfig, TuningConfig, LocalityConfig)
    add_execution_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import time

    from pti.commands._config_args import build_configs, build_execution, device_type
    from pti.apps.demo import DemoConfig, run_demo

    from pti.core.config import inversion_defaults

    defaults = DemoConfig()  # the demo's settings (the paper's, plus channels_last) under the given options
    # the paper's projector with the generator's projector lr (0.02 for 'demo', see pti.zoo) under --inv-*
    inv, tune = build_configs(args, inversion_defaults(args.generator), defaults.tuning)
    execution = build_execution(args, device_type(args.device), defaults.execution)
    cfg = DemoConfig(generator=args.generator, images=args.images, device=args.device, out_dir=args.out,
                     inversion=inv, tuning=tune, execution=execution,
                     edits=tuple(s for s in args.edits.split(",") if s) if args.edits else None,
                     strengths=tuple(float(s) for s in args.strengths.split(",")),
                     identity=not args.no_identity, progress=not args.quiet, class_index=args.class_index,
                     face_index=args.face_index)
    t0 = time.perf_counter()
    summary = run_demo(cfg)
    from pti.apps.demo import metrics_markdown

    print(metrics_markdown(summary))
    print("wrote: " + ", ".join(summary["files"]))
    print(f"pti demo finished in {time.perf_counter() - t0:.1f} s ({summary['device']})")
    return 0
