"""Graph-safe steps (pti.fast.graphs, ExecutionConfig.cuda_graphs): on a CPU they run eagerly after one
warning and equal the core; on a GPU (marker ``gpu``) N replayed steps equal N eager ones.

The graph-safe step differs from the core only in its optimiser (the masked FlatAdam, whose learning rate
is a device tensor, instead of torch.optim.Adam: the same update, other rounding) and in when its random
numbers are drawn (ahead of the run, the same numbers); so results agree within the rounding that Adam
amplifies, measured below.
"""
from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from conftest import make_tiny_generator
from pti import fast
from pti.core.config import InversionConfig, LocalityConfig, TuningConfig
from pti.fast import ExecutionConfig
from pti.fast.graphs import StepGraphs
from pti.core.losses import PerceptualLoss
from pti.core.projector import project
from pti.core.tuning import pivotal_tune

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks run fastest on one thread

INV = InversionConfig(steps=10, lr=0.01, w_avg_samples=300)
LOC = LocalityConfig(enabled=True, alpha=2.0, num_samples=2, interval=3)
TUNE = TuningConfig(steps=8, lpips_threshold=None, locality=LOC)
GRAPHS = ExecutionConfig(cuda_graphs=True, sync_every=4)


@pytest.fixture(scope="module")
def perceptual():
    torch.manual_seed(0)  # the random backbone's weights
    return PerceptualLoss("random-alex")


@pytest.fixture(scope="module")
def scene():
    G = make_tiny_generator(resolution=16, seed=3)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ws = G.mapping(torch.randn([2, G.z_dim], generator=gen), None)
        targets = G.synthesis(ws, noise_mode="const").clone()
    targets[:, :, 4:10, 4:10] = 0.9
    return G, targets, ws + 0.3 * torch.randn([2, 1, G.w_dim], generator=gen)


def render(G, w):
    with torch.no_grad():
        return G.synthesis(w, noise_mode="const", force_fp32=True)


def test_step_graphs_fall_back_off_cuda_with_one_warning():
    calls = []
    with pytest.warns(RuntimeWarning, match="CUDA graphs need a CUDA device") as record:
        graphs = StepGraphs(lambda key: calls.append(key) or len(calls), "cpu", enabled=True)
        assert [graphs(k) for k in ("a", "b", "a")] == [1, 2, 3]
    assert len([w for w in record if "CUDA graphs" in str(w.message)]) == 1
    assert graphs.fallback and graphs.captured == [] and calls == ["a", "b", "a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not asked for: no warning
        assert StepGraphs(lambda key: 7, "cpu", enabled=False)() == 7


@pytest.mark.numerics
def test_graph_safe_inversion_equals_the_core_on_cpu(scene, perceptual):
    G, targets, _ = scene
    core = project(G, targets[0], INV, perceptual=perceptual, progress=False)
    with pytest.warns(RuntimeWarning, match="CUDA graphs"):
        safe = fast.project(G, targets[0], INV, perceptual=perceptual, progress=False, execution=GRAPHS)
    # FlatAdam vs torch.optim.Adam: the same update in another order of elementwise ops (tests/test_speed_paths:
    # 2.3e-6 after 6 steps). Measured here after 10 steps: w 7.2e-7, noise maps 1.2e-6, losses rel 6.0e-6 (default
    # kernels and ONEDNN_MAX_CPU_ISA=AVX2, the same); atol 1e-4 / rel 1e-4 (as the batched-inversion test) leave 16x.
    torch.testing.assert_close(safe.w, core.w, rtol=0, atol=1e-4)
    for a, b in zip(safe.noise, core.noise):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert safe.loss_history == pytest.approx(core.loss_history, rel=1e-4)
    assert not torch.equal(safe.w, project(G, targets[1], INV, perceptual=perceptual, progress=False).w)


@pytest.mark.numerics
@pytest.mark.parametrize("batch_size", [None, 1])
def test_graph_safe_tuning_equals_the_core_on_cpu(scene, perceptual, batch_size):
    """Locality samples drawn ahead, early-stop mask and learning rate on the device; with batch_size 1 of 2
    photos the inputs are copied into the step's fixed tensors each step (the batch order drawn ahead)."""
    G, targets, pivots = scene
    cfg = dataclasses.replace(TUNE, batch_size=batch_size)
    core = pivotal_tune(G, targets, pivots, cfg, perceptual=perceptual, progress=False)
    with pytest.warns(RuntimeWarning, match="CUDA graphs"):
        safe = fast.pivotal_tune(G, targets, pivots, cfg, perceptual=perceptual, progress=False, execution=GRAPHS)
    assert safe.steps == core.steps == TUNE.steps and len(safe.locality_history) == len(core.locality_history) == 3
    # measured: perceptual histories rel <= 3.3e-6, locality penalties rel <= 1.4e-5, renders <= 7.0e-5 (default
    # kernels and ONEDNN_MAX_CPU_ISA=AVX2, both batch sizes); tolerances as tests/test_speed_paths.py's
    # deferred-sync test (RENDER_ATOL 2e-3, which rests on Adam's amplified rounding measured there).
    assert safe.perceptual_history == pytest.approx(core.perceptual_history, rel=1e-4)
    assert safe.locality_history == pytest.approx(core.locality_history, rel=1e-3, abs=1e-6)
    for k in range(2):
        torch.testing.assert_close(render(safe.generator, pivots[k:k + 1]), render(core.generator, pivots[k:k + 1]),
                                   rtol=0, atol=2e-3)
    # a wrong locality draw (another seed) moves the penalties by far more than that
    other = fast.pivotal_tune(G, targets, pivots, dataclasses.replace(cfg, seed=5), perceptual=perceptual,
                              progress=False, execution=ExecutionConfig(sync_every=4))
    assert other.locality_history != pytest.approx(core.locality_history, rel=1e-2)


@pytest.mark.numerics
def test_graph_safe_batched_tuning_with_early_stop_on_cpu(scene, perceptual):
    """K photos, each with its weights: the device-side early stop and the locality samples drawn ahead."""
    G, targets, pivots = scene
    pilot = pivotal_tune(G, targets[1], pivots[1:2], TUNE, perceptual=perceptual, progress=False)
    threshold = (pilot.perceptual_history[3] + pilot.perceptual_history[4]) / 2  # photo 1 stops after 4 updates
    cfg = dataclasses.replace(TUNE, lpips_threshold=threshold)
    sequential = [pivotal_tune(G, targets[k], pivots[k:k + 1], cfg, perceptual=perceptual, progress=False)
                  for k in range(2)]
    with pytest.warns(RuntimeWarning, match="CUDA graphs"):
        batched = fast.tune_batched(G, targets, pivots, cfg, perceptual=perceptual, progress=False, execution=GRAPHS)
    assert batched.steps == [r.steps for r in sequential] and batched.steps[1] == 4
    for k in range(2):
        assert batched.locality_history[k] == pytest.approx(sequential[k].locality_history, rel=1e-3, abs=1e-6)
        torch.testing.assert_close(render(batched.generator(k), pivots[k:k + 1]),
                                   render(sequential[k].generator, pivots[k:k + 1]), rtol=0, atol=2e-3)


# ---------------------------------------------------------------------------------------------------------
# GPU: N replayed steps equal N eager steps of the same graph-safe code
# ---------------------------------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class _Eager(StepGraphs):
    """The same graph-safe steps, never captured."""

    def __init__(self, step, device, enabled=True, **kwargs):
        super().__init__(step, device, enabled=False, **kwargs)


def _eager_and_replayed(monkeypatch, run):
    import pti.fast.batched
    import pti.fast.projector
    import pti.fast.tuning

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="pti: CUDA graphs off")  # a capture that fell back: fail
        replayed = run()
    for module in (pti.fast.projector, pti.fast.tuning, pti.fast.batched):
        monkeypatch.setattr(module, "StepGraphs", _Eager)
    return run(), replayed


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("k_photos", [1, 2])
def test_gpu_replayed_inversion_equals_eager(monkeypatch, k_photos):
    """Replays run the captured kernels of the eager step: expected equal to rounding of algorithm choices
    (cuDNN may pick others under capture); atol 1e-4 on w after 12 steps at lr 0.01, as the CPU tests."""
    G = make_tiny_generator(resolution=32, seed=3).cuda()
    perceptual = PerceptualLoss("random-vgg", None, "cuda")
    targets = torch.rand([k_photos, 3, 32, 32], generator=torch.Generator().manual_seed(0)).cuda() * 2 - 1
    cfg = dataclasses.replace(INV, steps=12)
    eager, replayed = _eager_and_replayed(monkeypatch, lambda: fast.project_batch(
        G, targets, cfg, perceptual=perceptual, progress=False, execution=GRAPHS))
    for a, b in zip(eager, replayed):
        torch.testing.assert_close(b.w, a.w, rtol=0, atol=1e-4)
        assert b.loss_history == pytest.approx(a.loss_history, rel=1e-4)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("k_photos", [1, 2])
def test_gpu_replayed_tuning_equals_eager(monkeypatch, k_photos):
    """Tuning with locality (two captured graphs: plain and regularised steps), one photo through
    fast.pivotal_tune, K photos through tune_batched; renders within tests/test_speed_paths.py's RENDER_ATOL."""
    G = make_tiny_generator(resolution=32, seed=3).cuda()
    perceptual = PerceptualLoss("random-alex", None, "cuda")
    gen = torch.Generator().manual_seed(0)
    targets = (torch.rand([k_photos, 3, 32, 32], generator=gen) * 2 - 1).cuda()
    pivots = G.mapping(torch.randn([k_photos, G.z_dim], generator=gen).cuda(), None).detach()
    cfg = dataclasses.replace(TUNE, steps=10)
    if k_photos == 1:
        eager, replayed = _eager_and_replayed(monkeypatch, lambda: fast.pivotal_tune(
            G, targets, pivots, cfg, perceptual=perceptual, progress=False, execution=GRAPHS).generator)
        pairs = [(eager, replayed)]
    else:
        eager, replayed = _eager_and_replayed(monkeypatch, lambda: fast.tune_batched(
            G, targets, pivots, cfg, perceptual=perceptual, progress=False, execution=GRAPHS).generators())
        pairs = list(zip(eager, replayed))
    for k, (a, b) in enumerate(pairs):
        torch.testing.assert_close(render(b, pivots[k:k + 1]), render(a, pivots[k:k + 1]), rtol=0, atol=2e-3)
