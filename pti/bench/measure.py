"""The benchmark's generator and targets, and what it measures with: device syncs, peak memory, the
environment, the final reconstruction quality."""
from __future__ import annotations

import datetime
import os
import platform
import threading
from pathlib import Path
from typing import Any, Sequence

import torch

from pti.bench.specs import GENERATOR_CONFIGS, BenchConfig


def build_generator(cfg: BenchConfig, device: torch.device) -> torch.nn.Module:
    """The benchmark generator: ``cfg.checkpoint`` if given, else random weights of ``cfg.config``."""
    if cfg.checkpoint:
        from pti.stylegan2.checkpoints import load

        return load(cfg.checkpoint).to(device).eval()
    if cfg.config not in GENERATOR_CONFIGS:
        raise ValueError(f"unknown generator config {cfg.config!r}; choose one of {sorted(GENERATOR_CONFIGS)}")
    from pti.stylegan2 import Generator

    torch.manual_seed(cfg.seed)
    G = Generator(**GENERATOR_CONFIGS[cfg.config])
    with torch.no_grad():  # a w_avg like a trained network's, so truncation behaves
        z = torch.randn([2000, G.z_dim], generator=torch.Generator().manual_seed(cfg.seed))
        G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(0))
    return G.to(device).eval()


@torch.no_grad()
def synthetic_targets(G: torch.nn.Module, n: int, seed: int) -> torch.Tensor:
    """``[n, 3, R, R]`` in [-1, 1]: G's images of random w, with a smooth colour cast and a flat patch that
    G cannot produce (so inversion alone cannot reach them and tuning has work to do)."""
    gen = torch.Generator().manual_seed(seed + 1)
    device = next(G.parameters()).device
    r = G.img_resolution
    z = torch.randn([n, G.z_dim], generator=gen).to(device)
    ws = G.mapping(z, None, truncation_psi=0.7)
    images = torch.cat([G.synthesis(ws[i:i + 1], noise_mode="const", force_fp32=True) for i in range(n)])
    images = images / images.flatten(1).abs().amax(1).clamp_min(1.0).reshape(n, 1, 1, 1)
    cast = torch.nn.functional.interpolate(torch.randn([n, 3, 4, 4], generator=gen), size=(r, r), mode="bilinear",
                                           align_corners=False).to(device)
    images = images + 0.3 * cast
    lo, hi = r // 4, r // 4 + max(2, r // 6)
    colour = torch.rand([n, 3, 1, 1], generator=gen).to(device) * 2 - 1
    images[:, :, lo:hi, lo:hi] = colour
    return images.clamp(-1, 1)


def load_targets(folder: str, n: int, resolution: int, device: torch.device, channels: int = 3) -> torch.Tensor:
    """The first ``n`` images (sorted by name) of ``folder``, resized to ``resolution``: ``[n, channels, R, R]``
    (``channels``: the generator's ``img_channels``; 1 = gray)."""
    from pti.images import read_image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if len(files) < n:
        raise ValueError(f"{folder}: needs {n} images (png/jpg/webp), found {len(files)}; pass --images {len(files)}")
    return torch.cat([read_image(p, resolution, channels) for p in files[:n]]).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory during a block: CUDA ``max_memory_allocated``, or on CPU the process's RSS sampled every
    10 ms (it includes everything the process holds, so it is comparable only within one run)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            rss = self._rss()
            if rss is not None:
                self.peak = max(self.peak or 0, rss)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

@torch.no_grad()
def reconstruction_quality(generators: Sequence[torch.nn.Module], pivots: Sequence[Any], targets: torch.Tensor,
                           evaluator: Any, original: torch.nn.Module) -> tuple[float, float, float]:
    """Means over the photos of the tuned reconstructions' MSE and perceptual distance, and of the pivots' MSE in
    the original G; rendered in fp32, scored by :func:`pti.metrics.evaluate` (MSE on [0, 1], the images clamped
    to [-1, 1], as every other MSE of pti; ``evaluator``: the perceptual distance, one for all paths)."""
    from pti.metrics import evaluate, mse

    rows, pivot_mse = [], []
    for G_k, pivot, target in zip(generators, pivots, targets):
        t = target.unsqueeze(0)
        w = pivot.w.to(t.device)
        rows.append(evaluate(G_k.synthesis(w, noise_mode="const", force_fp32=True), t, perceptual=evaluator))
        pivot_image = original.synthesis(w, noise_mode="const", force_fp32=True, noise=pivot.noise_maps(t.device))
        pivot_mse.append(float(mse(pivot_image, t)[0]))
    n = len(rows)
    return sum(r["mse"] for r in rows) / n, sum(r["perceptual"] for r in rows) / n, sum(pivot_mse) / n


def describe_environment(device: torch.device) -> dict[str, str]:
    """Device, CPU model, threads, torch version (for the table's header)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    env = {"cpu": f"{cpu} ({os.cpu_count()} logical cores visible)", "threads": str(torch.get_num_threads()),
           "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["device"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
        try:
            from pti.stylegan2.ops import _backend

            env["ops"] = "CUDA kernels" if getattr(_backend, "_plugin", None) is not None else \
                f"reference ops ({getattr(_backend, '_build_error', None) or 'kernels not built'})"
        except ImportError:
            env["ops"] = "unknown"
    else:
        env["device"] = f"CPU: {cpu}, {torch.get_num_threads()} threads"
        env["ops"] = "reference ops (CPU)"
    return env
