"""``pti compare``: the paper's comparison (PTI Sec. 4, Table 1 and the editing study) on a folder of photos.

For every photo the methods run from the same aligned image ``x`` and are scored with the one
:func:`pti.metrics.evaluate` (and :func:`pti.metrics.identity_similarity`)::

    w        the projector's W pivot (:func:`pti.core.projector.project`, space 'w'), rendered by G(θ)
    w+       the projector's W+ pivot (space 'w+'), rendered by G(θ)
    e4e      the e4e encoder's W+ code (Tov et al. 2021; no refinement steps), rendered by G(θ)
    pti      pivotal tuning on the W pivot (the paper), rendered by G(θ*)      (:func:`pti.core.tuning.pivotal_tune`)
    pti-e4e  pivotal tuning on the e4e pivot (the official code's ``w+`` option), rendered by G(θ*_e4e)

Every requested edit (a W direction at several strengths, :mod:`pti.editing.run_edits`) is applied to
each method's code and rendered by the generator of that method (θ for w, w+, e4e; the tuned θ* for
pti, pti-e4e). For each edited image the photo folder records its identity similarity to the photo
and, for directions named after a dlib landmark attribute (``smile``, ``yaw``, ``mouth_open``,
:mod:`pti.editing.scorers`), the change of that score from the method's unedited image.

Outputs (``RUN/<photo>/``, written in a staging folder and renamed when complete, as :mod:`pti.jobs.runner`;
finished, failed and staging folders follow :mod:`pti.jobs.folder`)::

    aligned.png                  the target x
    recon/<method>.png           each method's reconstruction (``w+`` is written ``w_plus``)
    pivots/<pivot>.pt            the pivots (w, w+, e4e), :class:`~pti.core.pivot.Pivot` files
    metrics.json                 per method: the evaluate() row, identity, seconds; per edit: identity and
                                 score change per strength; written last (stage 'compare')

``RUN/summary.json`` and ``RUN/summary.md`` (:mod:`pti.jobs.compare_summary`) aggregate them. A finished photo
is skipped only when it was made with the same plan (methods, edits, configs); otherwise it is redone.
Under torchrun each rank takes its :func:`pti.jobs.distributed.shard` of the photos.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from pti.core.config import InversionConfig, TuningConfig, config_to_dict
from pti.fast.config import ExecutionConfig
from pti.jobs.folder import (ImageOutcome, error_text, failure_path, finished_metrics, manifest, output_name,
                             record_failure, staging_dir)
from pti.jobs.runner import _replace_dir, load_target, recover_staged, render

if TYPE_CHECKING:
    from pti.editing.run_edits import RunEdit
    from pti.core.pivot import Pivot

#: every method, in the order of the paper's table
METHODS: tuple[str, ...] = ("w", "w+", "e4e", "pti", "pti-e4e")
#: the methods ``pti compare`` runs without ``--methods``
DEFAULT_METHODS: tuple[str, ...] = ("w", "w+", "e4e", "pti")
#: the pivot each method renders (or tunes on)
PIVOT_OF = {"w": "w", "w+": "w+", "e4e": "e4e", "pti": "w", "pti-e4e": "e4e"}
#: methods rendered by a tuned generator
TUNED = ("pti", "pti-e4e")
#: how the methods are labelled in tables (the paper's names)
LABELS = {"w": "W", "w+": "W+", "e4e": "e4e", "pti": "PTI", "pti-e4e": "PTI (e4e pivot)"}
STAGE = "compare"
METRIC_KEYS = ("mse", "psnr", "ms_ssim", "perceptual", "identity")


def parse_methods(text: str) -> tuple[str, ...]:
    """``"w,w+,pti"`` -> ``('w', 'w+', 'pti')`` in :data:`METHODS` order; raises ``ValueError`` naming the
    unknown ones."""
    wanted = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METHODS]
    if unknown or not wanted:
        raise ValueError(f"--methods {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'none given'}; "
                         f"choose from {','.join(METHODS)}")
    return tuple(m for m in METHODS if m in wanted)


def expand_edit_lists(texts: Sequence[str]) -> list[str]:
    """``--edit`` values with several directions sharing strengths, split: ``"smile,yaw:-3,3"`` ->
    ``["smile:-3,3", "yaw:-3,3"]``, ``"smile,yaw"`` -> ``["smile", "yaw"]``; one direction stays as it is
    (``"yaw:-3,0,3"``, ``"sefa:2:-2,2"``)."""
    out: list[str] = []
    for text in texts:
        head, sep, tail = text.rpartition(":")
        if sep and "," in head:
            out += [f"{d.strip()}:{tail}" for d in head.split(",") if d.strip()]
        elif not sep and "," in text:
            out += [d.strip() for d in text.split(",") if d.strip()]
        else:
            out.append(text)
    return out


def method_file(method: str) -> str:
    """A file-safe name for a method: ``w+`` -> ``w_plus``."""
    return method.replace("+", "_plus")


@dataclass
class CompareOptions:
    """What ``pti compare`` does for each photo (besides the inversion/tuning configs)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    edits: Sequence["RunEdit"] = ()
    align: bool = True
    face_index: int = 0
    class_index: int | None = None
    skip_finished: bool = True
    progress: bool = True
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    encoder: Any = None  # needed by e4e and pti-e4e: an encoder with encode(images) -> [N, num_ws, w_dim]
    metric_net: str | None = None  # the perceptual network of the metrics (None: the tuning's, LPIPS-alex)

    def plan(self, inv_cfg: InversionConfig, tune_cfg: TuningConfig) -> dict[str, Any]:
        """What a finished photo must have been made with to be kept (JSON-ready)."""
        return {"methods": list(self.methods), "edits": [e.spec or e.key for e in self.edits],
                "inversion": config_to_dict(inv_cfg), "tuning": config_to_dict(tune_cfg),
                "align": self.align, "face_index": self.face_index, "class_index": self.class_index,
                "metric_net": self.metric_net}


def attribute_of(edit: "RunEdit") -> str | None:
    """The dlib landmark score an edit is meant to move (its key or direction name is one of
    :data:`pti.editing.scorers.ATTRIBUTES`), else None."""
    from pti.editing.scorers import ATTRIBUTES

    for name in (edit.key, edit.direction.name):
        if name in ATTRIBUTES:
            return name
    return None


def _score(scorer, images: torch.Tensor, attribute: str) -> list[float]:
    from pti.images import to_channels

    return [float(v) for v in scorer(to_channels(images, 3), [attribute])[attribute]]


@torch.no_grad()
def edit_record(generator: torch.nn.Module, pivot: "Pivot", tuned: bool, tune_cfg: TuningConfig, edit: "RunEdit",
                target: torch.Tensor, unedited: torch.Tensor, scorer,
                unedited_identity: float | None = None) -> tuple[dict[str, Any], torch.Tensor]:
    """One method's edit at every strength: ``({strengths, identity, attribute, score, score_change},
    images [S, C, H, W])``. Identity is to the photo ``target``; the score change is from ``unedited``.
    ``unedited_identity``: the identity of ``unedited``, reused at strength 0 (the same code: ``w + 0·d = w``)
    instead of running dlib again (~1.2 s per 1024 px image on a CPU)."""
    from pti.editing.direction import apply
    from pti.metrics import identity_similarity

    w = pivot.w.to(target.device)
    codes = torch.cat([apply(w, edit.direction, float(s)) for s in edit.strengths])
    images = render(generator, pivot, tuned, tune_cfg, w=codes).float()
    todo = [i for i, s in enumerate(edit.strengths) if s != 0 or unedited_identity is None]
    identity = [unedited_identity] * len(edit.strengths)
    if todo:
        values = identity_similarity(images[todo], target.expand(len(todo), -1, -1, -1).to(images.dtype)).tolist()
        for i, v in zip(todo, values):
            identity[i] = v
    record: dict[str, Any] = {"strengths": [float(s) for s in edit.strengths], "identity": identity,
                              "attribute": attribute_of(edit)}
    if record["attribute"] is not None and scorer is not None:
        base = _score(scorer, unedited, record["attribute"])[0]
        scores = _score(scorer, images, record["attribute"])
        record.update(base_score=base, score=scores, score_change=[s - base for s in scores])
    return record, images


def compare_photo(G: torch.nn.Module, path: Path, out_dir: Path, inv_cfg: InversionConfig, tune_cfg: TuningConfig,
                  options: CompareOptions, perceptual_inv, perceptual, scorer=None, metric=None,
                  worker: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every method on one photo into ``out_dir`` (see the module docstring); returns the metrics dict
    (also written, last, to ``out_dir/metrics.json``). ``perceptual_inv``/``perceptual``: the projector's and
    the tuning's :class:`~pti.core.losses.PerceptualLoss`; ``metric``: the distance of the metrics (default: the
    tuning's, as ``pti run``; GANInverter's table uses LPIPS-VGG); ``scorer``: a
    :class:`~pti.editing.scorers.LandmarkScorer` for the edits' attribute scores. Raises what the pipeline
    raises (no face, divergence)."""
    from pti.core.conditioning import class_label
    from pti.core.divergence import check_images
    from pti.fast import pipeline
    from pti.images import prepare_target, write_image
    from pti.metrics import evaluate, identity_similarity

    t_photo = time.perf_counter()
    project, pivotal_tune = pipeline(options.execution)
    device = next(G.parameters()).device
    label = class_label(G, options.class_index, 1, device)
    target = prepare_target(load_target(path, G.img_resolution, options.align, options.face_index), G.img_resolution,
                            device, G.img_channels)  # the same aligned image for every method
    write_image(target[0], out_dir / "aligned.png")

    pivots: dict[str, Pivot] = {}
    seconds: dict[str, float] = {}
    for name in dict.fromkeys(PIVOT_OF[m] for m in options.methods):  # w, w+, e4e: each pivot once
        t0 = time.perf_counter()
        if name == "e4e":
            if options.encoder is None:
                raise ValueError("methods e4e and pti-e4e need an encoder (CompareOptions.encoder)")
            cfg = dataclasses.replace(inv_cfg, space="w+", steps=0)  # the encoder's code itself
            pivots[name] = project(G, target, cfg, init=options.encoder, c=label, perceptual=perceptual_inv,
                                   progress=False)
        else:
            pivots[name] = project(G, target, dataclasses.replace(inv_cfg, space=name), c=label,
                                   perceptual=perceptual_inv, progress=options.progress)
        seconds[name] = time.perf_counter() - t0
        pivots[name].save(out_dir / "pivots" / f"{method_file(name)}.pt")

    generators: dict[str, torch.nn.Module] = {}
    images: dict[str, torch.Tensor] = {}
    tuning: dict[str, dict[str, Any]] = {}
    for method in options.methods:
        pivot = pivots[PIVOT_OF[method]]
        t0 = time.perf_counter()
        if method in TUNED:
            result = pivotal_tune(G, target, pivot, tune_cfg, c=label, perceptual=perceptual,
                                  progress=options.progress)
            generators[method] = result.generator
            tuning[method] = {"steps": result.steps, "stopped_early": result.stopped_early,
                              "seconds": result.seconds}
        else:
            generators[method] = G
        images[method] = render(generators[method], pivot, method in TUNED, tune_cfg).float()
        check_images(images[method], method)
        seconds[method] = seconds[PIVOT_OF[method]] + time.perf_counter() - t0  # its pivot included
        write_image(images[method][0], out_dir / "recon" / f"{method_file(method)}.png")

    rows: dict[str, dict[str, Any]] = {}
    metric = metric or perceptual
    for method in options.methods:
        row = evaluate(images[method], target, perceptual=metric, identity=identity_similarity)
        rows[method] = {**row, "seconds": seconds[method], **({"tuning": tuning[method]} if method in tuning else {})}
    edits: dict[str, dict[str, Any]] = {m: {} for m in options.methods}
    for edit in options.edits:
        for method in options.methods:
            edits[method][edit.key], _ = edit_record(generators[method], pivots[PIVOT_OF[method]], method in TUNED,
                                                     tune_cfg, edit, target, images[method], scorer,
                                                     unedited_identity=rows[method]["identity"])

    metrics: dict[str, Any] = {
        "image": str(path), "stage": STAGE, "perceptual_name": metric.name, "tuning_perceptual_name": perceptual.name,
        "identity_model": "dlib ResNet face descriptors, cosine (pti.metrics.identity_similarity)",
        "methods": rows, "edits": edits,
        "pivots": {k: {"space": p.space, "origin": p.origin, "steps": p.steps} for k, p in pivots.items()},
        "plan": options.plan(inv_cfg, tune_cfg), "execution": config_to_dict(options.execution),
        "worker": dict(worker or {}),
    }
    metrics["files"] = manifest(out_dir)
    metrics["seconds"] = time.perf_counter() - t_photo
    metrics["status"] = "done"
    from pti.io_utils import atomic_write_json

    atomic_write_json(metrics, out_dir / "metrics.json")
    return metrics


def finished_with_plan(out_dir: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished photo folder made with ``plan``, else None (redo it)."""
    from pti.io_utils import strict_json_value

    metrics = finished_metrics(out_dir, STAGE) or recover_staged(out_dir, STAGE)  # type: ignore[arg-type]
    return metrics if metrics is not None and metrics.get("plan") == strict_json_value(plan) else None


def compare_one(G: torch.nn.Module, path: Path, final_dir: Path, inv_cfg: InversionConfig, tune_cfg: TuningConfig,
                options: CompareOptions, **kwargs: Any) -> dict[str, Any]:
    """:func:`compare_photo` in a staging folder that becomes ``final_dir`` only when complete; on failure the
    staging folder is removed, ``final_dir`` is left as it was and the exception propagates."""
    staging = staging_dir(final_dir)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        metrics = compare_photo(G, path, staging, inv_cfg, tune_cfg, options, **kwargs)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace_dir(staging, final_dir)  # the finished staging folder replaces final_dir, as in runner.run_one
    return metrics


def compare_photos(G: torch.nn.Module, paths: Sequence[Path], run_dir: str | Path, inv_cfg: InversionConfig,
                   tune_cfg: TuningConfig, options: CompareOptions,
                   worker: dict[str, Any] | None = None) -> list[ImageOutcome]:
    """:func:`compare_one` for each photo into ``run_dir/<stem>/``; failures are recorded in
    ``run_dir/.failures/`` and returned as outcomes, not raised. Photos finished with the same plan are skipped."""
    from pti.core.losses import PerceptualLoss
    from pti.progress import progress_bar

    run_dir = Path(run_dir)
    device = next(G.parameters()).device
    plan = options.plan(inv_cfg, tune_cfg)
    shared: dict[str, Any] = {}
    outcomes: list[ImageOutcome] = []
    rank = (worker or {}).get("rank", 0)
    for path in progress_bar(list(paths), desc="photos", disable=not options.progress or len(paths) < 2 or rank != 0):
        name = output_name(path)
        done = finished_with_plan(run_dir / name, plan) if options.skip_finished else None
        if done is not None:
            failure_path(run_dir, name).unlink(missing_ok=True)
            outcomes.append(ImageOutcome(name, "skipped", metrics=done, file=str(path)))
            continue
        if not shared:
            from pti.editing.scorers import LandmarkScorer

            shared = {"perceptual_inv": PerceptualLoss(inv_cfg.perceptual_net, inv_cfg.perceptual_resolution, device),
                      "perceptual": PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, device),
                      "scorer": LandmarkScorer() if options.edits else None,
                      "metric": PerceptualLoss(options.metric_net, None, device) if options.metric_net else None}
        t0 = time.perf_counter()
        try:
            metrics = compare_one(G, path, run_dir / name, inv_cfg, tune_cfg, options, worker=worker, **shared)
        except Exception as exc:  # one bad photo must not stop the comparison
            outcome = ImageOutcome(name, "failed", time.perf_counter() - t0, error=error_text(exc), file=str(path))
            record_failure(run_dir, outcome, STAGE, worker)  # type: ignore[arg-type]
            outcomes.append(outcome)
            continue
        failure_path(run_dir, name).unlink(missing_ok=True)
        outcomes.append(ImageOutcome(name, "done", time.perf_counter() - t0, metrics=metrics, file=str(path)))
    return outcomes


def finite(values: Sequence[Any]) -> list[float]:
    """The finite numbers of ``values`` (None, NaN and inf dropped)."""
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
