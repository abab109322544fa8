"""Fast execution paths of PTI on CPU: each must give the fp32 baseline's result.

- FlatAdam is torch.optim.Adam per slot, and a masked slot does not move at all;
- batched inversion / batched tuning (K photos, K weight copies) equal K sequential runs,
  including per-photo early stopping and locality regularisation;
- deferred host syncs (``sync_every``) give the one-sync-per-step result;
- bf16 / fp16 autocast, channels_last, foreach / fused Adam and deferred syncs reach a final
  reconstruction MSE and perceptual distance within 5% of fp32's. (The downsampled perceptual
  loss is not among them: on these toy resolutions it is clearly worse at full resolution, so
  only ``pti bench`` at 1024 can say whether it is safe there.)
- ``pti bench`` runs and writes its table section.
Timings are never asserted. torch.compile is exercised only under the ``slow`` marker
(compiling the step takes minutes on a CPU).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import make_tiny_generator
from pti.config import InversionConfig, LocalityConfig, TuningConfig
from pti.inversion import NonFiniteLossError, project, project_batch
from pti.losses import PerceptualLoss
from pti.optim import DeviceLossScaler, FlatAdam
from pti.tuning import tune

INV = InversionConfig(steps=12, lr=0.1, w_avg_samples=500)
TUNE = TuningConfig(steps=12, lpips_threshold=None)  # the paper's lr 3e-4


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest (and most reproducibly) on one thread when the cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def perceptual() -> PerceptualLoss:
    return PerceptualLoss("alex")


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return make_tiny_generator(resolution=16, seed=3)


@pytest.fixture(scope="module")
def scene(G):
    """Three targets G cannot produce exactly (patches of different sizes) and pivots near them."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ws = G.mapping(torch.randn([3, G.z_dim], generator=gen), None)
        targets = G.synthesis(ws, noise_mode="const").clone()
    targets[0, :, 6:8, 6:8] = 0.9
    targets[1, :, 4:10, 4:10] = 0.9
    targets[2, :, 2:14, 2:12] = -0.9
    pivots = ws + 0.3 * torch.randn([3, 1, G.w_dim], generator=gen)
    return targets, pivots


def render(G, w):
    with torch.no_grad():
        return G.synthesis(w, noise_mode="const", force_fp32=True)


def quality(G_tuned, w, target, perceptual) -> tuple[float, float]:
    image = render(G_tuned, w)
    with torch.no_grad():
        return float((image - target).square().mean()), float(perceptual(image, target).mean())


def test_flat_adam_is_torch_adam_per_slot_and_masks_exactly():
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn([3, 4, 5], generator=gen), torch.randn([3, 7], generator=gen)]
    targets = [torch.randn(t.shape, generator=gen) for t in start]
    flat = FlatAdam(start, lr=0.05)
    refs = [[t[k].clone().requires_grad_(True) for t in start] for k in range(3)]
    opts = [torch.optim.Adam(r, lr=0.05) for r in refs]

    def loss_of(tensors, k=None):
        pairs = zip(tensors, targets) if k is None else zip(tensors, [t[k] for t in targets])
        return sum(((a - b) ** 4).sum() for a, b in pairs)

    for step in range(6):
        active = torch.tensor([True, step < 3, True])  # slot 1 stops after 3 updates
        before = [p.detach()[1].clone() for p in flat.params]
        moments = flat.exp_avg[1].clone()
        flat.zero_grad()
        loss_of(flat.params).backward()
        flat.step(active=active)
        for k in range(3):
            if not active[k]:
                continue
            opts[k].zero_grad()
            loss_of(refs[k], k).backward()
            opts[k].step()
        if step >= 3:  # a masked slot's weights and moments do not change at all
            assert all(torch.equal(b, p.detach()[1]) for b, p in zip(before, flat.params))
            assert torch.equal(moments, flat.exp_avg[1])
    for k in range(3):
        for p, r in zip(flat.params, refs[k]):
            torch.testing.assert_close(p.detach()[k], r.detach(), rtol=1e-4, atol=1e-5)
    assert flat.steps.tolist() == [6, 3, 6]


def test_loss_scaler_skips_only_the_overflowing_slot():
    scaler = DeviceLossScaler("cpu", init_scale=1024.0)
    flat = FlatAdam([torch.zeros([2, 3])], lr=0.1)
    flat.params[0].grad = torch.tensor([[float("inf"), 1.0, 1.0], [2048.0, -2048.0, 1024.0]])
    updated = flat.step(scaler=scaler)
    assert updated.tolist() == [False, True]
    assert torch.equal(flat.params[0].detach()[0], torch.zeros(3))  # the overflowing slot did not move
    torch.testing.assert_close(flat.params[0].detach()[1], torch.tensor([-0.1, 0.1, -0.1]))
    assert float(scaler.scale) == 512.0


def test_batched_inversion_equals_sequential(G, scene, perceptual):
    targets, _ = scene
    cfg = dataclasses.replace(INV, sync_every=5)
    sequential = [project(G, targets[k], INV, perceptual=perceptual, progress=False) for k in range(2)]
    batched = project_batch(G, targets[:2], cfg, perceptual=perceptual, progress=False)
    for s, b in zip(sequential, batched):
        torch.testing.assert_close(b.w, s.w, rtol=0, atol=1e-4)
        for ns, nb in zip(s.noise, b.noise):
            torch.testing.assert_close(nb, ns, rtol=0, atol=1e-4)
        assert len(b.loss_history) == INV.steps
        assert b.loss_history == pytest.approx(s.loss_history, rel=1e-4)
        assert not torch.equal(b.w, batched[0].w) or b is batched[0]  # photos are not mixed up
    seen = []
    project(G, targets[0], dataclasses.replace(cfg, steps=7), perceptual=perceptual, progress=False,
            callback=lambda step, values: seen.append((step, sorted(values))))
    assert [s for s, _ in seen] == list(range(7)) and seen[0][1] == ["loss", "lr", "perceptual"]


def test_batched_tuning_and_deferred_sync_equal_sequential_with_per_photo_early_stop(G, scene, perceptual):
    from pti.batched import pivotal_tune_batched, tune_batched

    targets, pivots = scene
    loc = LocalityConfig(enabled=True, alpha=2.0, l2_weight=1.0, lpips_weight=0.1, num_samples=2)
    pilot = tune(G, targets[1], pivots[1:2], dataclasses.replace(TUNE, locality=loc), perceptual=perceptual,
                 progress=False)
    threshold = pilot.perceptual_history[5] * 1.0001  # photo 1 stops after about 5 updates
    cfg = dataclasses.replace(TUNE, lpips_threshold=threshold, locality=loc)
    targets = targets.clone()
    targets[0] = render(G, pivots[0:1])[0]  # photo 0 is reached at step 0: no update at all

    sequential = [tune(G, targets[k], pivots[k:k + 1], cfg, perceptual=perceptual, progress=False) for k in range(3)]
    steps = [r.steps for r in sequential]
    assert steps[0] == 0 and 0 < steps[1] < TUNE.steps and steps[2] == TUNE.steps, steps  # the scenario holds

    deferred = tune(G, targets[1], pivots[1:2], dataclasses.replace(cfg, sync_every=4), perceptual=perceptual,
                    progress=False)
    assert (deferred.steps, deferred.stopped_early) == (steps[1], True)
    assert deferred.perceptual_history == pytest.approx(sequential[1].perceptual_history, rel=1e-4)
    torch.testing.assert_close(render(deferred.generator, pivots[1:2]), render(sequential[1].generator, pivots[1:2]),
                               rtol=0, atol=1e-4)

    batched = tune_batched(G, targets, pivots, dataclasses.replace(cfg, sync_every=3), perceptual=perceptual,
                           progress=False)
    assert batched.steps == steps
    assert batched.stopped_early == [r.stopped_early for r in sequential] == [True, True, False]
    assert batched.errors == [None] * 3
    for k in range(3):
        torch.testing.assert_close(render(batched.generator(k), pivots[k:k + 1]),
                                   render(sequential[k].generator, pivots[k:k + 1]), rtol=0, atol=1e-4)
        assert batched.locality_history[k] == pytest.approx(sequential[k].locality_history, rel=1e-3, abs=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(batched.generator(0).parameters(), G.parameters()))
    generators = pivotal_tune_batched(G, targets[1:], pivots[1:], dataclasses.replace(cfg, lpips_threshold=None,
                                      steps=2), perceptual=perceptual, progress=False)
    assert len(generators) == 2 and not any(p.requires_grad for p in generators[0].parameters())


def test_non_finite_losses_are_caught_with_deferred_syncs(G, scene, perceptual):
    from pti.batched import tune_batched

    targets, pivots = scene
    with pytest.raises(NonFiniteLossError):
        project(G, targets[0] * float("nan"), dataclasses.replace(INV, steps=6, sync_every=4),
                perceptual=perceptual, progress=False)
    with pytest.raises(NonFiniteLossError):
        tune(G, targets[0], pivots[:1], dataclasses.replace(TUNE, steps=6, lr=float("inf"), sync_every=4),
             perceptual=perceptual, progress=False)
    bad = targets[:2].clone()
    bad[1] = float("nan")
    result = tune_batched(G, bad, pivots[:2], dataclasses.replace(TUNE, steps=4, sync_every=2),
                          perceptual=perceptual, progress=False)
    assert result.errors[0] is None and "step 0" in result.errors[1]
    assert result.steps[0] == 4


FAST_PATHS = {
    "bf16": dict(precision="bf16"),
    "fp16-loss-scaled": dict(precision="fp16"),
    "channels-last": dict(channels_last=True),
    "foreach-adam": dict(adam="foreach"),
    "fused-adam": dict(adam="fused"),
    "nosync": dict(sync_every=5),
}


@pytest.fixture(scope="module")
def fp32_baseline(G, scene, perceptual):
    targets, _ = scene
    return _pipeline(G, targets[1], {}, {}, perceptual)


def _pipeline(G, target, execution, tune_extra, perceptual):
    inv = dataclasses.replace(INV, **{k: v for k, v in execution.items()})
    pivot = project(G, target, inv, perceptual=perceptual, progress=False)
    tcfg = dataclasses.replace(TUNE, steps=20, lr=1e-3, **execution, **tune_extra)
    tuned = tune(G, target, pivot, tcfg, perceptual=perceptual, progress=False).generator
    return quality(tuned, pivot.w, target.unsqueeze(0), perceptual)


@pytest.mark.parametrize("path", sorted(FAST_PATHS))
def test_fast_path_quality_within_5_percent_of_fp32(path, G, scene, perceptual, fp32_baseline):
    targets, _ = scene
    mse, dist = _pipeline(G, targets[1], FAST_PATHS[path], {}, perceptual)
    base_mse, base_dist = fp32_baseline
    assert mse <= 1.05 * base_mse and dist <= 1.05 * base_dist, (path, (mse, dist), fp32_baseline)


@pytest.mark.slow
def test_compiled_batched_tuning_matches_eager(G, scene, perceptual):
    """torch.compile of the batched step and of the masked Adam update (minutes on a CPU)."""
    from pti.batched import tune_batched

    targets, pivots = scene
    cfg = dataclasses.replace(TUNE, steps=4)
    eager = tune_batched(G, targets[:2], pivots[:2], cfg, perceptual=perceptual, progress=False)
    compiled = tune_batched(G, targets[:2], pivots[:2], dataclasses.replace(cfg, compile=True),
                            perceptual=perceptual, progress=False)
    for k in range(2):
        torch.testing.assert_close(render(compiled.generator(k), pivots[k:k + 1]),
                                   render(eager.generator(k), pivots[k:k + 1]), rtol=0, atol=1e-4)


def test_bench_command_writes_its_section(tmp_path):
    from pti.cli import main

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept text\n")
    args = ["bench", "--config", "tiny", "--device", "cpu", "--paths", "baseline,batched:2+nosync:2",
            "--inv-steps", "2", "--tune-steps", "2", "--locality-steps", "1", "--warmup-steps", "1",
            "--images", "2", "--w-avg-samples", "100", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0  # a second run replaces its own section
    text = out.read_text()
    assert "kept text" in text and text.count("<!-- bench:tiny-cpu -->") == 1
    rows = [line for line in text.splitlines() if line.startswith("| baseline") or line.startswith("| batched")]
    assert len(rows) == 2 and "| batched:2+nosync:2 | 2 |" in rows[1]
    assert main(args + ["--repeat-baseline"]) == 0  # baseline timed first and last; x uses their mean
    text = out.read_text()
    assert "| baseline (repeated last) |" in text and "The baseline ran first and last" in text
    with pytest.raises(ValueError, match="unknown token"):
        from pti.bench import parse_path

        parse_path("batched:2+warp-speed")
