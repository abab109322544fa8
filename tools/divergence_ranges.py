"""Measure the image RMS values behind ``pti.core.divergence.OUTPUT_RMS_LIMIT`` (run: ``python tools/divergence_ranges.py``).

Prints, per case, the largest root-mean-square pixel value of the images:

1. random samples of the shipped demo generator (psi 1 and 0.7) and of its codes extrapolated to
   ``w_avg + f (w - w_avg)``;
2. random samples of untrained tiny test generators (tests/conftest.py), 16-128 px, 4 seeds;
3. every step of healthy inversions and tunings (demo generator on the bundled photos at the paper's
   settings, shortened; tiny generators at the test suite's settings);
4. every step of runs at too-large learning rates (the divergences the limit must catch).

The limit itself is never applied here. One CPU thread: about an hour on a busy 2-core machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pti.core.divergence as divergence  # noqa: E402
from conftest import make_tiny_generator  # noqa: E402
from pti.alignment import align_face  # noqa: E402
from pti.core.config import InversionConfig, LocalityConfig, TuningConfig  # noqa: E402
from pti.apps.demo import bundled_photos  # noqa: E402
from pti.images import pil_to_tensor  # noqa: E402
from pti.fast.projector import project_batch  # noqa: E402
from pti.core.losses import PerceptualLoss  # noqa: E402
from pti.stylegan2.checkpoints import load  # noqa: E402
from pti.core.tuning import pivotal_tune  # noqa: E402


@torch.no_grad()
def sample_rms(G: torch.nn.Module, n: int, psi: float = 1.0, scale: float = 1.0, seed: int = 0) -> float:
    """Largest RMS over ``n`` random samples (codes ``w_avg + scale (w - w_avg)``, random noise)."""
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for start in range(0, n, 100):
        ws = G.mapping(torch.randn([min(100, n - start), G.z_dim], generator=gen), None, truncation_psi=psi)
        if scale != 1.0:
            ws = G.mapping.w_avg + scale * (ws - G.mapping.w_avg)
        worst = max(worst, float(divergence.output_rms(G.synthesis(ws, noise_mode="random")).max()))
    return worst


def optimisation_rms(G, target, inv: InversionConfig, tun: TuningConfig, perceptual) -> tuple[float, float]:
    """Largest RMS of any step's image in inversion, then in tuning (the limit switched off)."""
    seen = {"inversion": 0.0, "tuning": 0.0}

    def on_inversion(step, values):
        seen["inversion"] = max(seen["inversion"], max(values["output_rms"]))

    def on_tuning(step, values):
        seen["tuning"] = max(seen["tuning"], values["output_rms"])

    pivot = project_batch(G, [target], inv, perceptual=perceptual, progress=False, callback=on_inversion)[0]
    pivotal_tune(G, target, pivot, tun, perceptual=perceptual, progress=False, callback=on_tuning)
    return seen["inversion"], seen["tuning"]


def main() -> None:
    torch.set_num_threads(1)
    divergence.OUTPUT_RMS_LIMIT = float("inf")  # observe only
    G = load("demo").eval()
    for psi in (1.0, 0.7):
        print(f"demo samples psi {psi}: {sample_rms(G, 600, psi=psi):.3f}", flush=True)
    for scale in (2.0, 3.0, 5.0):
        print(f"demo codes extrapolated x{scale:g}: {sample_rms(G, 200, scale=scale, seed=1):.3f}", flush=True)
    for res in (16, 32, 64, 128):
        worst = max(sample_rms(make_tiny_generator(resolution=res, seed=s), 100) for s in range(4))
        print(f"tiny untrained {res} px, 4 seeds: {worst:.3f}", flush=True)

    perceptual = PerceptualLoss("alex")
    targets = {name: pil_to_tensor(align_face(src, output_size=G.img_resolution, name=name)).reshape(1, 3, 64, 64)
               for name, src in bundled_photos().items()}
    healthy = {"W": (InversionConfig(steps=150, w_avg_samples=2000), TuningConfig(steps=100, lpips_threshold=None)),
               "W+": (InversionConfig(space="w+", steps=150, w_avg_samples=2000),
                      TuningConfig(steps=100, lpips_threshold=None)),
               "W, locality": (InversionConfig(steps=60, w_avg_samples=2000),
                               TuningConfig(steps=60, lpips_threshold=None, locality=LocalityConfig(enabled=True)))}
    for name, target in targets.items():
        for label, (inv, tun) in healthy.items():
            rms = optimisation_rms(G, target, inv, tun, perceptual)
            print(f"healthy demo {name} {label}: inversion {rms[0]:.3g}, tuning {rms[1]:.3g}", flush=True)
    target = targets["astronaut"]
    for lr in (0.1, 1.0, 10.0, 100.0, 1e6):
        rms = optimisation_rms(G, target, InversionConfig(steps=20, lr=lr, w_avg_samples=2000),
                               TuningConfig(steps=3, lpips_threshold=None), perceptual)
        print(f"demo astronaut inversion lr {lr:g}: inversion {rms[0]:.3g}, tuning {rms[1]:.3g}", flush=True)
    for lr in (3e-3, 3e-2, 0.3, 3.0):
        rms = optimisation_rms(G, target, InversionConfig(steps=20, w_avg_samples=2000),
                               TuningConfig(steps=20, lr=lr, lpips_threshold=None), perceptual)
        print(f"demo astronaut tuning lr {lr:g}: tuning {rms[1]:.3g}", flush=True)

    offline = PerceptualLoss("effnet-lite0")
    for res, seed in ((16, 1), (16, 3), (32, 3)):
        Gt = make_tiny_generator(resolution=res, seed=seed)
        with torch.no_grad():
            z = torch.randn(1, Gt.z_dim, generator=torch.Generator().manual_seed(4))
            x = Gt.synthesis(Gt.mapping(z, None), noise_mode="const").clone()
        x[:, :, 2:8, 2:8] = 0.9  # a patch the generator cannot render exactly
        for label, inv, tun in (
                ("test_speed_paths settings", InversionConfig(steps=12, lr=0.1, w_avg_samples=500),
                 TuningConfig(steps=12, lpips_threshold=None)),
                ("tuning lr 3e-3", InversionConfig(steps=30, w_avg_samples=500, perceptual_net="effnet-lite0"),
                 TuningConfig(steps=30, lr=3e-3, lpips_threshold=None, perceptual_net="effnet-lite0"))):
            rms = optimisation_rms(Gt, x, inv, tun, offline)
            print(f"healthy tiny {res} px seed {seed} {label}: inversion {rms[0]:.3g}, tuning {rms[1]:.3g}", flush=True)


if __name__ == "__main__":
    main()
