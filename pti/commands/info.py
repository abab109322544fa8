"""``pti info CHECKPOINT``: what a generator checkpoint holds, and the constructor arguments to build its twin."""
from __future__ import annotations

import argparse
import json
from typing import Any

HELP = ("print resolution, num_ws, w_dim, parameter count, format and constructor arguments of a generator "
        "checkpoint")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .pkl (NVIDIA), .pt (rosinality), .safetensors (pti) file or a zoo name")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (format, sizes, parameters, init_kwargs) instead of text")


def constructor_line(init_kwargs: dict[str, Any]) -> str:
    """``Generator(**{...})``: a Python line that builds a generator of the same shape (pti's
    ``pti.stylegan2.Generator``; NVIDIA's ``training.networks.Generator`` takes the same arguments)."""
    return f"Generator(**{init_kwargs!r})"


def describe(G: Any, fmt: str, checkpoint: str) -> dict[str, Any]:
    """The facts ``pti info`` prints, as a JSON-ready dict (``init_kwargs``: the constructor arguments)."""
    return {"checkpoint": checkpoint, "format": fmt, "img_resolution": int(G.img_resolution),
            "img_channels": int(G.img_channels), "num_ws": int(G.num_ws), "w_dim": int(G.w_dim),
            "z_dim": int(G.z_dim), "c_dim": int(G.c_dim), "parameters": sum(p.numel() for p in G.parameters()),
            "init_kwargs": G.init_kwargs}


def run(args: argparse.Namespace) -> int:
    from pti.stylegan2.checkpoints import load_with_format

    G, fmt = load_with_format(args.checkpoint)
    info = describe(G, fmt, str(args.checkpoint))
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    print(f"checkpoint:     {args.checkpoint}")
    print(f"format:         {fmt}")
    print(f"resolution:     {G.img_resolution}x{G.img_resolution} ({G.img_channels} channels)")
    print(f"num_ws:         {G.num_ws}")
    print(f"w_dim / z_dim:  {G.w_dim} / {G.z_dim} (c_dim {G.c_dim})")
    print(f"parameters:     {info['parameters']:,}")
    print(f"init_kwargs:    {json.dumps(G.init_kwargs, sort_keys=True)}")
    print(f"constructor:    {constructor_line(G.init_kwargs)}")
    print("                (pti.stylegan2.Generator and NVIDIA's training.networks.Generator take these arguments; "
          "unlisted ones keep their defaults)")
    return 0
