"""The bench report as a markdown table section (replaced in place in a file) and as JSON."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import torch

from pti.bench.specs import PAPER_INV_STEPS, PAPER_TUNE_STEPS, REPEAT_NAME, BenchReport


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
        "×: images per minute relative to the baseline in this run. MSE (on [0, 1], images clamped to [-1, 1]) and "
        "perceptual distance: final reconstructions G_tuned(w_pivot), fp32, scored by pti.metrics.evaluate with one "
        "evaluator for all paths; Δ vs baseline, ✗ = more than 5% worse.",
        "",
        "| path | K | inv ms/step/img | tune ms/step/img | tune+locality ms/step/img | s/img measured | "
        f"s/img @{PAPER_INV_STEPS}+{PAPER_TUNE_STEPS} | img/min | × | peak memory | warm-up s | MSE [0,1] | ΔMSE | "
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
