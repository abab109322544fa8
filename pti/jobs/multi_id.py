"""Multi-image PTI as a resumable job (``pti run PHOTOS --multi-id``): one generator tuned for all the photos.

PTI Sec. 3.4 / 4.4 (multi-ID personalisation): every photo gets its own pivot, and one θ* is tuned on all
of them by :func:`pti.core.tuning.pivotal_tune` (mini-batches of ``TuningConfig.batch_size`` photos per step when
given, ``--tune-batch-size``). The job::

    1. per photo, as `pti invert`: align, invert (pivot.pt reused), RUN/<photo>/{aligned,inversion}.png,
       metrics.json (stage 'invert'); resumable and atomic per photo (pti.jobs.runner.process_images)
    2. one pivotal_tune over every photo that has a pivot -> RUN/tuned.safetensors (float32) and
       RUN/multi_id.json (what it was tuned on); while tuning, its state is saved to RUN/.multi_id_state.pt
       every ``state_every_s`` seconds (atomically), and a restarted job resumes from it exactly
    3. per photo: reconstruction.png = G(w_p; θ*), the requested edits, and metrics.json rewritten last
       with stage 'tune' (its ``tuning`` row from the one evaluate())

The tuning state (:class:`TuningCheckpoint`) holds θ*, Adam's state, the step, the batch order still to
come, the RNG states (the tuning's torch.Generator: batch order and locality samples; torch's global CPU
RNG and the device's, used by ``noise_mode='random'``) and the histories; restoring it and running the
remaining steps gives the same generator, bit for bit on the same machine, as an uninterrupted run. It is
keyed by the photos, their pivots, the generator and the tuning config: a state made for anything else is
ignored (with a warning) and tuning starts again. It runs in one process: the photos' gradients all update
the same weights (see docs/many-photos.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from pti.core.config import InversionConfig, TuningConfig, config_to_dict
from pti.io_utils import read_json_object
from pti.jobs.folder import ImageOutcome, completes, manifest, output_name, read_metrics

STATE_FILE = ".multi_id_state.pt"
RECORD_FILE = "multi_id.json"
GENERATOR_FILE = "tuned.safetensors"
STATE_FORMAT = "pti-tuning-state-v1"
#: default seconds between two saves of the tuning state
STATE_EVERY_S = 300.0


def check_state_every(every_s: float) -> None:
    """Raise ``ValueError`` unless ``every_s`` (seconds between two saves of the tuning state) is a finite
    number >= 0: NaN or inf would never save, a negative number would save after every step unasked."""
    from pti.core.config import make_range

    problem = make_range(ge=0).error(every_s)
    if problem:
        raise ValueError(f"seconds between saves of the tuning state {problem}")


class TuningCheckpoint:
    """Saves pivotal tuning's state every ``every_s`` seconds to ``path`` and restores it: pass it as
    ``pivotal_tune(..., checkpoint=TuningCheckpoint(...))``.

    ``key``: what the state belongs to (a restored state with another key is ignored with a warning);
    ``every_s``: seconds between saves (0: after every step; a finite number >= 0, else ``ValueError``). ``saves`` counts the saves of this process;
    ``resumed_from`` is the step a restored state starts at (None: started from scratch).
    """

    def __init__(self, path: str | Path, every_s: float = STATE_EVERY_S, key: str = "") -> None:
        check_state_every(every_s)
        self.path, self.every_s, self.key = Path(path), float(every_s), key
        self.saves = 0
        self.resumed_from: int | None = None
        self._last = time.monotonic()

    def restore(self, tuned: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator,
                result: Any) -> tuple[int, list[int]]:
        """Load a saved state into the fresh ``tuned`` copy, ``optimizer``, ``gen`` and ``result`` (a
        :class:`~pti.core.tuning.TuningResult`); returns ``(first step, batch order)``, ``(0, [])`` without one."""
        self._last = time.monotonic()
        if not self.path.is_file():
            return 0, []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt file: start again rather than fail the job
            warnings.warn(f"{self.path}: unreadable tuning state ({type(exc).__name__}); tuning starts again",
                          RuntimeWarning, stacklevel=2)
            return 0, []
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("key") != self.key:
            warnings.warn(f"{self.path}: a tuning state of other photos, pivots, generator or settings; tuning "
                          f"starts again", RuntimeWarning, stacklevel=2)
            return 0, []
        tuned.load_state_dict(state["generator"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["cpu_rng"])
        device = next(tuned.parameters()).device
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        for name in ("loss_history", "perceptual_history", "locality_history"):
            getattr(result, name)[:] = state[name]
        result.steps = self.resumed_from = int(state["step"])
        return int(state["step"]), [int(i) for i in state["order"]]

    def after_step(self, step: int, tuned: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   gen: torch.Generator, result: Any, order: list[int]) -> None:
        """Called by pivotal_tune after the update of ``step``: saves when ``every_s`` has passed."""
        if time.monotonic() - self._last >= self.every_s:
            self.save(step + 1, tuned, optimizer, gen, result, order)

    def save(self, next_step: int, tuned: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator,
             result: Any, order: list[int]) -> None:
        """Write the state (atomically) so that a restart begins at ``next_step``."""
        from pti.io_utils import atomic_torch_save

        device = next(tuned.parameters()).device
        state = {"format": STATE_FORMAT, "key": self.key, "step": int(next_step), "order": [int(i) for i in order],
                 "generator": {k: v.detach().cpu() for k, v in tuned.state_dict().items()},
                 "optimizer": optimizer.state_dict(), "gen": gen.get_state(), "cpu_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                 **{name: list(getattr(result, name)) for name in
                    ("loss_history", "perceptual_history", "locality_history")}}
        atomic_torch_save(state, self.path)
        self.saves += 1
        self._last = time.monotonic()


def tuning_key(G: torch.nn.Module, names: Sequence[str], pivots: Sequence[Any], tune_cfg: TuningConfig) -> str:
    """sha256 over the photos' names, their pivots' codes, the generator's weights and the tuning config."""
    from pti.stylegan2.checkpoints import weights_fingerprint

    h = hashlib.sha256(json.dumps({"names": list(names), "tuning": config_to_dict(tune_cfg),
                                   "generator": weights_fingerprint(G)}, sort_keys=True).encode())
    for p in pivots:
        h.update(p.w.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def _finish_photo(G: torch.nn.Module, tuned: torch.nn.Module, out_dir: Path, target: torch.Tensor, pivot: Any,
                  tune_cfg: TuningConfig, options: Any, perceptual: Any, tuning: dict[str, Any],
                  seconds: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write one photo's reconstruction (and edits) and rewrite its metrics.json last, with stage 'tune'.
    ``metrics``: the photo's metrics.json as read before ({} when unreadable); updated in place and returned."""
    from pti.core.divergence import check_images
    from pti.images import write_image
    from pti.io_utils import atomic_write_json
    from pti.jobs.runner import render
    from pti.metrics import evaluate

    reconstruction = render(tuned, pivot, True, tune_cfg)  # as pti run renders its reconstruction
    check_images(reconstruction, "tuning")
    write_image(reconstruction[0], out_dir / "reconstruction.png")
    if options.edits:
        from pti.editing.run_edits import write_run_edits

        write_run_edits(G, tuned, pivot, options.edits, out_dir, tune_cfg)
    metrics.update(stage="tune", files=manifest(out_dir), seconds=(metrics.get("seconds") or 0.0) + seconds,
                   tuning={**tuning, **evaluate(reconstruction, target, perceptual=perceptual)})
    metrics.setdefault("config", {})["tuning"] = config_to_dict(tune_cfg)
    atomic_write_json(metrics, out_dir / "metrics.json")
    return metrics


def process_multi_id(G: torch.nn.Module, paths: Sequence[Path], run_dir: str | Path, inv_cfg: InversionConfig,
                     tune_cfg: TuningConfig, options: Any, worker: dict[str, Any] | None = None,
                     state_every_s: float = STATE_EVERY_S) -> list[ImageOutcome]:
    """The multi-ID job (see the module docstring) over ``paths`` into ``run_dir``; ``options``: the
    :class:`pti.jobs.runner.RunOptions` of ``pti run``. Returns one outcome per photo (failures recorded by step 1).
    Raises what tuning raises (a diverging tuning fails the whole job: there is one generator), and
    ``ValueError`` before any photo for a ``state_every_s`` that is not a finite number >= 0."""
    from pti.images import read_image
    from pti.jobs.runner import process_images
    from pti.core.losses import PerceptualLoss
    from pti.core.pivot import Pivot
    from pti.stylegan2.checkpoints import load, save
    from pti.core.tuning import pivotal_tune

    check_state_every(state_every_s)  # before any photo
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    step_one = dataclasses.replace(options, stage="invert", edits=(), multi_id=True)  # tuned alone: 'multi-id changed'
    outcomes = process_images(G, paths, run_dir, inv_cfg, tune_cfg, step_one, worker=worker)
    ready = [o for o in outcomes if o.status != "failed"]
    if not ready:
        return outcomes
    invert_seconds = time.perf_counter() - t0
    device = next(G.parameters()).device
    dirs = [run_dir / o.name for o in ready]
    targets = [read_image(d / "aligned.png", channels=G.img_channels).to(device) for d in dirs]
    pivots = [Pivot.load(d / "pivot.pt", map_location=device) for d in dirs]
    key = tuning_key(G, [o.name for o in ready], pivots, tune_cfg)
    record_path, generator_path = run_dir / RECORD_FILE, run_dir / GENERATOR_FILE
    perceptual = PerceptualLoss(tune_cfg.perceptual_net, tune_cfg.perceptual_resolution, device)
    record = read_json_object(record_path)
    t1 = time.perf_counter()
    if record.get("key") == key and generator_path.is_file():  # tuned before: finish the photos it left
        tuned = load(generator_path, device=device).eval()
    else:
        checkpoint = TuningCheckpoint(run_dir / STATE_FILE, state_every_s, key)
        result = pivotal_tune(G, targets, pivots, tune_cfg, perceptual=perceptual, progress=options.progress,
                              checkpoint=checkpoint)
        tuned = result.generator
        save(tuned, generator_path)  # float32: the one generator of the run
        record = {"key": key, "photos": [o.name for o in ready], "steps": result.steps,
                  "stopped_early": result.stopped_early, "resumed_from": checkpoint.resumed_from,
                  "state_saves": checkpoint.saves, "seconds": result.seconds, "perceptual_name": perceptual.name,
                  "loss": {"first": result.loss_history[0] if result.loss_history else None,
                           "last": result.loss_history[-1] if result.loss_history else None},
                  "config": config_to_dict(tune_cfg)}
        from pti.io_utils import atomic_write_json

        atomic_write_json(record, record_path)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    share = (time.perf_counter() - t1) / len(ready)
    tuning = {"multi_id": True, "key": key, "photos": len(ready), "generator": f"../{GENERATOR_FILE}",
              "steps": record.get("steps"), "stopped_early": record.get("stopped_early"),
              "seconds": record.get("seconds")}
    result_outcomes = {o.name: o for o in outcomes}
    for out_dir, target, pivot in zip(dirs, targets, pivots):
        name = out_dir.name
        metrics = read_metrics(out_dir) or {}  # read once: the finished test, the tuning key, the record to update
        if not completes(out_dir, metrics, "tune") or metrics.get("tuning", {}).get("key") != key:
            metrics = _finish_photo(G, tuned, out_dir, target, pivot, tune_cfg, options, perceptual, tuning, share,
                                    metrics)
            result_outcomes[name] = ImageOutcome(name, "done", invert_seconds / len(ready) + share, metrics=metrics,
                                                 file=result_outcomes[name].file, redone=result_outcomes[name].redone)
    return [result_outcomes[output_name(p)] for p in paths if output_name(p) in result_outcomes]


