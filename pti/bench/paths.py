"""Running one execution path (:func:`run_path`) and all of them (:func:`run_bench`)."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import torch

from pti.bench.measure import (PeakMemory, build_generator, describe_environment, load_targets, reconstruction_quality,
                               synchronize, synthetic_targets)
from pti.bench.specs import (AUTO_BATCH_LIMIT, PAPER_INV_STEPS, PAPER_TUNE_STEPS, REPEAT_NAME, BenchConfig, BenchReport,
                             PathResult, PathSpec, parse_path)
from pti.core.config import InversionConfig, LocalityConfig, TuningConfig


class _Runner:
    """Runs PTI for one path: sequential, one photo at a time (the core's project + pivotal_tune for the baseline,
    pti.fast's with the path's execution otherwise), or batched (pti.fast's project_batch + tune_batched)."""

    def __init__(self, G: torch.nn.Module, spec: PathSpec, batch: int, inv: InversionConfig, tune: TuningConfig,
                 perceptual: Callable[[str, int | None], Any]) -> None:
        self.G, self.spec, self.batch, self.inv, self.tune = G, spec, batch, inv, tune
        self.p_inv = perceptual(inv.perceptual_net, inv.perceptual_resolution)
        self.p_tune = perceptual(tune.perceptual_net, tune.perceptual_resolution)

    def invert(self, targets: torch.Tensor, steps: int) -> list:
        from pti.fast import pipeline
        from pti.fast.projector import project_batch

        cfg = dataclasses.replace(self.inv, steps=steps)
        if self.spec.batch is None:
            project = pipeline(self.spec.execution())[0]
            return [project(self.G, t, cfg, perceptual=self.p_inv, progress=False) for t in targets]
        return project_batch(self.G, targets, cfg, perceptual=self.p_inv, progress=False,
                             execution=self.spec.execution())

    def tune_photos(self, targets: torch.Tensor, pivots: list, steps: int, locality: bool) -> list[torch.nn.Module]:
        from pti.fast import pipeline
        from pti.fast.batched import tune_batched

        cfg = dataclasses.replace(self.tune, steps=steps,
                                  locality=dataclasses.replace(self.tune.locality, enabled=locality))
        if self.spec.batch is None:
            pivotal_tune = pipeline(self.spec.execution())[1]
            return [pivotal_tune(self.G, t, p, cfg, perceptual=self.p_tune, progress=False).generator
                    for t, p in zip(targets, pivots)]
        result = tune_batched(self.G, targets, pivots, cfg, perceptual=self.p_tune, progress=False,
                              execution=self.spec.execution())
        if any(result.errors):
            raise RuntimeError("; ".join(e for e in result.errors if e))
        return result.generators()


def _ops_scope(spec: PathSpec, device: torch.device):
    from pti.fast.execution import traceable_ops

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


def run_path(G: torch.nn.Module, spec: PathSpec, targets: torch.Tensor, cfg: BenchConfig, device: torch.device,
             perceptual: Callable[[str, int | None], Any], evaluator: Any,
             log: Callable[[str], None] = print) -> PathResult:
    """Warm up, then time the whole pipeline on every target, then locality tuning; see the module doc."""
    from pti.core.projector import w_statistics

    inv = dataclasses.replace(InversionConfig(), steps=cfg.inv_steps, w_avg_samples=cfg.w_avg_samples,
                              seed=cfg.seed)
    tune = dataclasses.replace(TuningConfig(), steps=cfg.tune_steps, seed=cfg.seed,
                               lpips_threshold=TuningConfig().lpips_threshold if cfg.early_stop else None,
                               perceptual_resolution=spec.tune_perceptual_resolution,
                               locality=LocalityConfig())
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
    mse, dist, pivot_mse = reconstruction_quality(tuned, pivots, targets, evaluator, G)

    inv_step = max(inv_s - calls * setup_s, 0.0) / (cfg.inv_steps * n)
    tune_step = tune_s / (cfg.tune_steps * n)
    paper = (calls * setup_s) / n + PAPER_INV_STEPS * inv_step + PAPER_TUNE_STEPS * tune_step
    return PathResult(name=spec.name, batch=k, inv_step_s=inv_step, tune_step_s=tune_step,
                      locality_step_s=locality_s / (cfg.locality_steps * k), e2e_s_per_image=e2e_s / n,
                      paper_s_per_image=paper, peak_memory=mem.peak, warmup_s=warmup_s, mse=mse, perceptual=dist,
                      pivot_mse=pivot_mse, notes=notes)


def timing_net(net: str, mode: str = "auto") -> str:
    """The perceptual network to time ``net`` ('vgg', 'alex', ...) with: 'auto': ``net`` when torchvision's
    ImageNet weights are at hand (cached or downloadable), else LPIPS on a random backbone of the same
    architecture (``random-<net>``: the same FLOPs, so the same cost; its values are not LPIPS and are never
    reported as quality); 'random': always the random backbone; 'effnet': ``net`` itself, i.e. the
    EfficientNet-Lite0 fallback when LPIPS is unavailable (what tables before issue 30 were timed with)."""
    from pti.bench_presets import PERCEPTUAL_MODES
    from pti.core.perceptual import LPIPS_NETS, PerceptualUnavailable, ensure_lpips_backbone

    if mode not in PERCEPTUAL_MODES:
        raise ValueError(f"--perceptual must be one of {', '.join(PERCEPTUAL_MODES)}, got {mode!r}")
    if net not in LPIPS_NETS or mode == "effnet":
        return net
    if mode == "random":
        return f"random-{net}"
    try:
        ensure_lpips_backbone(net)
        return net
    except PerceptualUnavailable:
        return f"random-{net}"


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchReport:
    """Run every path of ``cfg.paths`` on the same generator and targets; failures are reported, not raised."""
    from pti.core.losses import PerceptualLoss

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
        net = timing_net(net, cfg.perceptual)
        if (net, resolution) not in cache:
            torch.manual_seed(cfg.seed)  # a random backbone's weights
            cache[(net, resolution)] = PerceptualLoss(net, resolution, device)
        return cache[(net, resolution)]

    evaluator = PerceptualLoss(TuningConfig().perceptual_net, None, device)  # real LPIPS, or the named fallback
    env = describe_environment(device)
    inv_p, tune_p = perceptual(InversionConfig().perceptual_net, 256), perceptual(TuningConfig().perceptual_net, None)
    stand_in = " (timing stand-in: LPIPS's architecture and FLOPs, random weights; not a distance to report)"
    env["perceptual"] = (f"timed with {inv_p.name} for inversion, {tune_p.name} for tuning"
                         f"{stand_in if 'random' in inv_p.name + tune_p.name else ''}; quality columns scored by "
                         f"{evaluator.name}")
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
