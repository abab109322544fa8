"""PTI from encoder pivots against PTI from the optimised W pivot (issue 19's measurement).

For each photo: the paper's pivot (W, ``InversionConfig().steps`` projector steps from the mean
w) and e4e pivots refined by N projector steps (W+, N in ``--refine``, 0 = the encoder's code
alone), each followed by the same pivotal tuning. Reported per photo and pivot: the tuned
reconstruction's MSE / PSNR / MS-SSIM / perceptual distance / identity (:func:`pti.metrics.evaluate`),
editability after PTI (dlib's smile and yaw scores of the tuned generator's edits at strength
-3 and +3 with the shipped demo boundaries: their difference, and the Spearman correlation of
the score with 7 strengths), and the wall time of inversion and tuning. Timings are measured
in one run, side by side, on the machine named in the output; they are never asserted.

``python -m pti.bench.encoder_pivots --json out.json`` (defaults: the demo generator, its
shipped encoder 'demo-e4e', the two bundled photos, refinement 0, 50 and 450 steps).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import time
from typing import Any

import torch

STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def editability(G: torch.nn.Module, pivot: Any, attributes: tuple[str, ...], scorer: Any) -> dict[str, float]:
    """``{attr}_delta`` (score at s=+3 minus s=-3), ``{attr}_spearman`` (over the :data:`STRENGTHS`
    whose image dlib found a face in; NaN with fewer than 3) and ``{attr}_no_face`` (how many of the
    edit images it found none in) for edits of ``pivot`` with the shipped demo boundaries, rendered
    by ``G``. ``_delta`` is NaN when the face is missing at either end."""
    import numpy as np
    from scipy.stats import spearmanr

    from pti.editing import render_edits, resolve_direction

    out: dict[str, float] = {}
    for attr in attributes:
        images = render_edits(G, pivot.w, resolve_direction(attr, G), STRENGTHS, noise=pivot.noise_maps())[0, 0]
        scores = scorer(images, [attr])[attr].numpy()
        found = np.isfinite(scores)
        out[f"{attr}_delta"] = float(scores[-1] - scores[0])
        out[f"{attr}_spearman"] = (float(spearmanr(np.asarray(STRENGTHS)[found], scores[found]).statistic)
                                   if found.sum() >= 3 else float("nan"))
        out[f"{attr}_no_face"] = float((~found).sum())
    return out


def _edit_cell(r: dict[str, float], attr: str) -> str:
    """``+0.278 (0.93)``: the score change and Spearman's rho; images without a face are counted."""
    delta = "n/a" if math.isnan(r[f"{attr}_delta"]) else f"{r[f'{attr}_delta']:+.3f}"
    missing = int(r.get(f"{attr}_no_face", 0))
    note = f"; no face in {missing}/{len(STRENGTHS)}" if missing else ""
    return f"{delta} ({r[f'{attr}_spearman']:.2f}{note})"


def run(generator: str, encoder_name: str, refine: list[int], inversion_steps: int | None = None,
        tuning_steps: int | None = None, identity: bool = True, figure: str | None = None) -> dict[str, Any]:
    from pti.alignment import align_face
    from pti.core.config import TuningConfig
    from pti.apps.demo import bundled_photos
    from pti.editing.scorers import LandmarkScorer
    from pti.encoders import encoder_for
    from pti.images import pil_to_tensor
    from pti.core.losses import PerceptualLoss
    from pti.metrics import evaluate, identity_similarity
    from pti.core.projector import project
    from pti.stylegan2.checkpoints import load
    from pti.core.tuning import pivotal_tune
    from pti.core.config import inversion_defaults

    G = load(generator).eval()
    enc = encoder_for(G, encoder_name)
    inv_cfg = inversion_defaults(generator)  # the generator's projector lr (pti.zoo)
    if inversion_steps is not None:
        inv_cfg = dataclasses.replace(inv_cfg, steps=inversion_steps)
    tune_cfg = TuningConfig() if tuning_steps is None else TuningConfig(steps=tuning_steps)
    perceptual_inv = PerceptualLoss(inv_cfg.perceptual_net, inv_cfg.perceptual_resolution, "cpu")
    perceptual = PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, "cpu")
    scorer = LandmarkScorer()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    images: dict[str, list[torch.Tensor]] = {}
    for name, photo in bundled_photos().items():
        x = pil_to_tensor(align_face(photo, output_size=G.img_resolution, name=name), G.img_channels)
        x = x.reshape(1, *x.shape[-3:])
        runs = {f"W ({inv_cfg.steps} steps)": (None, inv_cfg)}
        for n in refine:
            runs[f"e4e + {n} steps"] = (enc, dataclasses.replace(inv_cfg, space="w+", steps=n))
        rows[name] = {}
        images[name] = [x]
        for label, (init, cfg) in runs.items():
            t0 = time.perf_counter()
            pivot = project(G, x, cfg, init=init, perceptual=perceptual_inv, progress=False)
            t1 = time.perf_counter()
            result = pivotal_tune(G, x, pivot, tune_cfg, perceptual=perceptual, progress=False)
            t2 = time.perf_counter()
            tuned = result.generator
            with torch.no_grad():
                image = tuned.synthesis(pivot.w, noise_mode=tune_cfg.noise_mode,
                                        noise=pivot.noise_maps() if tune_cfg.use_pivot_noise else None)
            with torch.no_grad():
                images[name] += [G.synthesis(pivot.w, noise_mode="const", noise=pivot.noise_maps()), image]
            row = evaluate(image, x, perceptual=perceptual, identity=identity_similarity if identity else None)
            row.update(editability(tuned, pivot, ("smile", "yaw"), scorer))
            row.update(inversion_s=t1 - t0, tuning_s=t2 - t1, total_s=t2 - t0, tuning_steps=float(result.steps))
            rows[name][label] = {k: float(v) for k, v in row.items()}
            print(name, label, {k: round(v, 4) for k, v in rows[name][label].items()}, flush=True)
    if figure is not None:
        from pti.images import save_grid

        cols = ["photo"] + [f"{label}: {what}" for label in runs for what in ("pivot", "PTI")]
        save_grid(list(images.values()), figure, row_labels=list(images), col_labels=cols, cell_size=128,
                  title="pivots rendered by the original generator, and after pivotal tuning", font_size=10)
    return {"generator": generator, "encoder": encoder_name, "perceptual": perceptual.name,
            "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
            "inversion_steps": inv_cfg.steps, "tuning_steps": tune_cfg.steps, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    """The measurement as a Markdown table, with PSNR and time relative to the W pivot of each photo."""
    lines = [f"PTI from e4e pivots vs the optimised W pivot: generator `{result['generator']}`, encoder "
             f"`{result['encoder']}`, {result['tuning_steps']} tuning steps, perceptual = {result['perceptual']}; "
             f"{result['machine']}.", "",
             "| photo | pivot | MSE ↓ | PSNR dB ↑ (Δ vs W) | MS-SSIM ↑ | perceptual ↓ | identity ↑ | Δsmile (ρ) | "
             "Δyaw (ρ) | inversion s | tuning s | total s (× W) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in result["rows"].items():
        base = next(iter(runs.values()))
        for label, r in runs.items():
            lines.append(
                f"| {name} | {label} | {r['mse']:.4f} | {r['psnr']:.2f} ({r['psnr'] - base['psnr']:+.2f}) | "
                f"{r['ms_ssim']:.4f} | {r['perceptual']:.4f} | {r.get('identity', float('nan')):.4f} | "
                f"{_edit_cell(r, 'smile')} | {_edit_cell(r, 'yaw')} | "
                f"{r['inversion_s']:.1f} | {r['tuning_s']:.1f} | {r['total_s']:.1f} ({r['total_s'] / base['total_s']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default="demo", help="pti generator path or name")
    p.add_argument("--encoder", default="demo-e4e", help="encoder path or zoo name")
    p.add_argument("--refine", type=int, nargs="+", default=[0, 50, 450], help="refinement steps after the encoder")
    p.add_argument("--inversion-steps", type=int, default=None, help="W pivot steps (default: the paper's 450)")
    p.add_argument("--tuning-steps", type=int, default=None, help="tuning steps (default: the paper's 350)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity similarity")
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--markdown", default=None, help="write the table here")
    p.add_argument("--figure", default=None, help="write a PNG of every pivot and its PTI result here")
    a = p.parse_args(argv)
    if any(n < 0 for n in a.refine):
        p.error("--refine steps must be >= 0")
    torch.set_num_threads(a.threads)
    result = run(a.generator, a.encoder, a.refine, a.inversion_steps, a.tuning_steps, identity=not a.no_identity,
                 figure=a.figure)
    table = markdown(result)
    print(table)
    from pti.io_utils import atomic_write_json, atomic_write_text

    if a.json:
        atomic_write_json(result, a.json)
    if a.markdown:
        atomic_write_text(table, a.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
