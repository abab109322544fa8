"""``pti bench``: speed and reconstruction quality of PTI's execution paths, side by side.

Every path runs the same PTI (inversion, then pivotal tuning) on the same targets with the
same seeds; only how the steps are computed differs. The ``baseline`` path does what the
official implementation does: fp32 everywhere (``force_fp32=True``), the CUDA ops on a GPU
(``impl='auto'``), one photo at a time, for-loop Adam, a host sync every step, full-resolution
LPIPS for tuning, no compilation. Other paths are ``+``-joined tokens applied on top of it::

    bf16 | fp16            autocast of synthesis + perceptual (fp16 adds device-side loss scaling)
    fp16-layers            the network's own fp16 layers with conv_clamp (force_fp32=False; CUDA only)
    channels-last          NHWC perceptual network (and fp16 synthesis blocks)
    loop|foreach|fused     torch.optim.Adam implementation
    compile | cudagraphs   torch.compile of the fixed-shape step (cudagraphs: mode='reduce-overhead')
    nosync[:N]             host syncs only every N steps (default 25); early stop decided on the device
    lpips256 | lpips:R     tuning's perceptual distance on the R-pixel downsampled image (as the projector)
    ref-ops                StyleGAN2's pure-PyTorch reference ops instead of the CUDA kernels
    batched:K | batched:auto   K photos at once, each with its own weights (auto: K from a memory probe)
    fast                   = batched:auto+bf16+nosync

For each path: per-step times (per image: a batched step of K photos counts K image-steps),
end-to-end seconds per image and images per minute (measured, and projected to the paper's
450 + 350 steps), peak memory, the one-off warm-up (compilation) time, and the final
reconstruction MSE and perceptual distance (one fixed fp32 evaluator for all paths), with
ratios to the baseline measured in the same run. Timings are printed, never asserted.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pti.config import InversionConfig, LocalityConfig, TuningConfig

PAPER_INV_STEPS, PAPER_TUNE_STEPS = 450, 350

#: Generator constructor kwargs of the benchmark configs (random weights cost what trained ones cost).
from pti.bench_presets import ALIASES, DEFAULT_PATHS, GENERATOR_CONFIGS  # noqa: E402 (torch-free presets)
AUTO_BATCH_LIMIT = 32
REPEAT_NAME = "baseline (repeated last)"


@dataclass(frozen=True)
class PathSpec:
    """One execution path: the baseline's settings with the given tokens applied."""

    name: str
    batch: int | None = None          # None: one photo at a time; 0: auto; K: K photos at once
    precision: str = "fp32"
    force_fp32: bool = True
    channels_last: bool = False
    adam: str = "loop"
    compile: bool = False
    compile_mode: str = "default"
    sync_every: int = 1
    tune_perceptual_resolution: int | None = None
    ref_ops: bool = False

    def execution(self) -> dict[str, Any]:
        """The execution fields shared by InversionConfig and TuningConfig."""
        return dict(precision=self.precision, force_fp32=self.force_fp32, channels_last=self.channels_last,
                    adam=self.adam, compile=self.compile, compile_mode=self.compile_mode, sync_every=self.sync_every)


def parse_path(text: str) -> PathSpec:
    """``'batched:8+bf16+nosync'`` -> :class:`PathSpec`; raises ``ValueError`` naming an unknown token."""
    name = text.strip()
    tokens = [t for part in name.split("+") for t in ALIASES.get(part.strip(), part.strip()).split("+") if t]
    values: dict[str, Any] = {}
    for token in tokens:
        head, _, arg = token.partition(":")
        if token == "baseline":
            continue
        if token in ("bf16", "fp16"):
            values["precision"] = token
        elif token == "fp16-layers":
            values["force_fp32"] = False
        elif token == "channels-last":
            values["channels_last"] = True
        elif token in ("loop", "foreach", "fused", "auto"):
            values["adam"] = token
        elif token == "compile":
            values["compile"] = True
        elif token in ("cudagraphs", "max-autotune"):
            values.update(compile=True, compile_mode="reduce-overhead" if token == "cudagraphs" else token)
        elif head == "nosync":
            values["sync_every"] = int(arg) if arg else 25
        elif token == "lpips256" or head == "lpips":
            values["tune_perceptual_resolution"] = 256 if token == "lpips256" else int(arg)
        elif token == "ref-ops":
            values["ref_ops"] = True
        elif head == "batched":
            values["batch"] = 0 if arg in ("", "auto") else int(arg)
            if values["batch"] < 0:
                raise ValueError(f"path {name!r}: batched:K needs K >= 1")
        else:
            raise ValueError(f"path {name!r}: unknown token {token!r} (see `pti bench --help`)")
    return PathSpec(name=name, **values)


@dataclass
class BenchConfig:
    """What ``pti bench`` runs (see :func:`run_bench`)."""

    config: str = "f1024"
    checkpoint: str | None = None
    device: str = "cuda"
    paths: list[str] = field(default_factory=lambda: DEFAULT_PATHS["cuda"].split(","))
    inv_steps: int = PAPER_INV_STEPS
    tune_steps: int = PAPER_TUNE_STEPS
    locality_steps: int = 20
    warmup_steps: int = 2
    images: int = 8
    w_avg_samples: int = 10_000
    early_stop: bool = False          # keep the paper's LPIPS early stop (off: every path runs every step)
    targets: str | None = None        # folder of aligned images; default: synthetic targets from G
    seed: int = 0
    threads: int | None = None
    repeat_baseline: bool = False     # run the baseline first and last; ratios use the mean of both timings


@dataclass
class PathResult:
    """Measurements of one path (times in seconds, memory in bytes)."""

    name: str
    batch: int
    inv_step_s: float
    tune_step_s: float
    locality_step_s: float
    e2e_s_per_image: float
    paper_s_per_image: float
    peak_memory: int | None
    warmup_s: float
    mse: float
    perceptual: float
    pivot_mse: float
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_minute(self) -> float:
        return 60.0 / self.paper_s_per_image if self.paper_s_per_image > 0 else float("inf")


@dataclass
class BenchReport:
    config: BenchConfig
    environment: dict[str, str]
    results: list[PathResult]
    failures: dict[str, str]


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


class _Runner:
    """Runs PTI for one path: sequential (project + tune per photo) or batched (project_batch + tune_batched)."""

    def __init__(self, G: torch.nn.Module, spec: PathSpec, batch: int, inv: InversionConfig, tune: TuningConfig,
                 perceptual: Callable[[str, int | None], Any]) -> None:
        self.G, self.spec, self.batch, self.inv, self.tune = G, spec, batch, inv, tune
        self.p_inv = perceptual(inv.perceptual_net, inv.perceptual_resolution)
        self.p_tune = perceptual(tune.perceptual_net, tune.perceptual_resolution)

    def invert(self, targets: torch.Tensor, steps: int) -> list:
        from pti.inversion import project, project_batch

        cfg = dataclasses.replace(self.inv, steps=steps)
        if self.spec.batch is None:
            return [project(self.G, t, cfg, perceptual=self.p_inv, progress=False) for t in targets]
        return project_batch(self.G, targets, cfg, perceptual=self.p_inv, progress=False)

    def tune_photos(self, targets: torch.Tensor, pivots: list, steps: int, locality: bool) -> list[torch.nn.Module]:
        from pti.batched import tune_batched
        from pti.tuning import tune

        cfg = dataclasses.replace(self.tune, steps=steps,
                                  locality=dataclasses.replace(self.tune.locality, enabled=locality))
        if self.spec.batch is None:
            return [tune(self.G, t, p, cfg, perceptual=self.p_tune, progress=False).generator
                    for t, p in zip(targets, pivots)]
        result = tune_batched(self.G, targets, pivots, cfg, perceptual=self.p_tune, progress=False)
        if any(result.errors):
            raise RuntimeError("; ".join(e for e in result.errors if e))
        return result.generators()


def _ops_scope(spec: PathSpec, device: torch.device):
    from pti.execution import traceable_ops

    return traceable_ops(device, spec.ref_ops)


def _auto_batch(runner_for: Callable[[int], _Runner], targets: torch.Tensor, device: torch.device,
                limit: int) -> tuple[int, str]:
    """K that fits memory: the peak of 2-step tuning at K=1 and K=2 gives the cost per photo (CUDA);
    on other devices min(limit, 4)."""
    if device.type != "cuda":
        k = min(limit, 4)
        return k, f"batched:auto -> K={k} (no memory probe off CUDA)"
    peaks = []
    for k in (1, 2):
        runner = runner_for(k)
        pivots = runner.invert(targets[:k], 1)
        with PeakMemory(device) as mem:
            runner.tune_photos(targets[:k], pivots, 2, locality=True)
        peaks.append(mem.peak or 0)
    per_photo = max(peaks[1] - peaks[0], 1)
    total = torch.cuda.get_device_properties(device).total_memory
    k = int((0.85 * total - (peaks[0] - per_photo)) // per_photo)
    k = max(1, min(k, limit, AUTO_BATCH_LIMIT))
    return k, f"batched:auto -> K={k} (probe: {per_photo / 2**30:.2f} GiB per photo)"


@torch.no_grad()
def _reconstruction_quality(generators: Sequence[torch.nn.Module], pivots: Sequence[Any], targets: torch.Tensor,
                            evaluator: Any, original: torch.nn.Module) -> tuple[float, float, float]:
    """Mean fp32 MSE and perceptual distance of the tuned reconstructions, and the pivots' MSE in the original G."""
    mse, dist, pivot_mse = [], [], []
    for G_k, pivot, target in zip(generators, pivots, targets):
        t = target.unsqueeze(0)
        w = pivot.w.to(t.device)
        image = G_k.synthesis(w, noise_mode="const", force_fp32=True)
        mse.append(float((image - t).square().mean()))
        dist.append(float(evaluator(image, t).mean()))
        pivot_image = original.synthesis(w, noise_mode="const", force_fp32=True, noise=pivot.noise or None)
        pivot_mse.append(float((pivot_image - t).square().mean()))
    return sum(mse) / len(mse), sum(dist) / len(dist), sum(pivot_mse) / len(pivot_mse)


def run_path(G: torch.nn.Module, spec: PathSpec, targets: torch.Tensor, cfg: BenchConfig, device: torch.device,
             perceptual: Callable[[str, int | None], Any], evaluator: Any,
             log: Callable[[str], None] = print) -> PathResult:
    """Warm up, then time the whole pipeline on every target, then locality tuning; see the module doc."""
    from pti.inversion import w_statistics

    inv = dataclasses.replace(InversionConfig(), steps=cfg.inv_steps, w_avg_samples=cfg.w_avg_samples,
                              seed=cfg.seed, **spec.execution())
    tune = dataclasses.replace(TuningConfig(), steps=cfg.tune_steps, seed=cfg.seed,
                               lpips_threshold=TuningConfig().lpips_threshold if cfg.early_stop else None,
                               perceptual_resolution=spec.tune_perceptual_resolution,
                               locality=LocalityConfig(), **spec.execution())
    notes: list[str] = []
    if not spec.force_fp32 and device.type != "cuda":
        notes.append("fp16-layers: no effect off CUDA (the network runs its fp16 blocks only on CUDA)")
    n = targets.shape[0]

    def runner_for(k: int) -> _Runner:
        return _Runner(G, spec, k, inv, tune, perceptual)

    with _ops_scope(spec, device):
        t_warm = time.perf_counter()
        if spec.batch is None:
            k = 1
        elif spec.batch == 0:
            k, note = _auto_batch(runner_for, targets, device, n)
            notes.append(note)
        else:
            k = min(spec.batch, n)
        runner = runner_for(k)
        warm_pivots = runner.invert(targets[:k], cfg.warmup_steps)
        runner.tune_photos(targets[:k], warm_pivots, cfg.warmup_steps, locality=False)
        runner.tune_photos(targets[:k], warm_pivots, cfg.warmup_steps, locality=True)
        synchronize(device)
        warmup_s = time.perf_counter() - t_warm
        log(f"  {spec.name}: warm-up {warmup_s:.1f}s (K={k})")

        synchronize(device)
        t = time.perf_counter()
        w_statistics(G, cfg.w_avg_samples, cfg.seed, device)
        synchronize(device)
        setup_s = time.perf_counter() - t  # paid once per inversion call

        inv_s = tune_s = 0.0
        pivots: list = []
        tuned: list = []
        calls = 0
        with PeakMemory(device) as mem:
            t_all = time.perf_counter()
            for start in range(0, n, k):
                chunk = targets[start:start + k]
                t = time.perf_counter()
                chunk_pivots = runner.invert(chunk, cfg.inv_steps)
                synchronize(device)
                inv_s += time.perf_counter() - t
                calls += 1 if spec.batch is not None else chunk.shape[0]
                t = time.perf_counter()
                tuned += runner.tune_photos(chunk, chunk_pivots, cfg.tune_steps, locality=False)
                synchronize(device)
                tune_s += time.perf_counter() - t
                pivots += chunk_pivots
            e2e_s = time.perf_counter() - t_all
            t = time.perf_counter()
            runner.tune_photos(targets[:k], pivots[:k], cfg.locality_steps, locality=True)
            synchronize(device)
            locality_s = time.perf_counter() - t
    mse, dist, pivot_mse = _reconstruction_quality(tuned, pivots, targets, evaluator, G)

    inv_step = max(inv_s - calls * setup_s, 0.0) / (cfg.inv_steps * n)
    tune_step = tune_s / (cfg.tune_steps * n)
    paper = (calls * setup_s) / n + PAPER_INV_STEPS * inv_step + PAPER_TUNE_STEPS * tune_step
    return PathResult(name=spec.name, batch=k, inv_step_s=inv_step, tune_step_s=tune_step,
                      locality_step_s=locality_s / (cfg.locality_steps * k), e2e_s_per_image=e2e_s / n,
                      paper_s_per_image=paper, peak_memory=mem.peak, warmup_s=warmup_s, mse=mse, perceptual=dist,
                      pivot_mse=pivot_mse, notes=notes)


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


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchReport:
    """Run every path of ``cfg.paths`` on the same generator and targets; failures are reported, not raised."""
    from pti.losses import PerceptualLoss

    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: CUDA is not available here; use --device cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    specs = [parse_path(p) for p in cfg.paths]
    if not specs or specs[0].name != "baseline":
        specs = [parse_path("baseline")] + [s for s in specs if s.name != "baseline"]
    G = build_generator(cfg, device)
    targets = load_targets(cfg.targets, cfg.images, G.img_resolution, device, G.img_channels) if cfg.targets \
        else synthetic_targets(G, cfg.images, cfg.seed)
    cache: dict[tuple[str, int | None], PerceptualLoss] = {}

    def perceptual(net: str, resolution: int | None) -> PerceptualLoss:
        if (net, resolution) not in cache:
            cache[(net, resolution)] = PerceptualLoss(net, resolution, device)
        return cache[(net, resolution)]

    evaluator = PerceptualLoss(TuningConfig().perceptual_net, None, device)
    env = describe_environment(device)
    env["perceptual"] = (f"inversion {perceptual(InversionConfig().perceptual_net, 256).name}; tuning and "
                         f"evaluation {evaluator.name}")
    if cfg.repeat_baseline:  # time the baseline again at the end: shows how much the machine's speed drifted
        specs.append(dataclasses.replace(specs[0], name=REPEAT_NAME))
    results, failures = [], {}
    for spec in specs:
        log(f"pti bench: {spec.name} ...")
        try:
            results.append(run_path(G, spec, targets, cfg, device, perceptual, evaluator, log))
            r = results[-1]
            log(f"  {spec.name}: {r.e2e_s_per_image:.2f} s/image measured, {r.paper_s_per_image:.1f} s/image "
                f"at {PAPER_INV_STEPS}+{PAPER_TUNE_STEPS} steps, MSE {r.mse:.5f}, perceptual {r.perceptual:.4f}")
        except Exception as exc:  # one failing path must not hide the others' numbers
            failures[spec.name] = f"{type(exc).__name__}: {exc}"
            log(f"  {spec.name}: FAILED {failures[spec.name]}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    env["ops"] = describe_environment(device)["ops"]
    return BenchReport(config=cfg, environment=env, results=results, failures=failures)


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def _fmt_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _delta(value: float, base: float) -> str:
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return "n/a"
    d = 100.0 * (value - base) / base
    return f"{d:+.1f}%" + (" ✗" if d > 5.0 else "")


def format_markdown(report: BenchReport, command: str | None = None) -> str:
    """The report as a markdown section (header, table, notes)."""
    cfg, env = report.config, report.environment
    base = next((r for r in report.results if r.name == "baseline"), None)
    again = next((r for r in report.results if r.name == REPEAT_NAME), None)
    base_rate = base.images_per_minute if base else None
    if base and again:
        base_rate = 0.5 * (base.images_per_minute + again.images_per_minute)
    lines = [f"### `{cfg.checkpoint or cfg.config}` on {env['device']}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"- torch {env['torch']}, {env['threads']} threads; CPU: {env['cpu']}; StyleGAN2 ops of the baseline: "
        f"{env['ops']}; date {env['date']}.",
        f"- Perceptual distances: {env['perceptual']}.",
        f"- {cfg.images} targets ({'from ' + cfg.targets if cfg.targets else 'synthetic: G images + colour cast + patch'}"
        f"), {cfg.inv_steps} inversion + {cfg.tune_steps} tuning steps per photo"
        f"{' with' if cfg.early_stop else ', no'} early stop; locality timed over {cfg.locality_steps} steps; "
        f"w statistics from {cfg.w_avg_samples} samples; seed {cfg.seed}.",
        "- ms/step/img: phase wall time / (steps x images) (a batched step of K photos counts K); "
        f"s/img @{PAPER_INV_STEPS}+{PAPER_TUNE_STEPS}: projected from the per-step times; "
        "×: images per minute relative to the baseline in this run. MSE and perceptual distance: final "
        "reconstructions G_tuned(w_pivot), fp32, one evaluator for all paths; Δ vs baseline, ✗ = more than 5% worse.",
        "",
        "| path | K | inv ms/step/img | tune ms/step/img | tune+locality ms/step/img | s/img measured | "
        f"s/img @{PAPER_INV_STEPS}+{PAPER_TUNE_STEPS} | img/min | × | peak memory | warm-up s | MSE | ΔMSE | "
        "perceptual | Δperceptual |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        speedup = f"{r.images_per_minute / base_rate:.2f}" if base_rate else "n/a"
        lines.append(
            f"| {r.name} | {r.batch} | {_fmt_ms(r.inv_step_s)} | {_fmt_ms(r.tune_step_s)} | "
            f"{_fmt_ms(r.locality_step_s)} | {r.e2e_s_per_image:.2f} | {r.paper_s_per_image:.1f} | "
            f"{r.images_per_minute:.2f} | {speedup} | {_fmt_bytes(r.peak_memory)} | {r.warmup_s:.1f} | "
            f"{r.mse:.5f} | {_delta(r.mse, base.mse) if base else 'n/a'} | {r.perceptual:.4f} | "
            f"{_delta(r.perceptual, base.perceptual) if base else 'n/a'} |")
    notes = [f"- {r.name}: {note}" for r in report.results for note in r.notes]
    if base and again:
        drift = 100.0 * (again.paper_s_per_image - base.paper_s_per_image) / base.paper_s_per_image
        notes.append(f"- The baseline ran first and last: {drift:+.0f}% s/image between the two (the machine's "
                     "speed drifted by that much during the run); × uses the mean of the two.")
    notes += [f"- {name}: FAILED: {why}" for name, why in report.failures.items()]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def section_key(report: BenchReport) -> str:
    cfg = report.config
    return f"{Path(cfg.checkpoint).name if cfg.checkpoint else cfg.config}-{torch.device(cfg.device).type}"


def write_section(path: str | Path, key: str, markdown: str, title: str = "# Benchmarks") -> None:
    """Put ``markdown`` between ``<!-- bench:key -->`` markers in ``path`` (replacing that section only); atomic."""
    from pti.io_utils import atomic_write_text

    path = Path(path)
    text = path.read_text() if path.exists() else f"{title}\n\n"
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, path)


def report_json(report: BenchReport) -> str:
    data = {"config": dataclasses.asdict(report.config), "environment": report.environment,
            "results": [{**dataclasses.asdict(r), "images_per_minute": r.images_per_minute} for r in report.results],
            "failures": report.failures}
    return json.dumps(data, indent=2)
