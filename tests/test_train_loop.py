"""The step loop shared by the trainers (pti.train.loop.run_steps), on a trainer that does no work."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import pytest

from pti.train.loop import RunLog, run_steps


@dataclass
class _Cfg:
    batch: int = 4


@dataclass
class _Trainer:
    losses: list[float]
    on_step: dict[int, object] = field(default_factory=dict)
    cfg: _Cfg = field(default_factory=_Cfg)
    nimg: int = 0
    step_count: int = 0
    train_seconds: float = 0.0

    def step(self) -> dict[str, float]:
        self.step_count += 1
        self.nimg += self.cfg.batch
        if self.step_count in self.on_step:
            self.on_step[self.step_count]()
        return {"loss": self.losses[(self.step_count - 1) % len(self.losses)]}


def _run(tmp_path, trainer, kimg=0.04, **kw):
    saves = []
    log = RunLog(tmp_path / "log.txt")
    reason = run_steps(trainer, kimg, log, lambda: saves.append(trainer.nimg), state_interval_s=0, **kw)
    return reason, saves, (tmp_path / "log.txt").read_text() if (tmp_path / "log.txt").exists() else ""


def test_runs_to_kimg_logs_means_and_saves_at_the_end(tmp_path):
    reason, saves, log = _run(tmp_path, _Trainer([1.0, 2.0]), log_every=5)
    assert reason == "done" and saves == [40]  # 10 steps of 4 images; the save only at the end
    lines = [ln for ln in log.splitlines() if " kimg " in ln]
    assert len(lines) == 2 and "kimg 0.020 step 5 loss 1.4 sec/kimg" in lines[0]  # mean of 1,2,1,2,1


def test_max_steps_and_timers(tmp_path):
    ticks = []
    reason, saves, _ = _run(tmp_path, _Trainer([1.0]), kimg=1, max_steps=3,
                            timers=[(1e-9, lambda: ticks.append(1)), (0, lambda: ticks.append(0))])
    assert reason == "steps" and saves == [12] and ticks == [1, 1, 1]  # interval 0 disables a timer


def test_a_non_finite_loss_is_logged_raises_and_saves_nothing(tmp_path):
    saves = []
    trainer = _Trainer([1.0, float("nan")])
    with pytest.raises(FloatingPointError, match=r"^loss became non-finite at step 2 \(see .*log.txt\); hint$"):
        run_steps(trainer, 1, RunLog(tmp_path / "log.txt"), lambda: saves.append(trainer.nimg), state_interval_s=1e-9,
                  log_every=5, nonfinite_hint="; hint")
    # step 1 was finite and saved (a timer of ~0 s); step 2 is caught before any save, off the log interval
    assert saves == [4] and "step 2 loss nan sec/kimg" in (tmp_path / "log.txt").read_text()


def test_log_every_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="log_every"):
        _run(tmp_path, _Trainer([1.0]), log_every=0)


def test_sigterm_stops_after_the_step_and_saves(tmp_path):
    trainer = _Trainer([1.0], on_step={2: lambda: os.kill(os.getpid(), signal.SIGTERM)})
    before = signal.getsignal(signal.SIGTERM)
    reason, saves, log = _run(tmp_path, trainer, kimg=1)
    assert reason == "signal" and saves == [8] and "stopped by signal" in log
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_progress_state_round_trips_and_refuses_another_kind():
    # the counters and random state distill and the encoder trainer resume from (load_progress checks the kind)
    import torch

    from pti.train.loop import load_progress, progress_state

    a = _Trainer([1.0], nimg=12, step_count=3, train_seconds=1.5)
    a.rng = torch.Generator().manual_seed(4)
    torch.randn(2, generator=a.rng)
    state = {"kind": "k", **progress_state(a)}
    expected = (torch.randn(3, generator=a.rng), torch.randn(3))  # what comes after the saved point
    b = _Trainer([1.0])
    b.rng = torch.Generator().manual_seed(0)
    load_progress(b, state, "k", "a test state")
    assert (b.nimg, b.step_count, b.train_seconds) == (12, 3, 1.5)
    assert all(torch.equal(x, y) for x, y in zip(expected, (torch.randn(3, generator=b.rng), torch.randn(3))))
    with pytest.raises(ValueError, match=r"not a test state \(kind 'k', expected 'other'\)"):
        load_progress(b, state, "other", "a test state")
