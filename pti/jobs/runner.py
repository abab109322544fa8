"""Per-image PTI jobs that write ``runs/<run>/<image>/`` atomically and can be resumed.

For each image: (align) -> invert (or reuse ``pivot.pt``) -> tune -> outputs::

    aligned.png          the target as given to the generator
    pivot.pt             Pivot (w, noise, loss history)         -- Pivot.load
    inversion.png        G(w_p; θ) before tuning
    reconstruction.png   G(w_p; θ*) after tuning                 (tune stage only)
    edits/<dir>_<s>.png  G(w_p + s·d; θ*): each requested edit (RunOptions.edits, `pti run --edit`)
    edits/grid.png       labelled grid: per direction, the W edit on θ above the PTI edit on θ*
                         (see pti.editing.run_edits)
    tuned.safetensors    θ* in float16 (only with save_generator; loads back as float32). With it,
                         reconstruction.png, the edits and the tuning metrics are rendered from these
                         fp16-rounded weights, so that `pti edit RUN/PHOTO --strengths 0` gives
                         reconstruction.png exactly; without it, from θ* in float32
    metrics.json         written last: "status": "done", the worker that made it (with torch's thread
                         count and kernel ISA, see pti.jobs.distributed), what the result was made from
                         ("made_from": generator fingerprint, sha256 of the photo's bytes, alignment,
                         class, pivot start) and a manifest ("files": relative path -> size in bytes)
                         of the files above

Rank 0 then writes the run's ``summary.json``, ``summary.md`` and ``summary.html`` (with thumbnails
in ``.thumbs/``; see :mod:`pti.jobs.summary`, :mod:`pti.jobs.summary_html`). The folder layout and the
finished test live in :mod:`pti.jobs.folder`.

An image's output folder is named after its file's stem (``photo.jpg`` -> ``runs/<run>/photo/``).

Reuse. A finished result is kept only while what it was made from is unchanged: the generator's weights
(:func:`~pti.stylegan2.checkpoints.weights_fingerprint`), the photo's bytes (sha256), the settings
(inversion and tuning configs as the stage uses them, alignment, face index, class, pivot start) and,
with save_generator, a kept ``tuned.safetensors``. Otherwise the image is redone, and the outcome says
what changed (``ImageOutcome.redone``; ``pti run`` prints one line per run, see :func:`redone_message`).
A result whose ``metrics.json`` predates these records is redone too ("inputs not recorded"). How the
steps run (:class:`~pti.fast.config.ExecutionConfig`) is not part of it. A pivot is not reused for a
photo whose bytes, alignment or face index changed; ``pti tune`` then fails for it, asking to invert again.

Restart safety. Each image is processed in a staging folder ``runs/<run>/.<image>.partial/``
that replaces ``runs/<run>/<image>/`` only when everything is written (a rename), so a killed
run never leaves a half-written result folder. An image counts as finished
(:func:`is_finished`) only when its ``metrics.json`` parses, says ``done`` for the stage and
every file of its manifest is there with its recorded size; anything else (missing or corrupt
``metrics.json``, a truncated file) is redone. A valid ``pivot.pt`` left in a staging folder by a
killed run is reused when it was made with the same :class:`~pti.core.config.InversionConfig`; a
corrupt one is inverted again. A staging folder that a kill caught between its completion and
its rename is moved into place instead of being recomputed.

Failures. A failing image (unreadable, no face, NaN/inf loss, a diverged optimisation: see
:mod:`pti.core.divergence`) raises inside
:func:`process_image`; :func:`run_one` removes its staging folder (nothing is written for it,
an older result folder is left as it was) and the batch driver :func:`process_images` records
the error in ``runs/<run>/.failures/<image>.json`` and goes on with the others. A later success
removes that record. Failed images are tried again by the next run of the same command. When the
failing image had a finished result made from other inputs (a redo, see "Reuse"), that result is stale:
it is moved to ``runs/<run>/.stale/<image>/`` (:func:`pti.jobs.folder.set_aside_stale`), so that the
summary and the exit status count the image as failed and ``pti edit`` does not take it for this run's;
its pivot.pt is still offered to the next run (checked like any other), and a later success removes it.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch

from pti.core.config import InversionConfig, TuningConfig, config_to_dict, validate
from pti.fast.config import ExecutionConfig
from pti.jobs.folder import (FAILURES_DIR, ImageOutcome, Stage, check_unique_names, error_text,  # noqa: F401
                             failure_path, finished_metrics, is_finished, list_images, manifest, output_name,
                             read_failure, read_metrics, record_failure, set_aside_stale, stale_dir, staging_dir,
                             what_changed)

if TYPE_CHECKING:
    from pti.core.pivot import Pivot
    from pti.editing.run_edits import RunEdit


@dataclass
class RunOptions:
    """What to do for each image (besides the inversion/tuning configs)."""

    stage: Stage = "tune"            # 'invert' stops after the pivot; 'tune' also runs PTI
    align: bool = True               # FFHQ-style face alignment first (off for already aligned images)
    reuse_pivot: bool = True         # use an existing valid pivot.pt instead of inverting again
    save_generator: bool = False     # write tuned.safetensors
    skip_finished: bool = True       # skip images whose metrics.json says done
    require_pivot: bool = False      # fail instead of inverting when there is no pivot.pt (`pti tune`)
    class_index: int | None = None   # the photos' class for a conditional generator (see pti.core.conditioning)
    face_index: int = 0              # with align: which detected face, by descending detector score (0: the surest)
    progress: bool = True
    edits: Sequence["RunEdit"] = ()  # edits rendered after tuning into edits/ (see pti.editing.run_edits)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)  # how the steps run (pti.fast; default: core)
    encoder: Any = None              # pivots start at this encoder's code (e4e, `--init e4e`); None: the mean w
    multi_id: bool = False           # the photos are tuned together (pti.jobs.multi_id), not each alone


def load_target(path: Path, resolution: int, align: bool, face_index: int = 0) -> torch.Tensor:
    """Read (and align) an image: ``[1, 3, H, W]`` in [-1, 1] (``R x R`` when aligned).

    ``face_index``: with ``align``, which detected face (see :func:`pti.alignment.align_face`); a photo with
    fewer faces raises :class:`~pti.alignment.NoFaceFound` saying how many were found."""
    from pti.images import pil_to_tensor, read_image

    if align:
        from pti.alignment import align_face

        image = pil_to_tensor(align_face(path, output_size=resolution, face_index=face_index))
    else:
        image = read_image(path)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    return image


def _summary(history: Sequence[float]) -> dict[str, float]:
    if not history:
        return {}
    return {"first": history[0], "last": history[-1], "min": min(history), "steps": len(history)}


#: the dtype tuned.safetensors is kept in (save_generator): half the size, loads back as float32
KEPT_DTYPE = torch.float16


def as_kept(G: torch.nn.Module, dtype: torch.dtype = KEPT_DTYPE) -> torch.nn.Module:
    """``G`` with every floating-point state-dict entry rounded through ``dtype`` in place (and returned):
    the weights that ``save(G, ..., dtype=dtype)`` keeps and :func:`pti.stylegan2.checkpoints.load` gives
    back. Renders of it equal renders of the saved file, bit for bit."""
    with torch.no_grad():
        for value in G.state_dict().values():  # shares storage with the parameters and buffers
            if value.is_floating_point():
                value.copy_(value.to(dtype).to(value.dtype))
    return G


def made_from_record(G: torch.nn.Module, path: Path, options: RunOptions, generator: str | None = None,
                     encoder: str | None = None) -> dict[str, Any]:
    """What a result of the photo ``path`` is made from, besides the configs (``metrics.json``'s "made_from"):
    ``generator`` (its :func:`~pti.stylegan2.checkpoints.weights_fingerprint`; computed when None),
    ``photo_sha256`` (of the file's bytes), ``align``, ``face_index`` (None without alignment),
    ``class_index``, ``init`` ('mean' or 'e4e'), ``encoder`` (the e4e encoder's weights fingerprint) and
    ``multi_id`` (tuned with other photos, ``pti run --multi-id``, or alone; see :func:`_multi_id_changed`)."""
    from pti.stylegan2.checkpoints import weights_fingerprint
    from pti.zoo import sha256_file

    if options.encoder is not None and encoder is None and isinstance(options.encoder, torch.nn.Module):
        encoder = weights_fingerprint(options.encoder)
    return {"generator": generator or weights_fingerprint(G), "photo_sha256": sha256_file(path),
            "align": options.align, "face_index": options.face_index if options.align else None,
            "class_index": options.class_index, "init": "e4e" if options.encoder is not None else "mean",
            "encoder": encoder, "multi_id": options.multi_id}


def _multi_id_changed(metrics: dict[str, Any], made: dict[str, Any]) -> bool:
    """Whether a finished result (its ``metrics``) was tuned otherwise than ``made`` says (alone or in a multi-ID
    run): compared for tuned results only (a pivot is the same either way), and only when recorded (results of an
    older pti have no ``multi_id`` entry and are kept as before)."""
    recorded = metrics.get("made_from")
    return (metrics.get("stage") == "tune" and isinstance(recorded, dict) and "multi_id" in recorded
            and recorded["multi_id"] != made.get("multi_id"))


def _pivot_blocker(prior: dict[str, Any] | None, made: dict[str, Any], require_pivot: bool) -> str | None:
    """Why the pivot.pt in an image's folder (with metrics ``prior``) must not be used for the photo as
    ``made`` describes it, or None. Generator and class are checked on the pivot itself."""
    if prior is None:
        return None  # a staging folder's pivot or a folder without a finished metrics.json: checked by itself
    recorded = prior.get("made_from")
    if not isinstance(recorded, dict):
        return None if require_pivot else "inputs not recorded (made by an older pti)"
    if recorded.get("photo_sha256") != made["photo_sha256"]:
        return "the photo changed"
    if (recorded.get("align"), recorded.get("face_index")) != (made["align"], made["face_index"]):
        return "the alignment (--no-align, --face-index) changed"
    return None


def _load_reusable_pivot(G: torch.nn.Module, pivot_path: Path, inv_cfg: InversionConfig, any_config: bool,
                         label: torch.Tensor | None = None, origin: str | None = None,
                         fingerprint: str | None = None):
    """A pivot.pt that fits ``G``, ``inv_cfg`` (any config when ``any_config``), the class ``label``
    ``[1, c_dim]`` of a conditional ``G`` and ``origin`` ('projector' or 'e4e'; any when None), or None.

    ``fingerprint``: ``G``'s weights fingerprint when the caller has it (hashing G's weights is the costly part)."""
    from pti.core.pivot import Pivot

    if not pivot_path.exists():
        return None
    try:
        pivot = Pivot.load(pivot_path, map_location=next(G.parameters()).device)
    except ValueError:
        return None  # corrupt or foreign: invert again
    try:
        pivot.check_fits(G)
    except ValueError:
        return None  # shapes of another generator
    if pivot.space != inv_cfg.space or (origin is not None and pivot.origin != origin):
        return None
    if pivot.generator:
        from pti.stylegan2.checkpoints import weights_fingerprint

        if pivot.generator != (fingerprint or weights_fingerprint(G)):
            return None  # inverted with other weights of the same shape
    if not bool(torch.isfinite(pivot.w).all()) or not all(bool(torch.isfinite(n).all()) for n in pivot.noise):
        return None
    if not any_config and pivot.config and pivot.config != config_to_dict(inv_cfg):
        return None  # made with other inversion settings
    if getattr(G, "c_dim", 0) and (label is None or pivot.c is None or not torch.equal(pivot.c.cpu(), label.cpu())):
        return None  # inverted for another class
    return pivot


@torch.no_grad()
def render(generator: torch.nn.Module, pivot: "Pivot", tuned: bool, tune_cfg: TuningConfig,
           w: torch.Tensor | None = None) -> torch.Tensor:
    """A pivot's image ``[N, C, H, W]`` as ``pti run`` renders it: by the original generator with the pivot's
    noise maps (``tuned=False``: inversion.png), or by a tuned one with the tuning's noise (``tuned=True``:
    reconstruction.png, :attr:`TuningConfig.noise_mode`, the pivot's noise maps only with
    :attr:`TuningConfig.use_pivot_noise`). ``w``: other codes ``[N, num_ws, w_dim]`` (edited ones) instead of
    the pivot's. On ``generator``'s device; used by ``pti run``, ``pti compare`` and the multi-ID job."""
    from pti.editing.run_edits import render_noise

    device = next(generator.parameters()).device
    noise, noise_mode = render_noise(pivot, device, tuned, tune_cfg.noise_mode, tune_cfg.use_pivot_noise)
    return generator.synthesis((pivot.w if w is None else w).to(device), noise_mode=noise_mode, noise=noise)


def process_image(G: torch.nn.Module, path: Path, out_dir: Path, inv_cfg: InversionConfig, tune_cfg: TuningConfig,
                  options: RunOptions, perceptual_inv=None, perceptual_tune=None,
                  worker: dict[str, Any] | None = None, made_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one image into ``out_dir``; returns its metrics dict (also written to ``out_dir/metrics.json``).

    ``worker``: a record of the process doing it (see :meth:`pti.jobs.distributed.DistContext.describe`),
    stored in the metrics. ``made_from``: :func:`made_from_record` of the photo (computed when None).
    Raises ``ValueError`` for a config field outside its range (:func:`pti.core.config.validate`).
    Use :func:`run_one` for the atomic, resumable version.
    """
    from pti.core.conditioning import class_label
    from pti.core.divergence import check_images
    from pti.fast import pipeline
    from pti.images import prepare_target, write_image
    from pti.io_utils import atomic_write_json
    from pti.jobs.distributed import numerics_record
    from pti.core.losses import PerceptualLoss
    from pti.metrics import evaluate

    t0 = time.perf_counter()
    validate(inv_cfg)
    validate(tune_cfg)
    made = dict(made_from) if made_from is not None else made_from_record(G, path, options)
    project, pivotal_tune = pipeline(options.execution)  # the core, or pti.fast with the execution options
    device = next(G.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    label = class_label(G, options.class_index, 1, device)
    image = load_target(path, G.img_resolution, options.align, options.face_index)
    target = prepare_target(image, G.img_resolution, device, G.img_channels)
    write_image(target[0], out_dir / "aligned.png")

    perceptual_inv = perceptual_inv or PerceptualLoss(inv_cfg.perceptual_net, inv_cfg.perceptual_resolution, device)
    perceptual_tune = perceptual_tune or PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, device)

    pivot_path = out_dir / "pivot.pt"
    origin = None if options.require_pivot else "e4e" if options.encoder is not None else "projector"
    pivot = _load_reusable_pivot(G, pivot_path, inv_cfg, any_config=options.require_pivot, label=label,
                                 origin=origin, fingerprint=made["generator"]) if options.reuse_pivot else None
    reused = pivot is not None
    if pivot is None and options.require_pivot:
        raise FileNotFoundError(f"{path}: no pivot.pt in the run folder fits this generator"
                                f"{', class' if label is not None else ''} and pivot space (there is none, or it "
                                f"was made for others); "
                                f"run `pti invert` (or `pti run`) first")
    if pivot is None:
        pivot = project(G, target, inv_cfg, init=options.encoder, c=label, perceptual=perceptual_inv,
                        progress=options.progress)
        pivot.save(pivot_path)
    inverted = render(G, pivot, False, tune_cfg)
    # the final images too: the optimisations check every step's image but not the result of the last update
    check_images(inverted, "inversion" + (" (pivot.pt of an earlier run; --no-reuse-pivot inverts again)"
                                          if reused else ""))
    write_image(inverted[0], out_dir / "inversion.png")

    inv_record = config_to_dict(inv_cfg)
    if options.require_pivot:  # `pti tune`: the pivot as found, whatever settings made it
        made["init"] = "e4e" if pivot.origin == "e4e" else "mean"
        inv_record = pivot.config or inv_record
    metrics: dict[str, Any] = {
        "image": str(path), "stage": options.stage, "space": pivot.space, "class_index": options.class_index,
        "made_from": made,
        "perceptual_name": perceptual_tune.name,
        "inversion": {"steps": pivot.steps, "seconds": pivot.seconds, "reused_pivot": reused, "origin": pivot.origin,
                      "loss": _summary(pivot.loss_history),
                      **evaluate(inverted, target, perceptual=perceptual_tune)},
        "config": {"inversion": inv_record, "tuning": config_to_dict(tune_cfg),
                   "execution": config_to_dict(options.execution)},
        "worker": {**dict(worker or {}), **numerics_record(device)},  # threads and ISA set the last bits
    }
    if options.stage == "tune":
        result = pivotal_tune(G, target, pivot, tune_cfg, c=label, perceptual=perceptual_tune, progress=options.progress)
        tuned = result.generator
        if options.save_generator:  # render (and measure) what is kept: tuned.safetensors' fp16 weights
            tuned = as_kept(tuned)
        reconstruction = render(tuned, pivot, True, tune_cfg)
        check_images(reconstruction, "tuning")
        write_image(reconstruction[0], out_dir / "reconstruction.png")
        if options.edits:
            from pti.editing.run_edits import write_run_edits

            write_run_edits(G, tuned, pivot, options.edits, out_dir, tune_cfg)
        if options.save_generator:
            from pti.stylegan2.checkpoints import save

            save(tuned, out_dir / "tuned.safetensors", dtype=KEPT_DTYPE)  # half the size; loads as float32
        kept = KEPT_DTYPE if options.save_generator else torch.float32  # what reconstruction.png was rendered from
        metrics["tuning"] = {"weights": str(kept).removeprefix("torch."), "steps": result.steps,
                             "seconds": result.seconds, "stopped_early": result.stopped_early,
                             "loss": _summary(result.loss_history),
                             "perceptual_during_tuning": _summary(result.perceptual_history),
                             "locality": _summary(result.locality_history),
                             **evaluate(reconstruction, target, perceptual=perceptual_tune)}
    metrics["files"] = manifest(out_dir)
    metrics["seconds"] = time.perf_counter() - t0
    metrics["status"] = "done"
    atomic_write_json(metrics, out_dir / "metrics.json")
    return metrics


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an older ``dst``."""
    if dst.exists():
        shutil.rmtree(dst)  # a kill between these two lines leaves src complete: see recover_staged
    src.rename(dst)


def recover_staged(final_dir: Path, stage: Stage) -> dict[str, Any] | None:
    """Move a complete staging folder (killed between completion and rename) into place; returns the moved
    result's metrics (:func:`~pti.jobs.folder.finished_metrics`), or None when there was none to move."""
    staging = staging_dir(final_dir)
    metrics = finished_metrics(staging, stage) if staging.is_dir() else None
    if metrics is not None:
        _replace_dir(staging, final_dir)
    return metrics


def run_one(G: torch.nn.Module, path: Path, final_dir: Path, inv_cfg: InversionConfig, tune_cfg: TuningConfig,
            options: RunOptions, perceptual_inv=None, perceptual_tune=None,
            worker: dict[str, Any] | None = None, made_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`process_image` in a staging folder that atomically becomes ``final_dir`` on success.

    On failure the staging folder is removed and ``final_dir`` is left as it was; the exception propagates.
    """
    staging = staging_dir(final_dir)
    keep_pivot = options.reuse_pivot and (staging / "pivot.pt").is_file()
    if staging.exists() and not keep_pivot:
        shutil.rmtree(staging)
    elif keep_pivot:
        for f in staging.iterdir():
            if f.name != "pivot.pt":
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    if options.reuse_pivot and not keep_pivot:
        for source in (final_dir, stale_dir(final_dir)):  # a stale result's pivot is checked like any other
            if (source / "pivot.pt").is_file():
                shutil.copy2(source / "pivot.pt", staging / "pivot.pt")
                break
    try:
        metrics = process_image(G, path, staging, inv_cfg, tune_cfg, options, perceptual_inv, perceptual_tune,
                                worker, made_from)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace_dir(staging, final_dir)
    return metrics


def process_images(G: torch.nn.Module, paths: Iterable[Path], run_dir: str | Path, inv_cfg: InversionConfig,
                   tune_cfg: TuningConfig, options: RunOptions, worker: dict[str, Any] | None = None,
                   ) -> list[ImageOutcome]:
    """Process images one by one into ``run_dir/<stem>/``; failures are recorded, not raised.

    Finished images are skipped (``options.skip_finished``) while what they were made from is unchanged
    (see the module docstring, "Reuse"); else they are redone and their outcome's ``redone`` says what
    changed (:func:`redone_message` sums it up). Each failure is returned as an outcome and written to
    ``run_dir/.failures/<stem>.json``. ``worker`` (rank, device, ...) goes into each metrics.json.
    Raises ``ValueError`` before any image when a config field is outside its range (:func:`pti.core.config.validate`).
    """
    from pti.core.losses import PerceptualLoss
    from pti.progress import progress_bar
    from pti.stylegan2.checkpoints import weights_fingerprint

    validate(inv_cfg)
    validate(tune_cfg)
    device = next(G.parameters()).device
    run_dir = Path(run_dir)
    paths = list(paths)
    check_unique_names(paths)
    # the settings a finished result must share: `pti invert` ignores tuning, `pti tune` takes pivots as found
    compared = {"inversion": config_to_dict(inv_cfg), "tuning": config_to_dict(tune_cfg)}
    if options.stage == "invert":
        del compared["tuning"]
    if options.require_pivot:
        del compared["inversion"]
    ignored = ("init", "encoder", "multi_id") if options.require_pivot else ("multi_id",)  # multi_id: below
    fingerprint = weights_fingerprint(G)
    encoder = weights_fingerprint(options.encoder) if isinstance(options.encoder, torch.nn.Module) else None
    perceptual_inv = perceptual_tune = None
    outcomes: list[ImageOutcome] = []
    lacking_edits: list[str] = []  # finished images without (some of) the requested edits
    rank = (worker or {}).get("rank", 0)
    desc = "images" if (worker or {}).get("world_size", 1) == 1 else f"images (rank {rank})"
    bar_off = not options.progress or len(paths) < 2 or rank != 0
    for path in progress_bar(paths, desc=desc, disable=bar_off):
        name = output_name(path)
        out_dir = run_dir / name
        t0 = time.perf_counter()
        try:
            made = made_from_record(G, path, options, fingerprint, encoder)
        except OSError:
            made = None  # an unreadable file: fails below and is recorded like any failure of this image
        changed: tuple[str, ...] = ()
        finished = None  # the finished result's metrics.json, read once for the skip and the pivot checks
        if made is not None and options.skip_finished:
            finished = finished_metrics(out_dir, options.stage) or recover_staged(out_dir, options.stage)
        if finished is not None:
            metrics = finished
            changed = tuple(what_changed(metrics, made, compared, ignored))
            if _multi_id_changed(metrics, made):
                changed += ("multi-id changed",)
            kept_files = metrics.get("files") or {}
            if options.save_generator and options.stage == "tune" and "tuned.safetensors" not in kept_files:
                changed += ("tuned.safetensors requested (--save-generator)",)
            if not changed:
                failure_path(run_dir, name).unlink(missing_ok=True)
                outcomes.append(ImageOutcome(name, "skipped", metrics=metrics, file=str(path)))
                if options.edits and not _has_edits(metrics, options.edits):
                    lacking_edits.append(name)
                continue
        if perceptual_inv is None:
            perceptual_inv = PerceptualLoss(inv_cfg.perceptual_net, inv_cfg.perceptual_resolution, device)
            perceptual_tune = PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, device)
        try:
            made = made or made_from_record(G, path, options, fingerprint, encoder)  # raises for an unreadable file
            prior = (finished if finished is not None else read_metrics(out_dir) if out_dir.exists()
                     else read_metrics(stale_dir(out_dir)))
            blocker = _pivot_blocker(prior, made, options.require_pivot)
            if blocker and options.require_pivot:
                raise FileNotFoundError(f"{path}: {blocker} since its pivot.pt was made; run `pti invert` "
                                        f"(or `pti run`) again for it")
            image_options = dataclasses.replace(options, reuse_pivot=False) if blocker else options
            metrics = run_one(G, path, out_dir, inv_cfg, tune_cfg, image_options, perceptual_inv, perceptual_tune,
                              worker, made)
        except Exception as exc:  # one bad image must not stop the batch
            error = error_text(exc)
            if changed and out_dir.is_dir():  # the finished result no longer matches its inputs: never count it
                moved = set_aside_stale(out_dir, changed, error)
                first, newline, rest = error.partition("\n")
                error = (f"{first} (redo after: {', '.join(changed)}; the earlier result is stale, moved to "
                         f"{moved})" + newline + rest)
            outcome = ImageOutcome(name, "failed", time.perf_counter() - t0, error=error, file=str(path),
                                   redone=changed)
            record_failure(run_dir, outcome, options.stage, worker)
            outcomes.append(outcome)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        failure_path(run_dir, name).unlink(missing_ok=True)
        shutil.rmtree(stale_dir(out_dir), ignore_errors=True)
        outcomes.append(ImageOutcome(name, "done", time.perf_counter() - t0, metrics=metrics, file=str(path),
                                     redone=changed))
    if lacking_edits:
        from pti.editing.run_edits import missing_edits_message

        warnings.warn(missing_edits_message(run_dir, lacking_edits, options.edits), RuntimeWarning, stacklevel=2)
    return outcomes


def redone_message(outcomes: Sequence[ImageOutcome]) -> str | None:
    """One line saying how many finished images were redone and why, e.g. '2 finished image(s) redone:
    generator changed'; a reason shared by only some of them gets its count. None when none was redone.
    Only successful redos count: a failed one is a failure (its result set aside as stale, see
    :func:`pti.jobs.folder.set_aside_stale`) and is reported with the failures."""
    redone = [o for o in outcomes if o.redone and o.status == "done"]
    if not redone:
        return None
    counts: dict[str, int] = {}
    for o in redone:
        for reason in o.redone:
            counts[reason] = counts.get(reason, 0) + 1
    reasons = ", ".join(r if n == len(redone) else f"{r} ({n})" for r, n in counts.items())
    return f"{len(redone)} finished image(s) redone: {reasons}"


def _has_edits(metrics: dict[str, Any], edits: Sequence["RunEdit"]) -> bool:
    from pti.editing.run_edits import edit_files

    return set(edit_files(edits)) <= set(metrics.get("files") or {})
