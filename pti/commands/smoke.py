"""``pti smoke``: a fast end-to-end check that the installation works (placeholder for the demo)."""
from __future__ import annotations

import argparse

from pti.commands._config_args import bounded

HELP = "build a tiny StyleGAN2, render an image and report timings (installation check)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--resolution", type=bounded(int, ge=4), default=32, help="image resolution (power of two >= 4)")


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from pti.stylegan2 import Generator

    t0 = time.perf_counter()
    G = Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=args.resolution, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 2048, "channel_max": 64})
    G = G.to(args.device).eval()
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim, device=args.device), None, noise_mode="const")
    print(f"pti smoke: generator {args.resolution}x{args.resolution}, num_ws={G.num_ws}, "
          f"image {tuple(img.shape)} in [{img.min():.2f}, {img.max():.2f}], {time.perf_counter() - t0:.2f} s")
    return 0
