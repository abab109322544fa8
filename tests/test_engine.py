"""The PTI engine on a small random StyleGAN2: inversion, tuning, locality, early stop."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import make_tiny_generator
from pti.core.config import InversionConfig, LocalityConfig, TuningConfig, config_from_dict
from pti.core.pivot import NonFiniteLossError, Pivot
from pti.core.projector import learning_rate, project, w_statistics
from pti.core.losses import PerceptualLoss, noise_regularization, step_towards
from pti.core.tuning import pivotal_tune

# lr 0.03, not the StyleGAN2 projector's 0.1: at 0.1 this toy's inversion is chaotic, and the asserted
# outcomes moved with the CPU kernels' rounding. Measured over 10 runs (default kernels with 1 and 2
# threads, ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41, and 1e-7 relative noise injected into
# every layer's output with 6 seeds, a stand-in for other CPUs): at lr 0.1 the pivot's distance to w*
# was 0.77-0.97 of w_avg's (asserted < 1) and tuning's after/before MSE 0.10-0.18 (asserted < 0.2).
# At lr 0.03, over 13 such runs (the same settings, both ISA limits together, noise with 8 seeds), see
# the numbers next to each assertion. (At 0.01, 80 steps do not converge: end/start MSE 0.82.)
INV = InversionConfig(steps=80, lr=0.03, w_avg_samples=2000)


@pytest.fixture(scope="module")
def perceptual() -> PerceptualLoss:
    return PerceptualLoss("alex")


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return make_tiny_generator(resolution=32, seed=3)


def render(G, w, noise=None):
    with torch.no_grad():
        return G.synthesis(w, noise_mode="const", noise=noise)


def mse(a, b) -> float:
    return float((a - b).square().mean())


def test_paper_defaults():
    inv, tun = InversionConfig(), TuningConfig()
    assert (inv.steps, inv.space, inv.w_avg_samples) == (450, "w", 10_000)
    assert (tun.steps, tun.lr, tun.lpips_threshold, tun.perceptual_net) == (350, 3e-4, 0.06, "alex")
    assert (tun.l2_weight, tun.lpips_weight, tun.noise_mode) == (1.0, 1.0, "const")
    loc = tun.locality
    assert (loc.alpha, loc.l2_weight, loc.lpips_weight, loc.num_samples, loc.truncation_psi) == (30, 0.1, 0.1, 1, 0.5)
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict(TuningConfig, {"stepz": 3})


def test_lr_schedule_uses_configured_lr():
    cfg = InversionConfig(steps=100, lr=0.123)
    lrs = [learning_rate(i, 100, cfg) for i in range(100)]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.123)
    assert lrs[2] < lrs[5] and lrs[90] > lrs[99]  # warm-up, then cosine ramp-down


@pytest.mark.numerics
def test_inversion_recovers_a_generated_image(G, perceptual):
    torch.manual_seed(11)
    w_star = G.mapping(torch.randn(1, G.z_dim), None)
    target = render(G, w_star)
    w_avg, _ = w_statistics(G, 2000, 0, "cpu")
    start_err = mse(render(G, w_avg.expand(1, G.num_ws, G.w_dim)), target)
    pivot = project(G, target, INV, perceptual=perceptual, progress=False)
    assert pivot.w.shape == (1, G.num_ws, G.w_dim)
    assert torch.equal(pivot.w[0, 0], pivot.w[0, -1])  # W space: one w for all layers
    assert len(pivot.noise) == len(G.synthesis.noise_layers())
    end_err = mse(render(G, pivot.w, pivot.noise), target)
    # measured (see INV): end/start 0.10-0.15, perceptual last/first 0.21-0.25, distance to w* 0.64-0.75 of w_avg's
    assert end_err < start_err / 4, (start_err, end_err)
    assert pivot.perceptual_history[-1] < pivot.perceptual_history[0] / 3
    assert (pivot.w[0, 0] - w_star[0, 0]).norm() < (w_avg[0, 0] - w_star[0, 0]).norm()


def test_wplus_and_initial_w_and_resizing(G, perceptual):
    torch.manual_seed(5)
    w_star = G.mapping(torch.randn(1, G.z_dim), None)
    target = torch.nn.functional.interpolate(render(G, w_star), size=(64, 64), mode="bilinear")
    cfg = dataclasses.replace(INV, space="w+", steps=30)
    pivot = project(G, target[0], cfg, perceptual=perceptual, progress=False, w_init=w_star)
    assert pivot.space == "w+" and pivot.w.shape == (1, G.num_ws, G.w_dim)
    assert not torch.equal(pivot.w[0, 0], pivot.w[0, -1])  # layers optimised independently


def test_noise_regularization_detects_structure():
    gen = torch.Generator().manual_seed(0)
    white = [torch.randn([1, 1, 32, 32], generator=gen)]
    smooth = [torch.nn.functional.interpolate(torch.randn([1, 1, 8, 8], generator=gen), size=32, mode="bilinear")]
    assert float(noise_regularization(smooth)) > 20 * float(noise_regularization(white))


def _patched_target(G):
    torch.manual_seed(7)
    target = render(G, G.mapping(torch.randn(1, G.z_dim), None)).clone()
    target[:, :, 8:20, 8:20] = torch.tensor([1.0, -1.0, 1.0]).reshape(1, 3, 1, 1)  # not in G's range
    return target


@pytest.mark.numerics
def test_pivotal_tuning_fits_what_inversion_cannot(G, perceptual):
    target = _patched_target(G)
    pivot = project(G, target, dataclasses.replace(INV, steps=40), perceptual=perceptual, progress=False)
    before = mse(render(G, pivot.w), target)
    weights_before = [p.clone() for p in G.parameters()]
    result = pivotal_tune(G, target, pivot, TuningConfig(steps=60, lr=3e-3, lpips_threshold=None), perceptual=perceptual,
                  progress=False)
    after = mse(render(result.generator, pivot.w), target)
    assert after < before / 5, (before, after)  # measured after/before 0.09-0.11 (see INV)
    assert result.steps == 60 and not result.stopped_early
    assert all(torch.equal(a, b) for a, b in zip(weights_before, G.parameters()))  # original untouched
    assert not any(p.requires_grad for p in result.generator.parameters())


def test_early_stop(G, perceptual):
    target = _patched_target(G)
    w = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, G.w_dim)
    stopped = pivotal_tune(G, target, w, TuningConfig(steps=50, lpips_threshold=1e6), perceptual=perceptual, progress=False)
    assert stopped.stopped_early and stopped.steps == 0
    never = pivotal_tune(G, target, w, TuningConfig(steps=5, lpips_threshold=1e-9), perceptual=perceptual, progress=False)
    assert not never.stopped_early and never.steps == 5


def test_step_towards_distance():
    w_p = torch.zeros(1, 4, 8)
    w_z = torch.randn(3, 4, 8)
    w_r = step_towards(w_p, w_z, 30.0, "paper")
    # float32 norms of 30: 1 ulp is 1.9e-6; measured 3.8e-6 under every setting (a rounding bound, not a spread)
    assert torch.allclose(w_r.norm(dim=2), torch.full((3, 4), 30.0), atol=1e-4)
    w_o = step_towards(w_p, w_z, 30.0, "official")
    assert torch.allclose(w_o.flatten(1).norm(dim=1), torch.full((3,), 30.0), atol=1e-4)


@pytest.mark.numerics
def test_locality_regularization_keeps_far_samples(G, perceptual):
    target = _patched_target(G)
    pivot = project(G, target, dataclasses.replace(INV, steps=30), perceptual=perceptual, progress=False)
    base = TuningConfig(steps=40, lr=3e-3, lpips_threshold=None, seed=1)
    # alpha chosen relative to this generator's W spread; strong weights make the effect clear in few steps
    loc = LocalityConfig(enabled=True, alpha=3.0, l2_weight=10.0, lpips_weight=1.0, num_samples=4, truncation_psi=1.0)
    off = pivotal_tune(G, target, pivot, base, perceptual=perceptual, progress=False).generator
    on = pivotal_tune(G, target, pivot, dataclasses.replace(base, locality=loc), perceptual=perceptual,
              progress=False).generator
    torch.manual_seed(123)
    w_far = step_towards(pivot.w, G.mapping(torch.randn(16, G.z_dim), None), 3.0)
    reference = render(G, w_far)
    drift_off = mse(render(off, w_far), reference)
    drift_on = mse(render(on, w_far), reference)
    assert drift_on < 0.7 * drift_off, (drift_on, drift_off)  # measured on/off 0.04-0.08 (see INV)


@pytest.mark.numerics
def test_multi_image_tuning_improves_all(G, perceptual):
    """One generator, three distinct pivots, batches of 2: every pivot moves to its own target."""
    torch.manual_seed(21)
    targets = render(G, G.mapping(torch.randn(3, G.z_dim), None)).clone()
    targets[:, :, 4:12, 20:28] = 0.9
    w = G.mapping(torch.randn(3, G.z_dim), None)  # pivots unrelated to the targets' latents
    before = [mse(render(G, w[i:i + 1]), targets[i:i + 1]) for i in range(3)]
    result = pivotal_tune(G, targets, w, TuningConfig(steps=60, lr=3e-3, lpips_threshold=None, batch_size=2),
                  perceptual=perceptual, progress=False)
    after = [mse(render(result.generator, w[i:i + 1]), targets[i:i + 1]) for i in range(3)]
    # measured after/before 0.07, 0.07, 0.14 and after/min(others) 0.15-0.18, moving by < 0.01 across the
    # settings and the injected noise listed at INV
    assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)
    # each pivot reproduces its own target, not a blend: the other targets stay further away
    for i in range(3):
        others = [mse(render(result.generator, w[i:i + 1]), targets[j:j + 1]) for j in range(3) if j != i]
        assert after[i] < min(others), (i, after[i], others)


def test_deterministic_with_seed(G, perceptual):
    target = _patched_target(G)
    cfg = dataclasses.replace(INV, steps=10)
    p1 = project(G, target, cfg, perceptual=perceptual, progress=False)
    p2 = project(G, target, cfg, perceptual=perceptual, progress=False)
    assert torch.equal(p1.w, p2.w)
    tcfg = TuningConfig(steps=5, lr=1e-3, lpips_threshold=None, locality=LocalityConfig(enabled=True))
    g1 = pivotal_tune(G, target, p1, tcfg, perceptual=perceptual, progress=False).generator
    g2 = pivotal_tune(G, target, p1, tcfg, perceptual=perceptual, progress=False).generator
    assert all(torch.equal(a, b) for a, b in zip(g1.parameters(), g2.parameters()))


def test_non_finite_loss_raises(G, perceptual):
    target = _patched_target(G)
    w = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, G.w_dim)
    with pytest.raises(NonFiniteLossError):
        pivotal_tune(G, target, w, TuningConfig(steps=5, lr=1e30, lpips_threshold=None), perceptual=perceptual,
             progress=False)
    with pytest.raises(NonFiniteLossError):
        project(G, target * float("nan"), dataclasses.replace(INV, steps=3), perceptual=perceptual, progress=False)


def test_pivot_save_load_roundtrip(tmp_path, G, perceptual):
    pivot = project(G, _patched_target(G), dataclasses.replace(INV, steps=3), perceptual=perceptual, progress=False)
    pivot.save(tmp_path / "pivot.pt")
    loaded = Pivot.load(tmp_path / "pivot.pt")
    assert torch.equal(loaded.w, pivot.w) and len(loaded.noise) == len(pivot.noise)
    assert loaded.loss_history == pivot.loss_history
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.pt"):
        Pivot.load(tmp_path / "bad.pt")
