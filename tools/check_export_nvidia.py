"""Check `pti export --format nvidia` against NVIDIA's own stylegan2-ada-pytorch code (by hand, not in CI).

Builds pti generators of several shapes (skip / resnet / orig architectures, conv_clamp, fp16 resolutions,
a conditional one, and the shipped demo generator), exports each with :mod:`pti.stylegan2.export`, then
in NVIDIA's code: ``training.networks.Generator(**ckpt['init_kwargs'])``, ``load_state_dict(strict=True)``,
and renders the exported ``projected_w.npz`` the way its ``generate.py --projected-w`` does
(``np.load(path)['w']``, ``G.synthesis(w, noise_mode='const')``), and compares mapping outputs and images
with pti's. Also checks ``RUN/PHOTO`` folders given on the command line (after ``pti export``).

Usage (NVIDIA's tree, e.g. ``git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/sg2ada``)::

    python tools/check_export_nvidia.py /tmp/sg2ada [RUN/PHOTO ...]
    PTI_NVIDIA_SOURCE=/tmp/sg2ada python tools/check_export_nvidia.py

NVIDIA's ops fall back to their reference implementations on the CPU (no custom CUDA ops are built);
``force_fp32=True`` is passed on the CPU, where float16 convolutions are not available. Exit 0 when all pass.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

#: largest |difference| accepted between NVIDIA's and pti's images ([-1, 1] range) and mapping outputs. Measured
#: 2026-12-07 on the CPU (torch reference ops, one thread), stylegan2-ada-pytorch HEAD: 0.0 for all four
#: generators and a `pti run` photo folder (bit-identical); the bound leaves room for other kernels or a GPU
TOLERANCE = 1e-4


def nvidia_generator_class(tree: Path):
    if not (tree / "training" / "networks.py").is_file():
        raise SystemExit(f"{tree}: not a stylegan2-ada-pytorch source tree (no training/networks.py)")
    sys.path.insert(0, str(tree))
    from training.networks import Generator  # NVIDIA's code, from the tree given

    return Generator


def pti_generators() -> dict[str, torch.nn.Module]:
    from pti.stylegan2 import Generator
    from pti.stylegan2.checkpoints import load

    def make(seed: int, **kwargs) -> torch.nn.Module:
        torch.manual_seed(seed)
        G = Generator(**kwargs).eval()
        with torch.no_grad():  # non-default values everywhere a default would hide a mismatch
            for name, t in G.state_dict().items():
                if name.endswith(("noise_strength", ".bias")) or name.endswith("w_avg"):
                    t.copy_(torch.randn_like(t) * 0.1)
        return G

    tiny = dict(z_dim=32, w_dim=32, mapping_kwargs={"num_layers": 2})
    return {
        "skip 32 px": make(0, c_dim=0, img_resolution=32, img_channels=3, **tiny,
                           synthesis_kwargs={"channel_base": 1024, "channel_max": 64}),
        "resnet, conv_clamp 256, num_fp16_res 2": make(1, c_dim=0, img_resolution=32, img_channels=3, **tiny,
                                                        synthesis_kwargs={"channel_base": 1024, "channel_max": 64,
                                                                          "architecture": "resnet", "conv_clamp": 256,
                                                                          "num_fp16_res": 2}),
        "orig, conditional c_dim 3, grayscale": make(2, c_dim=3, img_resolution=16, img_channels=1, **tiny,
                                                     synthesis_kwargs={"channel_base": 512, "channel_max": 32,
                                                                       "architecture": "orig"}),
        "demo generator": load("demo").eval(),
    }


def compare(name: str, G_pti: torch.nn.Module, g_file: Path, w_file: Path, NvGenerator) -> bool:
    ckpt = torch.load(g_file, map_location="cpu", weights_only=True)
    G_nv = NvGenerator(**ckpt["init_kwargs"]).eval()
    G_nv.load_state_dict(ckpt["state_dict"], strict=True)  # raises on any missing/unexpected/misshapen key
    ws = torch.tensor(np.load(w_file)["w"])  # generate.py --projected-w
    assert ws.shape[1:] == (G_nv.num_ws, G_nv.w_dim), (ws.shape, G_nv.num_ws, G_nv.w_dim)
    with torch.no_grad():
        img_nv = G_nv.synthesis(ws, noise_mode="const", force_fp32=True)
        img_pti = G_pti.synthesis(ws, noise_mode="const")
        z = torch.randn(4, G_nv.z_dim, generator=torch.Generator().manual_seed(0))
        c = torch.eye(G_nv.c_dim)[torch.arange(4) % G_nv.c_dim] if G_nv.c_dim else None
        w_nv = G_nv.mapping(z, c if c is not None else torch.zeros(4, 0))
        w_pti = G_pti.mapping(z, c)
    d_img = (img_nv - img_pti).abs().max().item()
    d_w = (w_nv - w_pti).abs().max().item()
    ok = d_img <= TOLERANCE and d_w <= TOLERANCE and img_nv.shape == img_pti.shape
    print(f"{'ok  ' if ok else 'FAIL'} {name}: NVIDIA Generator loaded strict=True ({len(ckpt['state_dict'])} "
          f"tensors); image {tuple(img_nv.shape)} max |diff| {d_img:.2e}, mapping max |diff| {d_w:.2e} "
          f"(tolerance {TOLERANCE:g})")
    return ok


def main(argv: list[str]) -> int:
    source = argv[0] if argv else os.environ.get("PTI_NVIDIA_SOURCE")
    if not source:
        print(__doc__.split("Usage")[0].strip(), "\n\nusage: python tools/check_export_nvidia.py SG2ADA_TREE "
              "[RUN/PHOTO ...] (or set PTI_NVIDIA_SOURCE)", file=sys.stderr)
        return 2
    NvGenerator = nvidia_generator_class(Path(source))
    from pti.core.pivot import Pivot
    from pti.stylegan2.checkpoints import load
    from pti.stylegan2.export import export_nvidia_generator, export_projected_w

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, G) in enumerate(pti_generators().items()):
            with torch.no_grad():
                c = torch.zeros(1, G.c_dim)
                if G.c_dim:
                    c[0, 0] = 1
                ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(i)), c)
            ws = ws + 0.1 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(i))  # a W+ pivot
            g_file = export_nvidia_generator(G, Path(tmp) / f"{i}_G.pt")
            w_file = export_projected_w(ws, Path(tmp) / f"{i}_projected_w.npz")
            results.append(compare(name, G, g_file, w_file, NvGenerator))
    for folder in map(Path, argv[1:]):  # RUN/PHOTO folders after `pti export`
        G = load(folder / "tuned.safetensors").eval()
        results.append(compare(str(folder), G, folder / "export" / "tuned_nvidia.pt",
                               folder / "export" / "projected_w.npz", NvGenerator))
        pivot = Pivot.load(folder / "pivot.pt")
        assert np.array_equal(np.load(folder / "export" / "projected_w.npz")["w"], pivot.w.numpy())
    print(f"{sum(results)} of {len(results)} passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
