"""``pti demo-quality CHECKPOINT``: MTCNN face-detection rate of a demo generator (+ figures)."""
from __future__ import annotations

import argparse

from pti.commands._config_args import bounded, seed_type

HELP = "fraction of generator samples in which MTCNN finds a face, at several truncations; optional figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="generator (.safetensors/.pkl/.pt) or a train-demo state.pt "
                             "(default: pti/assets/demo_generator.safetensors)")
    parser.add_argument("--n", type=bounded(int, ge=1), default=1000, help="samples per truncation value (default 1000)")
    parser.add_argument("--psi", type=bounded(float, ge=0), nargs="+", default=[1.0, 0.7], help="truncation psi values to measure (1: no truncation; default 1.0 0.7)")
    parser.add_argument("--seed", type=seed_type(), default=0, help="seed of the latents")
    parser.add_argument("--reference", action="store_true", help="also measure the training-data DCGAN")
    parser.add_argument("--detect-size", type=bounded(int, ge=1), default=128, help="images are resized to this for MTCNN")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--figures", default=None,
                        help="folder for demo_style_mixing.png and demo_truncation.png (e.g. figures)")
    parser.add_argument("--threads", type=bounded(int, ge=1), default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch

    from pti import zoo
    from pti.io_utils import atomic_write_json
    from pti.train import quality as dq

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ckpt = Path(args.checkpoint) if args.checkpoint else zoo.local_path(zoo.ZOO["demo"])
    G = dq.load_demo_generator(ckpt).to(device)
    mtcnn = dq.load_mtcnn(device)
    results: dict[str, object] = {"checkpoint": str(ckpt), "n": args.n, "seed": args.seed,
                                  "detector": "facenet_pytorch.MTCNN(keep_all=True), default thresholds",
                                  "detect_size": args.detect_size, "rates": {}}
    t0 = time.time()
    for psi in args.psi:
        r = dq.detection_rate(dq.generator_sampler(G, psi, args.seed), args.n, mtcnn, f"psi={psi:g}",
                              detect_size=args.detect_size)
        results["rates"][f"psi={psi:g}"] = r.rate
        print(f"{ckpt}: psi={psi:g}: MTCNN finds a face in {r.found}/{r.n} = {100 * r.rate:.1f}%")
    if args.reference:
        r = dq.detection_rate(dq.dcgan_sampler(args.seed), args.n, mtcnn, "DCGAN", detect_size=args.detect_size)
        results["rates"]["dcgan_reference"] = r.rate
        print(f"DCGAN (training data): MTCNN finds a face in {r.found}/{r.n} = {100 * r.rate:.1f}%")
    results["seconds"] = round(time.time() - t0, 1)
    if args.figures:
        out = Path(args.figures)
        dq.style_mixing_figure(G, out / "demo_style_mixing.png")
        dq.truncation_figure(G, out / "demo_truncation.png")
        print(f"figures: {out / 'demo_style_mixing.png'}, {out / 'demo_truncation.png'}")
    if args.json:
        atomic_write_json(results, args.json)
    return 0
