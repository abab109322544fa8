"""Per-image PTI jobs that write ``runs/<run>/<image>/`` atomically and can be resumed.

For each image: (align) -> invert (or reuse ``pivot.pt``) -> tune -> outputs::

    aligned.png          the target as given to the generator
    pivot.pt             Pivot (w, noise, loss history)         -- Pivot.load
    inversion.png        G(w_p; θ) before tuning
    reconstruction.png   G(w_p; θ*) after tuning                 (tune stage only)
    tuned.safetensors    θ* (only with save_generator)
    metrics.json         written last: its presence with "status": "done" marks a finished image

Each image is processed in a staging folder ``runs/<run>/.<image>.partial/`` that replaces
``runs/<run>/<image>/`` only when everything is written, so a killed run never leaves a
half-written result (a valid ``pivot.pt`` left by a killed run is reused). A failing image
(unreadable, no face, NaN loss) raises inside :func:`process_image`; :func:`run_one`
removes its staging folder (nothing is written for it) and the batch driver
:func:`process_images` records the error and goes on with the others.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import torch

from pti.config import InversionConfig, TuningConfig, config_to_dict

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
Stage = Literal["invert", "tune"]


@dataclass
class RunOptions:
    """What to do for each image (besides the inversion/tuning configs)."""

    stage: Stage = "tune"            # 'invert' stops after the pivot; 'tune' also runs PTI
    align: bool = True               # FFHQ-style face alignment first (off for already aligned images)
    reuse_pivot: bool = True         # use an existing valid pivot.pt instead of inverting again
    save_generator: bool = False     # write tuned.safetensors
    skip_finished: bool = True       # skip images whose metrics.json says done
    require_pivot: bool = False      # fail instead of inverting when there is no pivot.pt (`pti tune`)
    progress: bool = True


@dataclass
class ImageOutcome:
    name: str
    status: Literal["done", "skipped", "failed"]
    seconds: float = 0.0
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def list_images(source: str | Path) -> list[Path]:
    """One image file, or the image files of a folder sorted by name (raises if none)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{source}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_metrics(out_dir: Path) -> dict[str, Any] | None:
    """The image's metrics.json if it is complete and finished, else None (corrupt counts as absent)."""
    try:
        data = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "done" else None


def is_finished(out_dir: Path, stage: Stage) -> bool:
    data = read_metrics(out_dir)
    return data is not None and (data.get("stage") == stage or (stage == "invert" and data.get("stage") == "tune"))


def load_target(path: Path, resolution: int, align: bool) -> torch.Tensor:
    """Read (and align) an image: ``[1, 3, R, R]`` in [-1, 1]."""
    from pti.images import read_image

    if align:
        from pti.alignment import align_face

        image = align_face(path, output_size=resolution)
    else:
        image = read_image(path)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    return image


def _summary(history: Sequence[float]) -> dict[str, float]:
    if not history:
        return {}
    return {"first": history[0], "last": history[-1], "min": min(history), "steps": len(history)}


def reconstruction_metrics(image: torch.Tensor, target: torch.Tensor, perceptual) -> dict[str, float]:
    """MSE / PSNR (on [0, 1]) / perceptual distance of one image pair ``[1, 3, R, R]``."""
    with torch.no_grad():
        mse = float(((image - target) / 2).square().mean())
        dist = float(perceptual(image, target).mean())
    return {"mse": mse, "psnr": 10 * math.log10(1 / mse) if mse > 0 else float("inf"), "perceptual": dist}


def process_image(G: torch.nn.Module, path: Path, out_dir: Path, inv_cfg: InversionConfig, tune_cfg: TuningConfig,
                  options: RunOptions, perceptual_inv=None, perceptual_tune=None) -> dict[str, Any]:
    """Run one image into ``out_dir``; returns its metrics dict (also written to ``out_dir/metrics.json``).

    Use :func:`run_one` for the atomic, resumable version.
    """
    from pti.images import write_image
    from pti.inversion import Pivot, prepare_target, project
    from pti.io_utils import atomic_write_json
    from pti.losses import PerceptualLoss
    from pti.tuning import tune

    t0 = time.perf_counter()
    device = next(G.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    target = prepare_target(load_target(path, G.img_resolution, options.align), G.img_resolution, device)
    write_image(target[0], out_dir / "aligned.png")

    perceptual_inv = perceptual_inv or PerceptualLoss(inv_cfg.perceptual_net, inv_cfg.perceptual_resolution, device)
    perceptual_tune = perceptual_tune or PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, device)

    pivot = None
    pivot_path = out_dir / "pivot.pt"
    if options.reuse_pivot and pivot_path.exists():
        try:
            pivot = Pivot.load(pivot_path, map_location=device)
            if tuple(pivot.w.shape) != (1, G.num_ws, G.w_dim) or pivot.space != inv_cfg.space:
                pivot = None
        except ValueError:
            pivot = None  # corrupt or foreign: invert again
    reused = pivot is not None
    if pivot is None and options.require_pivot:
        raise FileNotFoundError(f"{path}: no valid pivot.pt for this generator and space in the run folder; "
                                f"run `pti invert` (or `pti run`) first")
    if pivot is None:
        pivot = project(G, target, inv_cfg, perceptual=perceptual_inv, progress=options.progress)
        pivot.save(pivot_path)
    noise = pivot.noise if pivot.noise else None
    with torch.no_grad():
        inverted = G.synthesis(pivot.w.to(device), noise_mode="const",
                               noise=[n.to(device) for n in noise] if noise else None)
    write_image(inverted[0], out_dir / "inversion.png")

    metrics: dict[str, Any] = {
        "image": str(path), "stage": options.stage, "space": pivot.space,
        "perceptual_name": perceptual_tune.name,
        "inversion": {"steps": pivot.steps, "seconds": pivot.seconds, "reused_pivot": reused,
                      "loss": _summary(pivot.loss_history),
                      **reconstruction_metrics(inverted, target, perceptual_tune)},
        "config": {"inversion": config_to_dict(inv_cfg), "tuning": config_to_dict(tune_cfg)},
    }
    if options.stage == "tune":
        result = tune(G, target, pivot, tune_cfg, perceptual=perceptual_tune, progress=options.progress)
        tuned = result.generator
        with torch.no_grad():
            noise_list = [n.to(device) for n in pivot.noise] if tune_cfg.use_pivot_noise else None
            reconstruction = tuned.synthesis(pivot.w.to(device), noise_mode=tune_cfg.noise_mode, noise=noise_list)
        write_image(reconstruction[0], out_dir / "reconstruction.png")
        if options.save_generator:
            from pti.stylegan2.checkpoints import save

            save(tuned, out_dir / "tuned.safetensors")
        metrics["tuning"] = {"steps": result.steps, "seconds": result.seconds, "stopped_early": result.stopped_early,
                             "loss": _summary(result.loss_history),
                             "perceptual_during_tuning": _summary(result.perceptual_history),
                             "locality": _summary(result.locality_history),
                             **reconstruction_metrics(reconstruction, target, perceptual_tune)}
    metrics["seconds"] = time.perf_counter() - t0
    metrics["status"] = "done"
    atomic_write_json(metrics, out_dir / "metrics.json")
    return metrics


def _staging_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def run_one(G: torch.nn.Module, path: Path, final_dir: Path, inv_cfg: InversionConfig, tune_cfg: TuningConfig,
            options: RunOptions, perceptual_inv=None, perceptual_tune=None) -> dict[str, Any]:
    """:func:`process_image` in a staging folder that atomically becomes ``final_dir`` on success."""
    import shutil

    staging = _staging_dir(final_dir)
    keep_pivot = options.reuse_pivot and (staging / "pivot.pt").exists()
    if staging.exists() and not keep_pivot:
        shutil.rmtree(staging)
    elif keep_pivot:
        for f in staging.iterdir():
            if f.name != "pivot.pt":
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    if options.reuse_pivot and not keep_pivot and (final_dir / "pivot.pt").exists():
        shutil.copy2(final_dir / "pivot.pt", staging / "pivot.pt")
    try:
        metrics = process_image(G, path, staging, inv_cfg, tune_cfg, options, perceptual_inv, perceptual_tune)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
    return metrics


def process_images(G: torch.nn.Module, paths: Iterable[Path], run_dir: str | Path, inv_cfg: InversionConfig,
                   tune_cfg: TuningConfig, options: RunOptions) -> list[ImageOutcome]:
    """Process images one by one into ``run_dir/<stem>/``; failures are recorded, not raised."""
    from tqdm.auto import tqdm

    from pti.losses import PerceptualLoss

    device = next(G.parameters()).device
    run_dir = Path(run_dir)
    paths = list(paths)
    perceptual_inv = perceptual_tune = None
    outcomes: list[ImageOutcome] = []
    for path in tqdm(paths, desc="images", disable=not options.progress or len(paths) < 2):
        out_dir = run_dir / path.stem
        if options.skip_finished and is_finished(out_dir, options.stage):
            outcomes.append(ImageOutcome(path.name, "skipped", metrics=read_metrics(out_dir) or {}))
            continue
        if perceptual_inv is None:
            perceptual_inv = PerceptualLoss(inv_cfg.perceptual_net, inv_cfg.perceptual_resolution, device)
            perceptual_tune = PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, device)
        t0 = time.perf_counter()
        try:
            metrics = run_one(G, path, out_dir, inv_cfg, tune_cfg, options, perceptual_inv, perceptual_tune)
            outcomes.append(ImageOutcome(path.name, "done", time.perf_counter() - t0, metrics=metrics))
        except Exception as exc:  # one bad image must not stop the batch
            message = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (ValueError, FileNotFoundError, RuntimeError, OSError)):
                message += "\n" + traceback.format_exc(limit=3)
            outcomes.append(ImageOutcome(path.name, "failed", time.perf_counter() - t0, error=message))
    return outcomes
