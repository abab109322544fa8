"""The step loop and the run log shared by the trainers (:mod:`pti.train.distill`,
:mod:`pti.train.encoder`, :mod:`pti.train.demo`), and the run folder and command line of the
two that resume from ``state.pt`` alone (distill, encoder)."""
from __future__ import annotations

import argparse
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, TypeVar

StopReason = Literal["done", "steps", "time", "signal"]
T = TypeVar("T")


class RunLog:
    """Appends ``YYYY-mm-dd HH:MM:SS message`` lines to a run's ``log.txt``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __call__(self, msg: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")


def run_steps(trainer: Any, kimg: float, log: RunLog, save_all: Callable[[], None],
              state_interval_s: float, max_steps: int | None = None, max_seconds: float | None = None,
              timers: Sequence[tuple[float, Callable[[], None]]] = (), log_every: int = 25,
              progress: str | None = None, postfix: Mapping[str, str] | None = None,
              nonfinite_hint: str = "") -> StopReason:
    """Call ``trainer.step()`` until ``kimg`` thousand images (``trainer.nimg``), ``max_steps`` steps of
    this call, SIGTERM/SIGINT, or ``max_seconds`` of wall time since the first step (a step is not
    cut), whichever comes first; then ``save_all()`` and return the reason: ``"done"``, ``"steps"``,
    ``"time"`` or ``"signal"`` (the last two are also logged).

    Every ``log_every`` steps (>= 1) it logs ``kimg K step S <stat> <mean> ... sec/kimg R`` (the means
    of ``trainer.step()``'s stats, 4 significant digits). Every step's stats are checked: if one is
    non-finite, the window's line is logged (it shows which) and ``FloatingPointError`` is raised,
    naming the stats, ``log.path`` and ``nonfinite_hint``; nothing is saved then, so the last save
    (if any: none before the first ``state_interval_s``) comes from a step whose stats were finite.
    ``save_all`` also runs every ``state_interval_s`` seconds, each ``(interval_s, fn)`` of ``timers``
    every interval; 0 disables a timer. ``progress`` is the description of a progress bar in images
    (None: no bar), with the logged means of ``postfix``'s stats (``{label: stat}``) beside it.
    ``trainer`` has ``step()``, ``nimg``, ``step_count``, ``train_seconds`` and ``cfg.batch``.
    Raises ``ValueError`` if ``log_every < 1``.
    """
    from pti.progress import progress_bar

    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    stop = {"flag": False}
    handlers = {s: signal.signal(s, lambda *_: stop.update(flag=True)) for s in (signal.SIGTERM, signal.SIGINT)}
    t_state = t_log = t_start = time.time()
    t_timers = [t_start] * len(timers)
    n_log, acc, steps = trainer.nimg, {}, 0
    target = int(kimg * 1000)
    bar = progress_bar(total=target, initial=min(trainer.nimg, target), unit="img", unit_scale=True,
                       desc=progress, disable=progress is None, mininterval=10.0)

    def out_of_time() -> bool:
        return max_seconds is not None and steps > 0 and time.time() - t_start >= max_seconds

    try:
        while (trainer.nimg < target and not stop["flag"] and (max_steps is None or steps < max_steps)
               and not out_of_time()):
            t0 = time.time()
            stats = trainer.step()
            trainer.train_seconds += time.time() - t0
            steps += 1
            bar.update(trainer.cfg.batch)
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
            now = time.time()
            bad = sorted(k for k, v in stats.items() if not math.isfinite(v))
            if bad or trainer.step_count % log_every == 0:
                means = {k: sum(v) / len(v) for k, v in sorted(acc.items())}
                rate = (now - t_log) / max(trainer.nimg - n_log, 1) * 1000
                log(f"kimg {trainer.nimg / 1000:.3f} step {trainer.step_count} "
                    + "".join(f"{k} {m:.4g} " for k, m in means.items()) + f"sec/kimg {rate:.1f}")
                if bad:
                    raise FloatingPointError(f"{', '.join(bad)} became non-finite at step {trainer.step_count} "
                                             f"(see {log.path}){nonfinite_hint}")
                bar.set_postfix({label: f"{means[k]:.3f}" for label, k in (postfix or {}).items() if k in means})
                acc, t_log, n_log = {}, now, trainer.nimg
            for i, (interval, fn) in enumerate(timers):
                if interval and now - t_timers[i] >= interval:
                    fn()
                    t_timers[i] = now
            if state_interval_s and now - t_state >= state_interval_s:
                save_all()
                t_state = now
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    reason: StopReason
    if trainer.nimg >= target:
        reason = "done"
    elif out_of_time():
        reason = "time"
        log(f"stopped at the time budget ({max_seconds:g} s) after {steps} steps, "
            f"{steps * trainer.cfg.batch} images in {time.time() - t_start:.1f} s")
    elif stop["flag"]:
        reason = "signal"
        log("stopped by signal")
    else:
        reason = "steps"
    save_all()
    return reason


def progress_state(trainer: Any) -> dict[str, Any]:
    """The counters and random state a trainer resumes from: ``nimg``, ``step`` (``trainer.step_count``),
    ``train_seconds`` and ``rng`` (torch's global CPU generator and ``trainer.rng``); tensors and numbers
    only, so :func:`torch.load` reads it back with ``weights_only=True``."""
    import torch

    return {"nimg": trainer.nimg, "step": trainer.step_count, "train_seconds": trainer.train_seconds,
            "rng": {"torch": torch.get_rng_state(), "latent": trainer.rng.get_state()}}


def load_progress(trainer: Any, state: Mapping[str, Any], kind: str, what: str) -> None:
    """Restore what :func:`progress_state` stored into ``trainer``, after checking that ``state["kind"]``
    is ``kind``. Raises ``ValueError`` (``not <what> (kind ..., expected ...)``) if it is not."""
    import torch

    if state.get("kind") != kind:
        raise ValueError(f"not {what} (kind {state.get('kind')!r}, expected {kind!r})")
    trainer.nimg, trainer.step_count = int(state["nimg"]), int(state["step"])
    trainer.train_seconds = float(state["train_seconds"])
    torch.set_rng_state(state["rng"]["torch"])
    trainer.rng.set_state(state["rng"]["latent"])


def open_run(out: Path, build: Callable[[dict[str, Any] | None], T], net: str) -> tuple[T, RunLog, Path]:
    """The trainer, log and state path of the run folder ``out`` (created, with parents).

    When ``out/state.pt`` exists (read with ``torch.load(weights_only=True)``): ``build(stored config
    dict)`` with the state loaded (``trainer.load_state_dict``), logged as ``resumed at K kimg``; else
    ``build(None)``, logged as ``new run <trainer.cfg.to_dict()>; torch threads N; <net> P M params``
    (the parameters of ``getattr(trainer, net)``).
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "log.txt")
    state_path = out / "state.pt"
    trainer: Any
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        trainer = build(state["config"])
        trainer.load_state_dict(state)
        log(f"resumed at {trainer.nimg / 1000:.2f} kimg")
    else:
        trainer = build(None)
        log(f"new run {trainer.cfg.to_dict()}; torch threads {torch.get_num_threads()}; "
            f"{net} {sum(p.numel() for p in getattr(trainer, net).parameters()) / 1e6:.2f} M params")
    return trainer, log, state_path


def state_saver(trainer: Any, state_path: Path, log: RunLog,
                export: Callable[[], None] | None = None) -> Callable[[], None]:
    """``save_all`` for :func:`run_steps`: write ``trainer.state_dict()`` to ``state_path`` (atomic), call
    ``export`` (if given), log ``saved at K kimg (H h)``."""
    from pti.io_utils import atomic_torch_save

    def save_all() -> None:
        atomic_torch_save(trainer.state_dict(), state_path)
        if export is not None:
            export()
        log(f"saved at {trainer.nimg / 1000:.2f} kimg ({trainer.train_seconds / 3600:.2f} h)")

    return save_all


def check_max_seconds(max_seconds: float | None) -> None:
    """Raises ``ValueError`` unless ``max_seconds`` is None or positive."""
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")


def run_parser(description: str, out_help: str, kimg_default: float | None = None) -> argparse.ArgumentParser:
    """A parser with the options every resumable trainer's command line has: ``--out``, ``--kimg`` (required
    when ``kimg_default`` is None), ``--export``, ``--threads``, ``--device``, ``--state-interval`` and
    ``--max-seconds``; read it with :func:`parse_run_args`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--kimg", type=float, required=kimg_default is None, default=kimg_default,
                   help="train until this many thousand images")
    p.add_argument("--export", default=None, help=".safetensors path written at every state save")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--state-interval", type=float, default=600.0,
                   help="seconds between state saves (0: only at the end)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop after this many seconds of training (wall time from the first step; start-up not "
                        "counted), then save the state and the export as at the end of a run")
    return p


def parse_run_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with a :func:`run_parser` parser; a non-positive ``--max-seconds`` is a usage error
    (exit 2, before anything is written). Sets torch's CPU threads to ``--threads``."""
    import torch

    a = p.parse_args(argv)
    try:
        check_max_seconds(a.max_seconds)
    except ValueError:
        p.error(f"--max-seconds must be positive, got {a.max_seconds}")
    torch.set_num_threads(a.threads)
    return a
