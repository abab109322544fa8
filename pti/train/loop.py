"""The step loop shared by the supervised trainers (:mod:`pti.train.distill`, :mod:`pti.train.encoder`)."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any, Callable, Sequence


def run_steps(trainer: Any, kimg: float, log: Callable[[str], None], save_all: Callable[[], None],
              log_path: Path, state_interval_s: float, max_steps: int | None = None,
              max_seconds: float | None = None,
              timers: Sequence[tuple[float, Callable[[], None]]] = ()) -> None:
    """Call ``trainer.step()`` until ``kimg`` thousand images (``trainer.nimg``), ``max_steps`` steps of
    this call, SIGTERM/SIGINT, or ``max_seconds`` of wall time since the first step (at least one step
    runs; a step is not cut), whichever comes first; then log why it stopped and ``save_all()``.

    Every 25 steps it logs ``kimg K <stat> <mean> ... sec/kimg R`` (the means of ``trainer.step()``'s
    stats) and raises ``FloatingPointError`` naming ``log_path`` if one is non-finite. ``save_all`` also
    runs every ``state_interval_s`` seconds, each ``(interval_s, fn)`` of ``timers`` every interval.
    ``trainer`` has ``step()``, ``nimg``, ``step_count``, ``train_seconds`` and ``cfg.batch``.
    """
    stop = {"flag": False}
    handlers = {s: signal.signal(s, lambda *_: stop.update(flag=True)) for s in (signal.SIGTERM, signal.SIGINT)}
    t_state = t_log = t_start = time.time()
    t_timers = [t_start] * len(timers)
    n_log, acc, steps = trainer.nimg, {}, 0

    def out_of_time() -> bool:
        return max_seconds is not None and steps > 0 and time.time() - t_start >= max_seconds

    try:
        while (trainer.nimg < kimg * 1000 and not stop["flag"] and (max_steps is None or steps < max_steps)
               and not out_of_time()):
            t0 = time.time()
            stats = trainer.step()
            trainer.train_seconds += time.time() - t0
            steps += 1
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
            now = time.time()
            if trainer.step_count % 25 == 0:
                if not all(math.isfinite(sum(v)) for v in acc.values()):
                    raise FloatingPointError(f"{log_path}: non-finite loss at step {trainer.step_count}")
                means = " ".join(f"{k} {sum(v) / len(v):.4f}" for k, v in sorted(acc.items()))
                rate = (now - t_log) / max(trainer.nimg - n_log, 1) * 1000
                log(f"kimg {trainer.nimg / 1000:.2f} {means} sec/kimg {rate:.1f}")
                acc, t_log, n_log = {}, now, trainer.nimg
            for i, (interval, fn) in enumerate(timers):
                if now - t_timers[i] >= interval:
                    fn()
                    t_timers[i] = now
            if now - t_state >= state_interval_s:
                save_all()
                t_state = now
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    if out_of_time() and trainer.nimg < kimg * 1000:
        log(f"stopped at the time budget ({max_seconds:g} s) after {steps} steps, "
            f"{steps * trainer.cfg.batch} images in {time.time() - t_start:.1f} s")
    elif stop["flag"]:
        log("stopped by signal")
    save_all()
