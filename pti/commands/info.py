"""``pti info CHECKPOINT``: what a generator checkpoint holds."""
from __future__ import annotations

import argparse

HELP = "print resolution, num_ws, w_dim, parameter count and format of a generator checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .pkl (NVIDIA), .pt (rosinality), .safetensors (pti) file or a zoo name")


def run(args: argparse.Namespace) -> int:
    from pti.stylegan2.checkpoints import load_with_format

    G, fmt = load_with_format(args.checkpoint)
    n_params = sum(p.numel() for p in G.parameters())
    print(f"checkpoint:     {args.checkpoint}")
    print(f"format:         {fmt}")
    print(f"resolution:     {G.img_resolution}x{G.img_resolution} ({G.img_channels} channels)")
    print(f"num_ws:         {G.num_ws}")
    print(f"w_dim / z_dim:  {G.w_dim} / {G.z_dim} (c_dim {G.c_dim})")
    print(f"parameters:     {n_params:,}")
    return 0
