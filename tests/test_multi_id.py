"""Multi-image PTI from the command line (``pti run --multi-id``, issue 32) and the resumable tuning state.

The resume tests compare generators bit for bit: the same computations on the same machine with one
thread give the same floats, so a resumed tuning that restores every piece of state (weights, Adam's
moments and step counts, the batch order still to come, the RNG states) must end exactly where an
uninterrupted one does. Any state left out (e.g. the batch order with --tune-batch-size 2 of 3 photos, or
the locality sampler's generator) makes them differ.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import make_tiny_generator
from pti.core.config import LocalityConfig, TuningConfig
from pti.jobs.multi_id import STATE_FILE, TuningCheckpoint
from pti.core.losses import PerceptualLoss
from pti.core.tuning import pivotal_tune

pytestmark = pytest.mark.usefixtures("one_thread")


def _tuning_inputs(resolution: int = 32, n: int = 3):
    G = make_tiny_generator(resolution)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=gen), None)
    targets = torch.rand(n, 3, resolution, resolution, generator=gen) * 2 - 1
    cfg = TuningConfig(steps=8, batch_size=2, lpips_threshold=None, locality=LocalityConfig(enabled=True))
    # one distance for every call: a random backbone draws its weights from torch's global RNG when it is built
    return G, targets, ws, cfg, PerceptualLoss("random-squeeze")


class _Interrupted(Exception):
    pass


class _StopAfter(TuningCheckpoint):
    """Saves after every step and stops the tuning after ``stop`` steps (what a kill does to a run)."""

    def __init__(self, path, stop: int) -> None:
        super().__init__(path, every_s=0.0, key="k")
        self.stop = stop

    def after_step(self, step, *args) -> None:
        super().after_step(step, *args)
        if step + 1 == self.stop:
            raise _Interrupted


def test_resumed_tuning_equals_an_uninterrupted_one(tmp_path):
    G, targets, ws, cfg, lpips = _tuning_inputs()
    whole = pivotal_tune(G, targets, ws, cfg, perceptual=lpips, progress=False)
    with pytest.raises(_Interrupted):
        pivotal_tune(G, targets, ws, cfg, perceptual=lpips, progress=False,
                     checkpoint=_StopAfter(tmp_path / "s.pt", stop=2))
    # after 2 steps of 2 photos out of 3, 2 photos of the second shuffled round are still to come
    assert torch.load(tmp_path / "s.pt", weights_only=True)["order"] != []
    checkpoint = TuningCheckpoint(tmp_path / "s.pt", every_s=1e9, key="k")
    resumed = pivotal_tune(G, targets, ws, cfg, perceptual=lpips, progress=False, checkpoint=checkpoint)
    assert checkpoint.resumed_from == 2 and resumed.steps == whole.steps == 8
    assert resumed.loss_history == whole.loss_history and resumed.locality_history == whole.locality_history
    a, b = whole.generator.state_dict(), resumed.generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same restart without the batch order (what a state that forgot it would do) ends elsewhere:
    # the test can tell a complete state from an incomplete one
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    state["order"] = []
    torch.save(state, tmp_path / "s.pt")
    other = pivotal_tune(G, targets, ws, cfg, perceptual=lpips, progress=False,
                         checkpoint=TuningCheckpoint(tmp_path / "s.pt", 1e9, "k"))
    assert not all(torch.equal(a[k], other.generator.state_dict()[k]) for k in a)


def test_a_state_of_other_settings_is_ignored(tmp_path):
    G, targets, ws, cfg, lpips = _tuning_inputs()
    with pytest.raises(_Interrupted):
        pivotal_tune(G, targets, ws, cfg, perceptual=lpips, progress=False,
                     checkpoint=_StopAfter(tmp_path / "s.pt", stop=2))
    checkpoint = TuningCheckpoint(tmp_path / "s.pt", every_s=1e9, key="another run")
    with pytest.warns(RuntimeWarning, match="starts again"):
        result = pivotal_tune(G, targets, ws, cfg, perceptual=lpips, progress=False, checkpoint=checkpoint)
    assert checkpoint.resumed_from is None and result.steps == 8


# --- pti run --multi-id, killed and restarted -----------------------------------------------------------------

def _command(photos: Path, generator: Path, run: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "pti", "run", str(photos), "-o", str(run), "--multi-id", "-g", str(generator),
            "--no-align", "--device", "cpu", "--tune-batch-size", "2", "--inv-steps", "3", "--inv-w-avg-samples", "100",
            "--tune-steps", str(steps), "--tune-lpips-threshold", "none", "--state-every-min", "0", "--quiet",
            # a pretrained distance (chosen when two processes building LPIPS on a random backbone got different
            # weights, 2026-12-07; random backbones are seeded since, pti.core.perceptual.RANDOM_BACKBONE_SEED)
            "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net", "effnet-lite0"]


@pytest.mark.slow
def test_multi_id_run_killed_mid_tune_resumes_to_the_same_generator(tmp_path):
    from pti.stylegan2.checkpoints import save

    generator = save(make_tiny_generator(32), tmp_path / "g.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    gen = torch.Generator().manual_seed(1)
    for i in range(3):
        array = (torch.rand(32, 32, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(photos / f"p{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    steps = 80  # a few seconds of tuning on one thread: the kill (0.5 s after the first save) lands in the middle

    straight = tmp_path / "straight"
    subprocess.run(_command(photos, generator, straight, steps), env=env, check=True, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_command(photos, generator, run, steps), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / STATE_FILE).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed mid-tune"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / STATE_FILE).exists() and not (run / "tuned.safetensors").exists()
    saved_step = torch.load(run / STATE_FILE, weights_only=True)["step"]
    assert 0 < saved_step < steps

    subprocess.run(_command(photos, generator, run, steps), env=env, check=True, capture_output=True)
    record = json.loads((run / "multi_id.json").read_text())
    assert record["resumed_from"] >= saved_step and record["steps"] == steps
    assert not (run / STATE_FILE).exists()
    a, b = load_file(straight / "tuned.safetensors"), load_file(run / "tuned.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for i in range(3):
        m = json.loads((run / f"p{i}" / "metrics.json").read_text())
        assert m["stage"] == "tune" and m["tuning"]["multi_id"] and m["tuning"]["photos"] == 3
        assert (run / f"p{i}" / "reconstruction.png").is_file() and (run / f"p{i}" / "pivot.pt").is_file()
        assert m["tuning"]["mse"] == json.loads((straight / f"p{i}" / "metrics.json").read_text())["tuning"]["mse"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["done"] == 3
    # a third run finds everything finished and tunes nothing
    out = subprocess.run(_command(photos, generator, run, steps), env=env, check=True, capture_output=True, text=True)
    assert "0 done, 3 already finished" in out.stdout


@pytest.mark.parametrize("every", [-1.0, float("nan"), float("inf")])
def test_state_every_must_be_a_finite_number_of_seconds(every, tmp_path):
    """The report: `pti run --multi-id --state-every-min -1/nan/inf` was accepted silently (NaN and inf never
    save the state; the command line now refuses them too: tests/test_config_ranges.py)."""
    from pti.jobs.multi_id import process_multi_id
    from pti.jobs.runner import RunOptions

    with pytest.raises(ValueError, match="must be a number >= 0"):
        TuningCheckpoint(tmp_path / STATE_FILE, every)
    G = make_tiny_generator(resolution=16)
    with pytest.raises(ValueError, match="must be a number >= 0"):  # before any photo: nothing is written
        process_multi_id(G, [tmp_path / "a.png"], tmp_path / "run", None, TuningConfig(), RunOptions(),
                         state_every_s=every)
    assert not (tmp_path / "run").exists()


def test_switching_between_multi_id_and_plain_runs_redoes_and_says_why(tmp_path, capsys):
    """New-user test: a --multi-id run folder run again without --multi-id said "0 done, 2 already finished" (the
    photos kept the shared generator), and the reverse redid them without a reason line. Results of an older pti
    (no made_from.multi_id) are kept as before."""
    from pti.cli import main
    from pti.stylegan2.checkpoints import save

    generator = save(make_tiny_generator(32), tmp_path / "g.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    gen = torch.Generator().manual_seed(1)
    for i in range(2):
        Image.fromarray((torch.rand(32, 32, 3, generator=gen) * 255).to(torch.uint8).numpy()).save(photos / f"p{i}.png")
    run = tmp_path / "run"
    plain = _command(photos, generator, run, 2)[3:]  # without `python -m pti`
    plain.remove("--multi-id")
    multi = plain + ["--multi-id"]

    def pti_run(argv: list[str]) -> str:
        capsys.readouterr()
        assert main(argv) == 0
        return capsys.readouterr().out

    assert "2 done" in pti_run(multi)
    out = pti_run(plain)
    assert "2 done, 0 already finished" in out and "redone: multi-id changed" in out, out
    assert not json.loads((run / "p0" / "metrics.json").read_text())["tuning"].get("multi_id")
    assert "0 done, 2 already finished" in pti_run(plain)
    out = pti_run(multi)
    assert "2 done, 0 already finished" in out and "redone: multi-id changed" in out, out
    m = json.loads((run / "p0" / "metrics.json").read_text())
    assert m["made_from"]["multi_id"] is True and m["tuning"]["multi_id"] is True
    for i in range(2):  # as an older pti wrote them: no multi_id entry
        path = run / f"p{i}" / "metrics.json"
        m = json.loads(path.read_text())
        del m["made_from"]["multi_id"]
        path.write_text(json.dumps(m))
    assert "0 done, 2 already finished" in pti_run(plain)
