"""The step loop and the run log shared by the trainers (:mod:`pti.train.distill`,
:mod:`pti.train.encoder`, :mod:`pti.train.demo`)."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

StopReason = Literal["done", "steps", "time", "signal"]


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
