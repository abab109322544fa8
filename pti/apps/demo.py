"""``pti demo``: PTI end to end on real photos, offline, with a labelled figure and a metrics table.

For each photo: align (dlib 68 landmarks, FFHQ crop) -> invert into W and into W+ ->
pivotal tuning on the W pivot -> edits rendered from the W inversion and from PTI.
Writes ``<out>/demo_<photo>.png`` (original | W | W+ | PTI, then one row per edit and
method) and ``<out>/demo_metrics.md`` (MSE, PSNR, MS-SSIM, perceptual distance under its
real name, identity similarity, per method; seconds per stage).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pti.core.config import InversionConfig, TuningConfig
from pti.fast.config import ExecutionConfig


@dataclass
class DemoConfig:
    generator: str = "demo"
    images: str | None = None                 # a folder/file of photos; None: the photos shipped in dependencies
    device: str = "auto"
    out_dir: str = "figures"
    # the paper's settings; NHWC perceptual network through pti.fast (measured 1.2x faster on a CPU at equal
    # quality, figures/benchmarks.md)
    inversion: InversionConfig | None = None
    """the projector's settings; None: the paper's, with the generator's projector lr (pti.core.config.inversion_defaults)"""
    tuning: TuningConfig = field(default_factory=TuningConfig)
    execution: ExecutionConfig = field(default_factory=lambda: ExecutionConfig(channels_last=True))
    """how the steps run (pti.fast): NHWC perceptual network by default, the rest as the core"""
    edits: tuple[str, ...] | None = None      # direction specs (see pti.editing.resolve_direction); None: defaults
    strengths: tuple[float, ...] = (-3.0, 0.0, 3.0)
    identity: bool = True                     # compute dlib identity similarity (slow-ish)
    progress: bool = True
    class_index: int | None = None            # the photos' class: required for a conditional generator
    face_index: int = 0                       # which detected face of each photo, by detector score (0: the surest)


def bundled_photos() -> dict[str, Any]:
    """The real photos that ship with dependencies: {name: path or RGB array}."""
    import matplotlib.cbook
    import skimage.data

    return {"grace_hopper": Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
            "astronaut": skimage.data.astronaut()}


def default_edits(G: torch.nn.Module, generator_name: str) -> tuple[str, ...]:
    """Shipped InterFaceGAN boundaries for the demo generator, else GANSpace/SeFa components; none for a
    conditional generator (computed W directions would depend on the class: give ``edits`` explicitly)."""
    from pti.editing.loaders import demo_boundary_names

    if getattr(G, "c_dim", 0):
        return ()
    names = demo_boundary_names() if generator_name == "demo" else []
    if names:
        return tuple(names[:3])
    return ("ganspace:0", "sefa:0")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns ``{'images': {name: {method: metrics}}, 'seconds': {...}, 'files': [...]}``."""
    from pti.alignment import align_face
    from pti.core.conditioning import class_label
    from pti.editing import resolve_direction
    from pti.editing.run_edits import render_w_and_pti
    from pti.fast import pipeline
    from pti.images import GridSection, pil_to_tensor, save_sections
    from pti.jobs.runner import list_images
    from pti.core.losses import PerceptualLoss
    from pti.metrics import evaluate, identity_similarity
    from pti.stylegan2.checkpoints import load

    from pti.core.config import inversion_defaults

    project, pivotal_tune = pipeline(cfg.execution)
    inversion = cfg.inversion if cfg.inversion is not None else inversion_defaults(cfg.generator)
    t_start = time.perf_counter()
    device = _device(cfg.device)
    # bad input fails here, before minutes of loading and before anything is written
    photos: dict[str, Any] = ({p.stem: p for p in list_images(cfg.images)} if cfg.images else bundled_photos())
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(stage: str, t0: float) -> None:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    G = load(cfg.generator, device=device).eval()
    label = class_label(G, cfg.class_index, 1, device)  # a conditional generator needs the class: fail early
    perceptual_inv = PerceptualLoss(inversion.perceptual_net, inversion.perceptual_resolution, device)
    perceptual = PerceptualLoss(cfg.tuning.perceptual_net, cfg.tuning.perceptual_resolution, device)
    edit_specs = cfg.edits if cfg.edits is not None else default_edits(G, cfg.generator)
    directions = [resolve_direction(spec, G) for spec in edit_specs]
    timed("load generator and directions", t0)

    results: dict[str, dict[str, dict[str, float]]] = {}
    files: list[str] = []
    for name, source in photos.items():
        t0 = time.perf_counter()
        target = pil_to_tensor(align_face(source, output_size=G.img_resolution, name=str(name),
                                          face_index=cfg.face_index), G.img_channels)
        target = target.reshape(1, *target.shape[-3:]).to(device)
        timed("align", t0)

        recon: dict[str, torch.Tensor] = {}
        pivots = {}
        for space in ("w", "w+"):
            t0 = time.perf_counter()
            inv_cfg = dataclasses.replace(inversion, space=space)
            pivots[space] = project(G, target, inv_cfg, c=label, perceptual=perceptual_inv, progress=cfg.progress)
            with torch.no_grad():
                recon[space.upper()] = G.synthesis(pivots[space].w, noise_mode="const",
                                                    noise=pivots[space].noise_maps())
            timed(f"invert {space.upper()}", t0)

        t0 = time.perf_counter()
        tuned = pivotal_tune(G, target, pivots["w"], cfg.tuning, c=label, perceptual=perceptual,
                             progress=cfg.progress).generator
        with torch.no_grad():
            recon["PTI"] = tuned.synthesis(pivots["w"].w, noise_mode=cfg.tuning.noise_mode,
                                           noise=pivots["w"].noise_maps() if cfg.tuning.use_pivot_noise else None)
        timed("pivotal tuning", t0)

        t0 = time.perf_counter()
        results[name] = {}
        for method, image in recon.items():
            row = evaluate(image, target, perceptual=perceptual, identity=identity_similarity if cfg.identity else None)
            results[name][method] = {**row, "identity": row.get("identity", math.nan)}
        timed("metrics", t0)

        t0 = time.perf_counter()
        sections = [GridSection([torch.cat([target, recon["W"], recon["W+"], recon["PTI"]])],
                                row_labels=["reconstruction"], col_labels=list(RECONSTRUCTION_COLUMNS))]
        edit_rows, edit_labels = [], []
        for direction in directions:
            # the same rendering as `pti run --edit`: W with its own noise maps, PTI as its reconstruction
            w_edit, pti_edit = render_w_and_pti(G, tuned, pivots["w"], direction, cfg.strengths,
                                                cfg.tuning.noise_mode, cfg.tuning.use_pivot_noise)
            edit_rows += [w_edit, pti_edit]
            edit_labels += [f"{direction.name}, W", f"{direction.name}, PTI"]
        if edit_rows:
            sections.append(GridSection(edit_rows, row_labels=edit_labels, col_labels=strength_labels(cfg.strengths),
                                        heading="edits of the W pivot, rendered by the original generator (W) "
                                                "and by the tuned one (PTI)"))
        path = out / f"demo_{name}.png"
        save_sections(sections, path, cell_size=max(128, G.img_resolution),
                      title=f"{name} ({cfg.generator}, {G.img_resolution}px)")
        files.append(str(path))
        timed("edits and figure", t0)

    seconds["total"] = time.perf_counter() - t_start
    summary = {"images": results, "seconds": seconds, "files": files, "perceptual_name": perceptual.name,
               "generator": cfg.generator, "device": str(device), "edits": [d.name for d in directions],
               "inversion_steps": inversion.steps, "inversion_lr": inversion.lr, "tuning_steps": cfg.tuning.steps}
    md_path = out / "demo_metrics.md"
    from pti.io_utils import atomic_write_text

    atomic_write_text(metrics_markdown(summary), md_path)
    summary["files"].append(str(md_path))
    return summary


#: the columns of the demo figure's first row
RECONSTRUCTION_COLUMNS = ("original", "W", "W+", "PTI")


def strength_labels(strengths: tuple[float, ...] | list[float]) -> list[str]:
    """Column labels of the edit rows.

    >>> strength_labels([-3, 0, 3.5])
    ['s=-3', 's=0 (pivot)', 's=3.5']
    """
    return [f"s={s:g}" + (" (pivot)" if s == 0 else "") for s in strengths]


def _lr_note(summary: dict[str, Any]) -> str:
    lr = summary.get("inversion_lr")
    return "" if lr is None else f"; projector lr {lr:g}"


def metrics_markdown(summary: dict[str, Any]) -> str:
    """The demo's metrics table (one row per photo and method) and its timings, as Markdown."""
    lines = [
        "# `pti demo` results",
        "",
        f"Generator `{summary['generator']}` on `{summary['device']}`; {summary['inversion_steps']} inversion steps "
        f"(W and W+{_lr_note(summary)}), {summary['tuning_steps']} tuning steps. Perceptual distance: **{summary['perceptual_name']}**. "
        "Identity: cosine similarity of dlib ResNet face descriptors (higher = same person). "
        "PSNR on the [0, 1] range.",
        "",
        "| photo | method | MSE ↓ | PSNR (dB) ↑ | MS-SSIM ↑ | perceptual ↓ | identity ↑ |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, methods in summary["images"].items():
        for method, m in methods.items():
            lines.append(f"| {name} | {method} | {_fmt(m['mse'])} | {_fmt(m['psnr'], 2)} | {_fmt(m['ms_ssim'])} | "
                         f"{_fmt(m['perceptual'])} | {_fmt(m['identity'])} |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    for stage, sec in summary["seconds"].items():
        lines.append(f"| {stage} | {sec:.1f} |")
    return "\n".join(lines) + "\n"
