"""The kernels' self-check (pti/stylegan2/ops/_selfcheck.py) and the ``PTI_OPS`` switch.

On the CPU, a stand-in for the compiled extension (:class:`StandInKernels`: the extension's
three functions computed with the reference ops, or wrong on purpose) is put where the real
build goes (``_backend._plugin``) and ``_backend.KERNEL_DEVICE`` is pointed at ``'cpu'``, so the
whole path runs as it does on CUDA tensors: the public op, ``_cuda_ops``' autograd functions,
the check, the verdict cache, the warning and the fallback.

- ``slow``: the kernels' own per-element code (tests/ops_host_harness.cpp) passes the check.
- ``gpu``: the compiled kernels pass it on StyleGAN2 config-f, and a wrong one is refused.

Tolerances (issue 14): the ``assert_close`` calls keep the float32 defaults (rtol 1.3e-6, atol 1e-5) and compare
the stand-in, which computes with the reference ops, with the reference: measured max |diff| 0 at every one, with
the default kernels and with ATEN_CPU_CAPABILITY=default + ONEDNN_MAX_CPU_ISA=SSE41. The self-check's own
thresholds are pti's (``_selfcheck.ERROR_RATIO`` / ``FLOOR_EPS``, measured by tools/selfcheck_spread.py).
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from pti.stylegan2.ops import _backend, _cuda_ops, _selfcheck, bias_act, setup_filter, upfirdn2d, upsample2d
from pti.stylegan2.ops._reference import ACTIVATIONS, along, bias_act_ref, upfirdn2d_ref

ACT_BY_ID = {a.cuda_ref: name for name, a in ACTIVATIONS.items()}


class StandInKernels:
    """The compiled extension's interface (``bias_act``, ``bias_act_grad``, ``upfirdn2d``) on CPU
    tensors, computed with the reference ops. ``defect`` makes it wrong on purpose:

    ``values``/``grads``: outputs / gradients ``scale`` too large; ``raises``: an exception;
    ``unwritten``: the last output sample left at 0; ``nan``: one NaN; ``dtype``: float32
    output whatever the input; ``flip``: upfirdn2d ignores ``flip_filter``; ``alpha``: lrelu's
    gradient slope off.
    """

    def __init__(self, defect: str | None = None, scale: float = 1e-3) -> None:
        self.defect, self.scale = defect, scale
        self.calls = 0

    def _finish(self, y: torch.Tensor, kind: str) -> torch.Tensor:
        if self.defect == "raises":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.defect == kind:
            y = y * (1 + self.scale)
        if self.defect == "unwritten" and kind == "values":
            y = y.clone()
            y.view(-1)[-1] = 0
        if self.defect == "nan" and kind == "values":
            y = y.clone()
            y.view(-1)[0] = float("nan")
        if self.defect == "dtype":
            y = y.float()
        return y

    def bias_act(self, x, b, dim, act_id, alpha, gain, clamp):
        self.calls += 1
        y = bias_act_ref(x, b, dim=dim, act=ACT_BY_ID[act_id], alpha=alpha, gain=gain,
                         clamp=None if clamp < 0 else clamp)
        return self._finish(y, "values")

    def bias_act_grad(self, dy, saved, b, dim, act_id, saved_is_output, alpha, gain, clamp):
        act = ACT_BY_ID[act_id]
        if self.defect == "alpha":
            alpha = alpha * 1.25
        if saved_is_output:  # slope from the sign of y (linear, relu, lrelu), 0 where clamped
            y = saved
            negative = {"linear": gain, "relu": 0.0, "lrelu": alpha * gain}[act]
            slope = torch.where(y > 0, torch.full_like(y, gain), torch.full_like(y, negative))
            if clamp >= 0:  # like the kernel: |y| (widened to float) against the clamp it is given
                slope = torch.where(y.float().abs() < torch.tensor(clamp, dtype=torch.float32), slope,
                                    torch.zeros_like(slope))
            return self._finish(dy * slope, "grads")
        z = saved if b is None else saved + along(b, dim, saved.ndim)
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            y = bias_act_ref(z, None, dim=dim, act=act, alpha=alpha, gain=gain, clamp=None if clamp < 0 else clamp)
            (dx,) = torch.autograd.grad(y, z, dy)
        return self._finish(dx, "grads")

    def upfirdn2d(self, x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter):
        self.calls += 1
        if self.defect == "flip":
            flip_filter = False
        y = upfirdn2d_ref(x, f, up=[up_x, up_y], down=[down_x, down_y], padding=[pad_x0, pad_x1, pad_y0, pad_y1],
                          flip_filter=flip_filter)
        return self._finish(y, "values")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def plug(monkeypatch: pytest.MonkeyPatch):
    """``plug(kernels)`` makes ``kernels`` the loaded build for CPU tensors (no ``PTI_OPS``, no verdicts)."""
    monkeypatch.delenv("PTI_OPS", raising=False)
    monkeypatch.setattr(_backend, "KERNEL_DEVICE", "cpu")
    monkeypatch.setattr(_backend, "_build_error", None)
    monkeypatch.setattr(_backend, "_warned", False)

    def install(kernels: Any) -> Any:
        monkeypatch.setattr(_backend, "_plugin", kernels)
        _selfcheck.reset()
        return kernels

    yield install
    _selfcheck.reset()


@pytest.fixture
def count_checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"bias_act": 0, "upfirdn2d": 0}
    for op in counts:
        original = getattr(_selfcheck, f"check_{op}")

        def counted(*args, _op=op, _original=original, **kwargs):
            counts[_op] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(_selfcheck, f"check_{op}", counted)
    return counts


def rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# Flags StyleGAN2 uses (mapping FC, conv with conv_clamp 256, toRGB) and some it does not.
BIAS_ACT_CASES = [
    dict(ndim=2, dim=1, act="lrelu"),
    dict(ndim=4, dim=1, act="lrelu", clamp=256.0),
    dict(ndim=4, dim=1, act="linear", gain=1.0, clamp=256.0),
    dict(ndim=3, dim=2, act="swish", clamp=1.0),
    dict(ndim=4, dim=1, act="tanh", gain=-1.5),
    dict(ndim=4, dim=1, act="lrelu", clamp=0.8),  # 0.8 is not a float16 number
]
UPFIRDN_CASES = [
    dict(f_shape=(4, 4), up=2, padding=[2, 1, 2, 1], gain=4.0),
    dict(f_shape=(4, 4), down=2, padding=[1, 1, 1, 1]),
    dict(f_shape=(8,), up=[2, 1], down=[1, 2], padding=[3, 2, -1, 3], flip_filter=True),
    dict(f_shape=None, padding=[1, 0, 0, 1], gain=2.0),
]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


# ------------------------------------------------------------------------------------------
# The checks themselves
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_correct_kernels_pass(plug, dtype: torch.dtype) -> None:
    kernels = plug(StandInKernels())
    for case in BIAS_ACT_CASES:
        v = _selfcheck.check_bias_act(dtype, "cpu", has_bias=True, **case)
        assert v.ok, v
        assert set(v.errors) == {"y", "dx", "db"}
    for case in UPFIRDN_CASES:
        v = _selfcheck.check_upfirdn2d(dtype, "cpu", **case)
        assert v.ok, v
        assert set(v.errors) == {"y", "dx"}
    assert kernels.calls >= len(BIAS_ACT_CASES) + 2 * len(UPFIRDN_CASES)  # each ran on the stand-in


@pytest.mark.parametrize("dtype,clamp,stored", [(torch.float16, 0.8, 0.7998046875), (torch.bfloat16, 0.7, 0.69921875)],
                         ids=["float16", "bfloat16"])
def test_gradient_at_a_clamp_the_dtype_cannot_hold(plug, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                  clamp: float, stored: float) -> None:
    # float16 stores a clamp of 0.8 as 0.7998: the kernel reading the slope from the output must
    # compare against that (``_cuda_ops.stored_clamp``), or clamped samples pass the gradient. The
    # self-check found this in the kernels' code (tools/selfcheck_spread.py --kernels harness).
    plug(StandInKernels())
    assert _cuda_ops.stored_clamp(clamp, dtype) == stored
    assert _selfcheck.check_bias_act(dtype, "cpu", 4, 1, "lrelu", clamp=clamp).ok
    monkeypatch.setattr(_cuda_ops, "stored_clamp", lambda clamp, dtype: clamp)  # without the fix
    v = _selfcheck.check_bias_act(dtype, "cpu", 4, 1, "lrelu", clamp=clamp)
    assert not v.ok and "dx differs" in v.error


# (defect, scale, dtype, op, what the error must say). Scales: 1e-3 is 50x the float32 floor
# (1.5e-5) and 1e-2 is 8x the float16 allowance (about 1.3e-3, see test_correct_kernels_pass's verdicts).
WRONG = [
    ("values", 1e-3, torch.float32, "bias_act", "y differs"),
    ("values", 1e-3, torch.float64, "upfirdn2d", "y differs"),
    ("values", 1e-2, torch.float16, "bias_act", "y differs"),
    ("grads", 1e-3, torch.float32, "bias_act", "dx differs"),
    ("grads", 1e-2, torch.bfloat16, "bias_act", "dx differs"),
    ("alpha", 0, torch.float32, "bias_act", "dx differs"),
    ("raises", 0, torch.float32, "bias_act", "RuntimeError: CUDA error: an illegal memory access"),
    ("raises", 0, torch.float16, "upfirdn2d", "RuntimeError: CUDA error: an illegal memory access"),
    ("unwritten", 0, torch.float32, "upfirdn2d", "y differs"),
    ("nan", 0, torch.float32, "bias_act", "y differs"),
    ("dtype", 0, torch.float16, "bias_act", "y is torch.float32, expected torch.float16"),
    ("flip", 0, torch.float32, "upfirdn2d", "dx differs"),  # only the gradient (the adjoint) flips
]


@pytest.mark.parametrize("defect,scale,dtype,op,message", WRONG, ids=[f"{w[0]}-{w[3]}-{w[2]}" for w in WRONG])
def test_wrong_kernels_are_refused(plug, defect: str, scale: float, dtype: torch.dtype, op: str, message: str) -> None:
    plug(StandInKernels(defect, scale))
    if op == "bias_act":
        v = _selfcheck.check_bias_act(dtype, "cpu", 4, 1, "lrelu", clamp=256.0)
    else:
        v = _selfcheck.check_upfirdn2d(dtype, "cpu", f_shape=(4, 4), up=2, padding=[2, 1, 2, 1], gain=4.0)
    assert not v.ok
    assert message in v.error, v.error


def test_check_leaves_random_streams_and_modes_alone(plug) -> None:
    plug(StandInKernels())
    state = torch.random.get_rng_state()
    with torch.inference_mode():
        v = _selfcheck.check_bias_act(torch.float32, "cpu", 4, 1, "lrelu", clamp=256.0)
    assert v.ok, v  # gradients were taken although the caller is in inference mode
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------------------------------
# Dispatch: verdict cache, one warning, fallback, PTI_OPS
# ------------------------------------------------------------------------------------------
def test_passing_kernel_is_used_and_checked_once(plug, count_checks) -> None:
    kernels = plug(StandInKernels())
    x, b = rand(2, 5, 6, 7, seed=1), rand(5, seed=2)
    f = setup_filter([1, 3, 3, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            torch.testing.assert_close(bias_act(x, b, act="lrelu", clamp=256), bias_act_ref(x, b, act="lrelu", clamp=256))
            torch.testing.assert_close(upsample2d(x, f), upsample2d(x, f, impl="ref"))
    assert count_checks == {"bias_act": 1, "upfirdn2d": 1}
    assert kernels.calls == 1 + 2 + 3 + 3  # checks: bias_act forward, upfirdn2d forward + adjoint; 3 calls each
    assert [v.op for v in _selfcheck.verdicts()] == ["bias_act", "upfirdn2d"]
    assert all(v.ok and v.build.startswith("StandInKernels@") for v in _selfcheck.verdicts())


def test_failing_kernel_falls_back_with_one_warning_per_op_and_dtype(plug, count_checks) -> None:
    kernels = plug(StandInKernels("values", 1e-2))
    x, b = rand(2, 5, 6, 7, seed=3), rand(5, seed=4)
    with pytest.warns(UserWarning) as record:
        y = bias_act(x, b, act="lrelu", clamp=256)
        calls_after_check = kernels.calls
        y2 = bias_act(x, b, act="lrelu", clamp=256)
        bias_act(x, b, act="lrelu")  # other flags: checked (and refused) too, but not warned again
        bias_act(x.double(), b.double(), act="lrelu")  # another dtype: its own warning
    assert torch.equal(y, bias_act_ref(x, b, act="lrelu", clamp=256)) and torch.equal(y2, y)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2, messages
    assert "the CUDA kernel of bias_act failed its self-check on float32" in messages[0]
    assert "y differs from the float64 reference" in messages[0] and "clamp=256" in messages[0]
    assert "using the pure-PyTorch reference for bias_act on float32" in messages[0]
    assert "on float64" in messages[1]
    assert count_checks["bias_act"] == 3
    assert kernels.calls == calls_after_check + 2  # only the two other checks ran it


def test_forced_kernels_are_used_despite_a_failed_check(plug, monkeypatch: pytest.MonkeyPatch) -> None:
    plug(StandInKernels("values", 1e-2))
    x = rand(3, 4, seed=5)
    monkeypatch.setenv("PTI_OPS", "cuda")
    with pytest.warns(UserWarning, match="using it anyway: the kernels are forced"):
        y = bias_act(x, None, act="lrelu")
    torch.testing.assert_close(y, bias_act_ref(x, None, act="lrelu") * 1.01)
    monkeypatch.delenv("PTI_OPS")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per op and dtype already
        torch.testing.assert_close(bias_act(x, None, act="lrelu", impl="cuda"), y)
        torch.testing.assert_close(bias_act(x, None, act="lrelu"), bias_act_ref(x, None, act="lrelu"))


def test_pti_ops_ref_never_builds_or_checks(plug, count_checks, monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = plug(StandInKernels())
    monkeypatch.setenv("PTI_OPS", "ref")
    x = rand(2, 3, 8, 8, seed=6)
    bias_act(x, None, act="lrelu")
    upfirdn2d(x, setup_filter([1, 3, 3, 1]), up=2, padding=[2, 1, 2, 1])
    assert kernels.calls == 0 and count_checks == {"bias_act": 0, "upfirdn2d": 0}
    # An explicit impl wins over the environment; an auto_impl block wins over it too.
    bias_act(x, None, act="lrelu", impl="cuda")
    assert kernels.calls > 0
    monkeypatch.setenv("PTI_OPS", "cuda")
    calls = kernels.calls
    with _backend.auto_impl("ref"):
        bias_act(x, None, act="lrelu")
    assert kernels.calls == calls


def test_pti_ops_rejects_unknown_values(plug, monkeypatch: pytest.MonkeyPatch) -> None:
    plug(StandInKernels())
    monkeypatch.setenv("PTI_OPS", "fast")
    with pytest.raises(ValueError, match="PTI_OPS='fast'"):
        bias_act(torch.zeros(2, 3), None)


def test_pti_ops_cuda_leaves_cpu_tensors_on_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # KERNEL_DEVICE stays 'cuda': a forced environment does not make CPU work an error.
    monkeypatch.setenv("PTI_OPS", "cuda")
    x = rand(2, 3, seed=7)
    assert torch.equal(bias_act(x, None, act="lrelu"), bias_act_ref(x, None, act="lrelu"))
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        bias_act(x, None, act="lrelu", impl="cuda")


def test_verdicts_belong_to_one_build(plug, count_checks) -> None:
    plug(StandInKernels("values", 1e-2))
    x = rand(3, 4, seed=8)
    with pytest.warns(UserWarning):
        bias_act(x, None, act="lrelu")
    assert not _selfcheck.verdicts()[0].ok
    plug(StandInKernels())  # a new build: checked again, and now used
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bias_act(x, None, act="lrelu")
    assert count_checks["bias_act"] == 2 and _selfcheck.verdicts()[0].ok


def test_generator_checks_each_op_dtype_and_flags_once(plug, count_checks) -> None:
    from conftest import make_tiny_generator

    kernels = plug(StandInKernels())
    G = make_tiny_generator(resolution=16)
    z = rand(2, G.z_dim, seed=9)
    with _backend.auto_impl("ref"):
        expected = G(z, None, noise_mode="const")
    for _ in range(2):
        ws = G.mapping(z, None).detach().requires_grad_(True)
        img = G.synthesis(ws, noise_mode="const")
        img.square().sum().backward()
        torch.testing.assert_close(img.detach(), expected)
    keys = len(_selfcheck.verdicts())
    assert keys == count_checks["bias_act"] + count_checks["upfirdn2d"]
    assert count_checks["bias_act"] >= 3 and count_checks["upfirdn2d"] >= 1  # FC, conv, toRGB; upsampling
    assert all(v.ok for v in _selfcheck.verdicts())
    assert kernels.calls > 2 * keys  # the network ran on the stand-in after the checks


# ------------------------------------------------------------------------------------------
# The kernels' own code on the CPU (slow: compiles tests/ops_host_harness.cpp)
# ------------------------------------------------------------------------------------------
def _spread_tool():
    path = Path(__file__).resolve().parents[1] / "tools" / "selfcheck_spread.py"
    spec = importlib.util.spec_from_file_location("selfcheck_spread", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kernel_code_passes_the_selfcheck(plug) -> None:
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        pytest.skip("needs ninja to build tests/ops_host_harness.cpp")
    tool = _spread_tool()
    plug(tool.harness_kernels())
    failed = [v for v in tool.sweep(torch.device("cpu")) if not v.ok]
    assert not failed, failed[:3]


# ------------------------------------------------------------------------------------------
# The compiled kernels (GPU)
# ------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_kernels_pass_on_config_f_and_fp16_layers() -> None:
    from pti.bench_presets import GENERATOR_CONFIGS
    from pti.stylegan2 import Generator

    _backend.build_extension()
    _selfcheck.reset()
    torch.manual_seed(0)
    G = Generator(**GENERATOR_CONFIGS["f1024"]).cuda().eval()
    ws = G.mapping(torch.randn(1, G.z_dim, device="cuda"), None).detach().requires_grad_(True)
    for force_fp32 in (True, False):  # fp32 everywhere; the network's fp16 layers with conv_clamp
        img = G.synthesis(ws, noise_mode="const", force_fp32=force_fp32)
        img.float().square().mean().backward()
    verdicts = _selfcheck.verdicts()
    assert {v.dtype for v in verdicts} >= {"float32", "float16"}
    assert all(v.ok for v in verdicts), [v for v in verdicts if not v.ok]


@pytest.mark.gpu
def test_gpu_wrong_kernel_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _backend.build_extension()

    class OffByOnePercent:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def bias_act(self, *args: Any) -> torch.Tensor:
            return real.bias_act(*args) * 1.01

    monkeypatch.delenv("PTI_OPS", raising=False)
    monkeypatch.setattr(_backend, "_plugin", OffByOnePercent())
    x = torch.randn(4, 8, 16, 16, device="cuda")
    with pytest.warns(UserWarning, match="bias_act failed its self-check on float32"):
        y = bias_act(x, None, act="lrelu", clamp=256)
    assert torch.equal(y, bias_act_ref(x, None, act="lrelu", clamp=256))
    monkeypatch.undo()
    _selfcheck.reset()
