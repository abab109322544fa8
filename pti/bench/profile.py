"""Where a core step's time goes: one inversion step and one tuning step under ``torch.profiler``.

``python -m pti.bench.profile --config f1024 --device cuda`` runs the core (:func:`pti.core.projector.project`,
:func:`pti.core.tuning.pivotal_tune`: what the official code does) for a few warm-up steps and then profiles
``--active`` steps of each, and reports per step: wall time, host (CPU) time of the profiled ops, device
kernel time, the device's busy fraction (kernel time / wall time), kernels launched, and the top kernels by
device time. On a CPU the "kernels" are the CPU ops (a dry run of the same code path). The perceptual
networks are those ``pti bench`` times with (:func:`pti.bench.paths.timing_net`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import torch

from pti.bench_presets import PERCEPTUAL_MODES

TOP = 12


def _kernel_times(prof: Any, device: torch.device) -> tuple[dict[str, tuple[int, float]], int]:
    """``{name: (calls, microseconds)}`` of the profiled kernels (CUDA: every kernel's duration; CPU: every op's
    self time, its children excluded) and how many there were."""
    if device.type != "cuda":
        rows = {e.key: (e.count, e.self_cpu_time_total) for e in prof.key_averages() if e.self_cpu_time_total > 0}
        return rows, sum(c for c, _ in rows.values())
    from torch.autograd import DeviceType

    rows: dict[str, tuple[int, float]] = {}
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    for e in kernels:
        calls, us = rows.get(e.name, (0, 0.0))
        rows[e.name] = (calls + 1, us + e.time_range.elapsed_us())
    return rows, len(kernels)


def _host_us(prof: Any) -> float:
    """CPU time of the profiled ops, counting each top-level op once (its children are inside it)."""
    from torch.autograd import DeviceType

    return sum(e.time_range.elapsed_us() for e in prof.events()
               if e.device_type == DeviceType.CPU and e.cpu_parent is None)


def summarize(prof: Any, device: torch.device, steps: int, wall_s: float) -> dict[str, Any]:
    """Per-step figures of a profile of ``steps`` steps that took ``wall_s`` seconds."""
    by_name, count = _kernel_times(prof, device)
    kernel_us = sum(us for _, us in by_name.values())
    wall_ms = 1e3 * wall_s / steps
    top = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:TOP]
    return {"steps": steps, "wall_ms_per_step": round(wall_ms, 3),
            "host_ms_per_step": round(_host_us(prof) / 1e3 / steps, 3),
            "device_ms_per_step": round(kernel_us / 1e3 / steps, 3),
            # on a CPU the ops' time is the host's: a busy fraction says nothing there
            "busy_fraction": round(kernel_us / 1e3 / steps / wall_ms, 4) if wall_ms > 0 and device.type == "cuda"
            else None,
            "kernels_per_step": round(count / steps, 1),
            "top": [{"name": name[:90], "calls_per_step": round(calls / steps, 1), "ms_per_step": round(us / 1e3 / steps, 3),
                     "share": round(us / kernel_us, 4) if kernel_us else None} for name, (calls, us) in top]}


def _profiled(run: Any, device: torch.device, warmup: int, active: int) -> dict[str, Any]:
    """``run(callback)`` runs ``warmup + active`` steps calling ``callback`` after each; profile the last ones."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    marks: list[float] = []

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with profile(activities=activities, schedule=schedule(wait=0, warmup=warmup, active=active, repeat=1)) as prof:
        def callback(step: int, _values: dict[str, Any]) -> None:
            if step == warmup - 1 or step == warmup + active - 1:
                sync()
                marks.append(time.perf_counter())
            prof.step()

        run(callback)
    return summarize(prof, device, active, marks[-1] - marks[0] if len(marks) >= 2 else float("nan"))


def profile_core(config: str = "f1024", device: str = "cuda", warmup: int = 3, active: int = 3,
                 perceptual: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Profile the core's inversion and tuning steps on random weights of ``config`` (see the module doc)."""
    from pti.bench.measure import build_generator, describe_environment, synthetic_targets
    from pti.bench.paths import timing_net
    from pti.bench.specs import BenchConfig
    from pti.core.config import InversionConfig, TuningConfig
    from pti.core.losses import PerceptualLoss
    from pti.core.projector import project
    from pti.core.tuning import pivotal_tune

    dev = torch.device(device)
    G = build_generator(BenchConfig(config=config, device=device, seed=seed), dev)
    target = synthetic_targets(G, 1, seed)[0]
    steps = warmup + active
    inv = dataclasses.replace(InversionConfig(), steps=steps, w_avg_samples=1000, seed=seed)
    tune = dataclasses.replace(TuningConfig(), steps=steps, lpips_threshold=None, seed=seed)
    torch.manual_seed(seed)
    p_inv = PerceptualLoss(timing_net(inv.perceptual_net, perceptual), inv.perceptual_resolution, dev)
    p_tune = PerceptualLoss(timing_net(tune.perceptual_net, perceptual), tune.perceptual_resolution, dev)
    pivot = project(G, target, dataclasses.replace(inv, steps=1), perceptual=p_inv, progress=False)
    result: dict[str, Any] = {"config": config, "device": describe_environment(dev)["device"],
                              "torch": torch.__version__, "perceptual": {"inversion": p_inv.name, "tuning": p_tune.name},
                              "warmup_steps": warmup, "active_steps": active}
    result["inversion"] = _profiled(lambda cb: project(G, target, inv, perceptual=p_inv, progress=False, callback=cb),
                                    dev, warmup, active)
    result["tuning"] = _profiled(lambda cb: pivotal_tune(G, target, pivot, tune, perceptual=p_tune, progress=False,
                                                         callback=cb), dev, warmup, active)
    return result


def format_markdown(result: dict[str, Any]) -> str:
    """The profile as a section for figures/benchmarks.md."""
    kind = "CPU ops" if result["device"].startswith("CPU") else "kernels"
    lines = [f"### Core step profile: `{result['config']}` on {result['device']}", "",
             f"- torch {result['torch']}; perceptual: inversion {result['perceptual']['inversion']}, tuning "
             f"{result['perceptual']['tuning']} (random backbones are timing stand-ins, not LPIPS); "
             f"{result['warmup_steps']} warm-up steps, then {result['active_steps']} profiled steps of each.",
             f"- busy: device {kind} time / wall time; host: CPU time of the profiled ops per step.", "",
             f"| step | wall ms | host ms | device ms | busy | {kind}/step |", "|---|---:|---:|---:|---:|---:|"]
    for phase in ("inversion", "tuning"):
        r = result[phase]
        busy = "n/a" if r["busy_fraction"] is None else f"{100 * r['busy_fraction']:.0f}%"
        lines.append(f"| {phase} | {r['wall_ms_per_step']:.1f} | {r['host_ms_per_step']:.1f} | "
                     f"{r['device_ms_per_step']:.1f} | {busy} | {r['kernels_per_step']:.0f} |")
    for phase in ("inversion", "tuning"):
        lines += ["", f"Top {kind} of one {phase} step by device time:", "",
                  "| name | calls/step | ms/step | share |", "|---|---:|---:|---:|"]
        for t in result[phase]["top"]:
            share = "n/a" if t["share"] is None else f"{100 * t['share']:.1f}%"
            lines.append(f"| `{t['name']}` | {t['calls_per_step']:g} | {t['ms_per_step']:.2f} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="f1024")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--active", type=int, default=3)
    parser.add_argument("--perceptual", default="auto", choices=PERCEPTUAL_MODES,
                        help="what to time with (pti.bench.paths.timing_net)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--md", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = profile_core(args.config, args.device, args.warmup, args.active, args.perceptual)
    markdown = format_markdown(result)
    print(markdown)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
