"""StyleGAN2's ops: the pure-PyTorch reference against independent formulations, its
gradients, the dispatch between reference and CUDA kernels, and the kernels themselves.

- CPU (always): reference ops vs scipy / numpy / torch.nn.functional formulations, gradcheck
  in float64, ``impl='auto'`` dispatch and the remembered build failure.
- ``slow`` (compiles a small CPU extension, ~20-60 s the first time, cached afterwards):
  the kernels' per-element code (csrc/ops_math.h) run on the CPU through
  tests/ops_host_harness.cpp, and the autograd wrappers of _cuda_ops.py on top of it.
- ``slow`` + ``PTI_TEST_CUDA_BUILD=1``: compiles the real CUDA extension (1.5-3 min).
- ``gpu``: reference vs CUDA kernels, values and gradients, and a whole tiny generator.

Tolerances of the CPU tests (issue 14): ``torch.testing.assert_close``'s defaults (float64: rtol 1e-7,
atol 1e-7; float32: rtol 1.3e-6, atol 1e-5) unless written otherwise. ``rand`` gives float64, so the
reference ops and the independent formulations both compute in float64: measured max |diff| <= 5.3e-15,
except where float32 filter taps enter (noted at those tests). Every max |diff| here was the same with the
default kernels (AVX2: the measuring CPU has no AVX-512), ATEN_CPU_CAPABILITY=default,
ONEDNN_MAX_CPU_ISA=SSE41 and both together: oneDNN has no float64 kernels, so these results do not depend on
the CPU's vector kernels, and no test here is marked ``numerics``.
"""
from __future__ import annotations

import itertools
import math
import os
import shutil
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from pti.stylegan2.ops import (ACTIVATIONS, bias_act, conv2d_resample, downsample2d, filter2d, modulated_conv2d,
                               setup_filter, upfirdn2d, upsample2d)
from pti.stylegan2.ops import _backend, _cuda_ops
from pti.stylegan2.ops.bias_act import bias_act_ref
from pti.stylegan2.ops.upfirdn2d import fir_padding, upfirdn2d_ref

# ------------------------------------------------------------------------------------------
# Independent formulations used as ground truth
# ------------------------------------------------------------------------------------------
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# act -> (formula of z and alpha, NVIDIA's default alpha, default gain)
ACTIVATION_FORMULAS = {
    "linear": (lambda z, a: z, 0.0, 1.0),
    "relu": (lambda z, a: torch.where(z > 0, z, torch.zeros_like(z)), 0.0, math.sqrt(2)),
    "lrelu": (lambda z, a: torch.where(z > 0, z, a * z), 0.2, math.sqrt(2)),
    "tanh": (lambda z, a: (z.exp() - (-z).exp()) / (z.exp() + (-z).exp()), 0.0, 1.0),
    "sigmoid": (lambda z, a: 1 / (1 + (-z).exp()), 0.0, 1.0),
    "elu": (lambda z, a: torch.where(z > 0, z, z.exp() - 1), 0.0, 1.0),
    "selu": (lambda z, a: SELU_SCALE * torch.where(z > 0, z, SELU_ALPHA * (z.exp() - 1)), 0.0, 1.0),
    "softplus": (lambda z, a: (1 + z.exp()).log(), 0.0, 1.0),
    "swish": (lambda z, a: z / (1 + (-z).exp()), 0.0, math.sqrt(2)),
}


def numpy_upfirdn2d(x: np.ndarray, f: np.ndarray, up: tuple[int, int], down: tuple[int, int],
                    pad: tuple[int, int, int, int], flip_filter: bool, gain: float = 1.0) -> np.ndarray:
    """Direct per-output-sample evaluation of upfirdn on [N, C, H, W] with a 2-D filter [fh, fw].

    out[i, j] = sum_{a, b} g[a, b] * u[i * down_y + a - pad_y0, j * down_x + b - pad_x0], where
    u[k, l] = x[k / up_y, l / up_x] on multiples of the factors (zero elsewhere and outside)
    and g = f (flip_filter) or f rotated by 180 degrees (true convolution).
    """
    (upx, upy), (downx, downy), (x0, x1, y0, y1) = up, down, pad
    n, c, h, w = x.shape
    fh, fw = f.shape
    g = f if flip_filter else f[::-1, ::-1]
    out_h = (h * upy + y0 + y1 - fh) // downy + 1
    out_w = (w * upx + x0 + x1 - fw) // downx + 1
    out = np.zeros((n, c, out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            for a in range(fh):
                k = i * downy + a - y0
                if k < 0 or k >= h * upy or k % upy:
                    continue
                for b in range(fw):
                    l = j * downx + b - x0
                    if l < 0 or l >= w * upx or l % upx:
                        continue
                    out[:, :, i, j] += g[a, b] * x[:, :, k // upy, l // upx]
    return out * gain


def depthwise_filter(x: torch.Tensor, f2d: torch.Tensor) -> torch.Tensor:
    """'Valid' true convolution of every channel with the 2-D filter."""
    c = x.shape[1]
    return F.conv2d(x, f2d.flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1), groups=c)


def naive_conv2d_resample(x: torch.Tensor, w: torch.Tensor, f2d: torch.Tensor, up: int, down: int, padding: int,
                          groups: int, flip_weight: bool) -> torch.Tensor:
    """NVIDIA's documented semantics, step by step: zero-insert (up), pad ONCE at the beginning
    (``padding`` plus the 4-tap filter's centring: (2, 1) for up=2, (1, 1) for down=2), then a
    valid convolution with ``w``, the valid FIR filter (gain 4 after upsampling), and decimation."""
    assert f2d.shape == (4, 4) and up in (1, 2) and down in (1, 2) and not (up == 2 and down == 2)
    n, c, h, wd = x.shape
    if up == 2:
        z = x.new_zeros(n, c, 2 * h, 2 * wd)
        z[:, :, ::2, ::2] = x
        x = z
    p0 = p1 = padding
    if up == 2:
        p0, p1 = p0 + 2, p1 + 1
    if down == 2:
        p0, p1 = p0 + 1, p1 + 1
    x = F.pad(x, [p0, p1, p0, p1])
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if up == 2:
        x = depthwise_filter(x, f2d) * 4
    if down == 2:
        x = depthwise_filter(x, f2d)[:, :, ::2, ::2]
    return x


# These tensors are tiny: a second intra-op thread only adds contention on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------
# bias_act (reference)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", sorted(ACTIVATION_FORMULAS))
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_matches_formulas(act: str, clamp: float | None) -> None:
    formula, alpha, gain = ACTIVATION_FORMULAS[act]
    assert ACTIVATIONS[act].def_alpha == pytest.approx(alpha) and ACTIVATIONS[act].def_gain == pytest.approx(gain)
    x, b = rand(2, 5, 3, 4, seed=1) * 2, rand(5, seed=2)
    expected = formula(x + b.reshape(1, -1, 1, 1), alpha) * gain
    if clamp is not None:
        expected = expected.clamp(-clamp, clamp)
        assert (expected.abs() == clamp).any(), "the clamp should bite somewhere in this test"
    torch.testing.assert_close(bias_act(x, b, act=act, clamp=clamp, impl="ref"), expected)


@pytest.mark.parametrize("shape,dim", [((4, 6), 1), ((2, 3, 6), -1), ((6, 2, 3), 0), ((2, 6, 3, 1), 1)])
def test_bias_act_bias_dim_and_explicit_alpha_gain(shape: tuple[int, ...], dim: int) -> None:
    x = rand(*shape, seed=3)
    b = rand(6, seed=4)
    bshape = [1] * len(shape)
    bshape[dim] = 6
    z = x + b.reshape(bshape)
    expected = torch.where(z > 0, z, 0.3 * z) * 2.5
    torch.testing.assert_close(bias_act(x, b, dim=dim, act="lrelu", alpha=0.3, gain=2.5, impl="ref"), expected)
    torch.testing.assert_close(bias_act(x, None, act="linear", impl="ref"), x)


def test_bias_act_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(torch.zeros(2, 3), act="gelu")
    with pytest.raises(ValueError, match="does not match"):
        bias_act(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="impl"):
        bias_act(torch.zeros(2, 3), impl="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown activation"):  # the reference resolves its arguments alike
        bias_act_ref(torch.zeros(2, 3), act="gelu")


@pytest.mark.parametrize("act", sorted(ACTIVATION_FORMULAS))
def test_bias_act_gradcheck(act: str) -> None:
    # Inputs stay away from the kinks (0 for relu-likes, the clamp limit) where gradcheck is ill-posed.
    x = (rand(2, 3, 4, seed=5) * 0.5 + torch.tensor([1.0, -1.0, 0.6]).reshape(1, 3, 1).double()).requires_grad_()
    b = rand(3, seed=6).mul(0.1).requires_grad_()
    clamp = 1.2 if act in ("lrelu", "linear") else None
    assert torch.autograd.gradcheck(lambda x, b: bias_act(x, b, act=act, clamp=clamp, impl="ref"), (x, b))
    if ACTIVATIONS[act].has_2nd_grad or act == "lrelu":
        assert torch.autograd.gradgradcheck(lambda x, b: bias_act(x, b, act=act, clamp=clamp, impl="ref"), (x, b))


# ------------------------------------------------------------------------------------------
# upfirdn2d and its helpers (reference)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("up,down,taps", [((1, 1), (1, 1), 4), ((2, 2), (1, 1), 4), ((1, 1), (2, 2), 5),
                                          ((3, 2), (2, 1), 5), ((2, 1), (1, 3), 3)])
def test_upfirdn2d_matches_scipy_per_axis(up: tuple[int, int], down: tuple[int, int], taps: int) -> None:
    x = rand(2, 3, 7, 9, seed=7)
    h = np.random.default_rng(8).standard_normal(taps)
    expected = scipy.signal.upfirdn(h, x.numpy(), up=up[0], down=down[0], axis=3)
    expected = scipy.signal.upfirdn(h, expected, up=up[1], down=down[1], axis=2)
    # scipy computes the full convolution of the zero-stuffed signal (without trailing zeros).
    pad = [taps - 1, taps - up[0], taps - 1, taps - up[1]]
    f1 = torch.from_numpy(h).float()
    separable = upfirdn2d(x, f1, up=up, down=down, padding=pad, impl="ref")
    full_2d = upfirdn2d(x, torch.outer(f1, f1), up=up, down=down, padding=pad, impl="ref")
    # x is float64, so the ops compute in float64: the deviation is the float32 rounding of the taps (f1), not
    # kernel rounding. Measured max |diff| / (1e-6 + 1e-6 |expected|) = 0.68, identical with the default kernels,
    # ONEDNN_MAX_CPU_ISA=SSE41/AVX, ATEN_CPU_CAPABILITY=default, 1 and 2 threads.
    np.testing.assert_allclose(separable.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(full_2d.numpy(), expected, rtol=1e-6, atol=1e-6)


UPFIRDN_CASES = [
    # (up, down, padding, filter shape, flip_filter, gain)
    (1, 1, 0, (3, 3), False, 1.0),
    (2, 1, [2, 1, 2, 1], (4, 4), False, 4.0),
    (1, 2, [1, 1, 1, 1], (4, 4), True, 1.0),
    ([2, 3], [1, 2], [1, -1, 3, 0], (3, 5), False, 1.5),
    (3, 2, [-2, 4, 0, -1], (5, 2), True, 1.0),
    (1, [3, 1], [2, 2], (2, 3), False, 0.5),
]


@pytest.mark.parametrize("up,down,padding,fshape,flip,gain", UPFIRDN_CASES)
def test_upfirdn2d_matches_direct_numpy(up, down, padding, fshape, flip, gain) -> None:
    from pti.stylegan2.ops.upfirdn2d import parse_padding, parse_scaling

    x = rand(2, 2, 6, 7, seed=9)
    f = rand(*fshape, seed=10).float()
    expected = numpy_upfirdn2d(x.numpy(), f.double().numpy(), parse_scaling(up), parse_scaling(down),
                               parse_padding(padding), flip, gain)
    got = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain, impl="ref")
    # float32 taps (f) on both sides: measured max |diff| 2.6e-7 (rel 2.3e-6), the same under every setting
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_upsample2d_box_filter_is_nearest_neighbour() -> None:
    x = rand(2, 3, 5, 6, seed=11)
    got = upsample2d(x, setup_filter([1, 1]), impl="ref")
    torch.testing.assert_close(got, F.interpolate(x, scale_factor=2, mode="nearest"))


def test_downsample2d_box_filter_is_average_pooling() -> None:
    x = rand(2, 3, 8, 6, seed=12)
    got = downsample2d(x, setup_filter([1, 1]), impl="ref")
    torch.testing.assert_close(got, F.avg_pool2d(x, 2))


@pytest.mark.parametrize("taps", [[1, 2, 1], [1, 4, 6, 4, 1], [[1, 2, 0], [0, 3, 1], [2, 0, 1]]])
def test_filter2d_is_same_padded_convolution(taps) -> None:
    x = rand(2, 3, 7, 8, seed=13)
    f = setup_filter(taps)  # 1-D lists become their (normalised) outer product
    c = x.shape[1]
    expected = F.conv2d(x, f.flip([0, 1]).double()[None, None].repeat(c, 1, 1, 1), padding="same", groups=c)
    torch.testing.assert_close(filter2d(x, f, impl="ref"), expected)


def test_filter2d_even_filter_pads_more_before_than_after() -> None:
    # For an even filter the extra pixel of padding goes before: [fw // 2, (fw - 1) // 2].
    x = rand(1, 2, 6, 5, seed=14)
    f = setup_filter([1, 3, 3, 1])
    expected = depthwise_filter(F.pad(x, [2, 1, 2, 1]), f)
    torch.testing.assert_close(filter2d(x, f, impl="ref"), expected)


def test_fir_padding_gives_exact_resampled_sizes() -> None:
    """upfirdn2d's output length ``(n * up + p0 + p1 - taps) // down + 1`` with fir_padding's padding."""
    for taps, factor, n in itertools.product(range(1, 9), range(1, 5), (12, 24)):
        for up, down, expected in ((factor, 1, n * factor), (1, factor, n // factor)):
            f = torch.ones(taps, taps + 1)  # fh = taps, fw = taps + 1
            x0, x1, y0, y1 = fir_padding(f, 0, up=up, down=down)
            assert (n * up + y0 + y1 - taps) // down + 1 == expected
            assert (n * up + x0 + x1 - (taps + 1)) // down + 1 == expected
        assert fir_padding(torch.ones(taps), [1, 2, 3, 4], up=2)[0] == 1 + (taps + 1) // 2
    with pytest.raises(ValueError, match="1-D or 2-D"):  # the reference checks the filter as the kernel wrapper does
        upfirdn2d_ref(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 1))


def test_separable_filter_equals_its_outer_product() -> None:
    x = rand(2, 2, 9, 9, seed=15)
    taps = [1, 2, 5, 7, 7, 5, 2, 1]
    f_sep = setup_filter(taps)  # >= 8 taps: kept separable
    f_2d = setup_filter(taps, separable=False)
    assert f_sep.ndim == 1 and f_2d.ndim == 2
    for op in (upsample2d, downsample2d, filter2d):
        # the taps are float32, normalised as one 2-D filter or as two 1-D ones: measured max |diff| 3.5e-8
        # (float64 default atol 1e-7), the same under every setting
        torch.testing.assert_close(op(x, f_sep, impl="ref"), op(x, f_2d, impl="ref"))


@pytest.mark.parametrize("up,down,padding", [(1, 1, [1, 2, 0, 1]), (2, 1, [2, 1, 1, 2]), (1, 2, [1, 1, 2, 0]),
                                             (2, 2, [-1, 2, 3, -1])])
def test_upfirdn2d_gradcheck(up: int, down: int, padding: list[int]) -> None:
    x = rand(1, 2, 5, 6, seed=16).requires_grad_()
    f = rand(3, 4, seed=17).float()
    fn = lambda x: upfirdn2d(x, f, up=up, down=down, padding=padding, gain=1.7, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ------------------------------------------------------------------------------------------
# conv2d_resample and modulated_conv2d (reference)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_matches_naive_composition(up: int, down: int, kernel: int, groups: int,
                                                   flip_weight: bool) -> None:
    x = rand(2, 4, 6, 6, seed=18)
    w = rand(6, 4 // groups, kernel, kernel, seed=19)
    f = setup_filter([1, 3, 3, 1])
    padding = kernel // 2
    got = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight,
                          impl="ref")
    expected = naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight)
    assert got.shape == (2, 6, 6 * up // down, 6 * up // down)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
def test_conv2d_resample_gradcheck(up: int, down: int) -> None:
    x = rand(1, 2, 4, 4, seed=20).requires_grad_()
    w = rand(3, 2, 3, 3, seed=21).requires_grad_()
    f = setup_filter([1, 3, 3, 1])
    fn = lambda x, w: conv2d_resample(x, w, f=f, up=up, down=down, padding=1, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w))


def per_sample_modulated_conv(x, weight, styles, noise, up, padding, f, demodulate, flip_weight):
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(naive_conv2d_resample(x[i:i + 1], w, f, up, 1, padding, 1, flip_weight))
    y = torch.cat(outs)
    return y + noise if noise is not None else y


@pytest.mark.parametrize("up,kernel", [(1, 3), (2, 3), (1, 1)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_fused_unfused_and_per_sample_loop_agree(up: int, kernel: int, demodulate: bool) -> None:
    x = rand(3, 4, 5, 5, seed=22)
    weight = rand(6, 4, kernel, kernel, seed=23)
    styles = rand(3, 4, seed=24) + 1
    res = 5 * up
    noise = rand(3, 1, res, res, seed=25) * 0.1
    f = setup_filter([1, 3, 3, 1])
    flip_weight = up == 1
    kwargs = dict(noise=noise, up=up, padding=kernel // 2, resample_filter=f, demodulate=demodulate,
                  flip_weight=flip_weight, impl="ref")
    fused = modulated_conv2d(x, weight, styles, fused_modconv=True, **kwargs)
    unfused = modulated_conv2d(x, weight, styles, fused_modconv=False, **kwargs)
    loop = per_sample_modulated_conv(x, weight, styles, noise, up, kernel // 2, f, demodulate, flip_weight)
    assert fused.shape == (3, 6, res, res)
    torch.testing.assert_close(fused, loop)
    torch.testing.assert_close(unfused, loop)


def test_modulated_conv2d_gradcheck() -> None:
    x = rand(2, 2, 4, 4, seed=26).requires_grad_()
    weight = rand(3, 2, 3, 3, seed=27).requires_grad_()
    styles = (rand(2, 2, seed=28) + 1.5).requires_grad_()
    f = setup_filter([1, 3, 3, 1])
    for fused in (True, False):
        fn = lambda x, w, s: modulated_conv2d(x, w, s, up=2, padding=1, resample_filter=f, flip_weight=False,  # noqa: E731
                                              fused_modconv=fused, impl="ref")
        assert torch.autograd.gradcheck(fn, (x, weight, styles))


# ------------------------------------------------------------------------------------------
# Dispatch: impl='auto' on CPU, remembered build failures, auto_impl
# ------------------------------------------------------------------------------------------
def test_auto_on_cpu_uses_reference_without_warning(tiny_generator) -> None:
    x = rand(1, 3, 8, 8, seed=29, dtype=torch.float32)
    f = setup_filter([1, 3, 3, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(bias_act(x, torch.ones(3), act="lrelu"), bias_act_ref(x, torch.ones(3), act="lrelu"))
        torch.testing.assert_close(upsample2d(x, f), upsample2d(x, f, impl="ref"))
        img = tiny_generator(torch.zeros(1, tiny_generator.z_dim), None, noise_mode="const")
    assert img.shape == (1, 3, 16, 16)


def test_impl_cuda_on_cpu_tensor_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        bias_act(torch.zeros(2, 3), impl="cuda")


@pytest.fixture
def fresh_backend(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A backend that has not tried to build yet, whose compiler always fails (counted)."""
    monkeypatch.setattr(_backend, "_plugin", None)
    monkeypatch.setattr(_backend, "_build_error", None)
    monkeypatch.setattr(_backend, "_warned", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls = types.SimpleNamespace(count=0)

    def failing_compile(build_dir=None, verbose=False):
        calls.count += 1
        raise RuntimeError("Error building extension 'pti_stylegan2_ops'\nfoo.cu(3): error: identifier undefined\n"
                           "ninja: build stopped: subcommand failed.")

    monkeypatch.setattr(_backend, "compile_extension", failing_compile)
    return calls


# Dispatch only looks at x.is_cuda and x.device; a real CUDA tensor cannot be made on a machine without one.
FAKE_CUDA_TENSOR = types.SimpleNamespace(device=torch.device("cuda"), is_cuda=True)


def test_failed_build_is_remembered_and_warned_once(fresh_backend: types.SimpleNamespace) -> None:
    with pytest.warns(UserWarning, match="CUDA ops unavailable") as record:
        assert _backend.use_cuda("auto", FAKE_CUDA_TENSOR) is False
        assert _backend.use_cuda("auto", FAKE_CUDA_TENSOR) is False
    assert len([w for w in record if "CUDA ops unavailable" in str(w.message)]) == 1
    assert "identifier undefined" in str(record[0].message)  # the warning says why
    assert fresh_backend.count == 1
    with pytest.raises(RuntimeError, match="identifier undefined"):
        _backend.use_cuda("cuda", FAKE_CUDA_TENSOR)
    assert fresh_backend.count == 1  # not retried


def test_auto_impl_context_overrides_auto_only(fresh_backend: types.SimpleNamespace) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _backend.auto_impl("ref"):
            assert _backend.use_cuda("auto", FAKE_CUDA_TENSOR) is False
        assert fresh_backend.count == 0  # 'ref' never tries to build
    with _backend.auto_impl("cuda"):
        with pytest.raises(RuntimeError, match="identifier undefined"):
            _backend.use_cuda("auto", FAKE_CUDA_TENSOR)
    with pytest.raises(ValueError):
        with _backend.auto_impl("fastest"):  # type: ignore[arg-type]
            pass


def test_default_build_dir_is_versioned_and_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PTI_EXTENSIONS_DIR", raising=False)
    default = _backend.default_build_dir()
    assert default.parent == Path.home() / ".cache" / "pti" / "extensions"
    assert torch.__version__.split("+")[0] in default.name
    monkeypatch.setenv("PTI_EXTENSIONS_DIR", str(tmp_path))
    assert _backend.default_build_dir() == tmp_path
    assert {Path(s).name for s in _backend.source_files()} >= {"ops.cpp", "bias_act.cu", "upfirdn2d.cu"}


def test_adjoint_spec_restores_input_size() -> None:
    from pti.stylegan2.ops._cuda_ops import adjoint_spec
    from pti.stylegan2.ops._reference import UpFirDnSpec

    for up, down, pads in itertools.product([1, 2, 3], [1, 2], [(0, 0), (2, 1), (-1, 3)]):
        spec = UpFirDnSpec(up, up, down, down, pads[0], pads[1], pads[1], pads[0], False, 1.0)
        f = torch.ones(4, 3)
        x = torch.zeros(1, 1, 7, 8)
        y = upfirdn2d_ref(x, f, up=up, down=down, padding=[pads[0], pads[1], pads[1], pads[0]])
        back = adjoint_spec(spec, f, (7, 8), tuple(y.shape[2:]))
        dx = upfirdn2d_ref(y, f, up=[back.up_x, back.up_y], down=[back.down_x, back.down_y],
                           padding=[back.pad_x0, back.pad_x1, back.pad_y0, back.pad_y1], flip_filter=True)
        assert dx.shape == x.shape


# ------------------------------------------------------------------------------------------
# The kernels' per-element code on the CPU (slow: compiles tests/ops_host_harness.cpp)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host_kernels():
    from torch.utils import cpp_extension

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("needs a C++ compiler (c++ / g++) to build tests/ops_host_harness.cpp")
    if not cpp_extension.is_ninja_available():
        pytest.skip("needs ninja to build tests/ops_host_harness.cpp")
    build_dir = _backend.default_build_dir() / "host_harness"
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name="pti_ops_host_harness",
        sources=[str(Path(__file__).with_name("ops_host_harness.cpp"))],
        extra_include_paths=[str(_backend.CSRC)],
        extra_cflags=["-O2"],
        build_directory=str(build_dir),
    )


@pytest.fixture
def kernels_on_cpu(host_kernels, monkeypatch: pytest.MonkeyPatch):
    """_cuda_ops' autograd wrappers running the harness (the kernels' code on CPU tensors)."""
    monkeypatch.setattr(_cuda_ops, "kernels", lambda: host_kernels)
    return host_kernels


@pytest.mark.slow
@pytest.mark.parametrize("up,down,padding,fshape,flip,gain", UPFIRDN_CASES)
def test_kernel_code_upfirdn2d_matches_reference(host_kernels, up, down, padding, fshape, flip, gain) -> None:
    from pti.stylegan2.ops.upfirdn2d import parse_padding, parse_scaling

    x = rand(2, 3, 6, 7, seed=30)
    f = rand(*fshape, seed=31).float()
    (upx, upy), (downx, downy) = parse_scaling(up), parse_scaling(down)
    x0, x1, y0, y1 = parse_padding(padding)
    for dtype in (torch.float64, torch.float32):
        got = host_kernels.upfirdn2d(x.to(dtype), f * gain, upx, upy, downx, downy, x0, x1, y0, y1, flip)
        expected = upfirdn2d_ref(x.to(dtype), f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        assert got.dtype == dtype
        # float32: the harness's loop vs the reference's convolution kernel, measured max |diff| 1.9e-6 (rel 2.4e-4)
        # with the default kernels and 0 with ATEN_CPU_CAPABILITY=default + ONEDNN_MAX_CPU_ISA=SSE41, against the
        # float32 defaults (atol 1e-5, rtol 1.3e-6); float64 and the bias_act tests below: <= 4.4e-16
        torch.testing.assert_close(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_kernel_code_bias_act_matches_reference(host_kernels, act: str) -> None:
    spec = ACTIVATIONS[act]
    x, b, dy = rand(2, 4, 5, seed=32) * 3, rand(4, seed=33), rand(2, 4, 5, seed=34)
    x[0, 0, :3] = torch.tensor([0.0, 30.0, -30.0], dtype=torch.float64)  # kink and saturation
    for clamp in (None, 0.8):
        c = -1.0 if clamp is None else clamp
        expected = bias_act_ref(x, b, act=act, clamp=clamp)
        got = host_kernels.bias_act(x, b, 1, spec.cuda_ref, spec.def_alpha, spec.def_gain, c)
        torch.testing.assert_close(got, expected)
        xr = x.clone().requires_grad_()
        (expected_dx,) = torch.autograd.grad(bias_act_ref(xr, b, act=act, clamp=clamp), xr, dy)
        got_dx = host_kernels.bias_act_grad(dy, x, b, 1, spec.cuda_ref, False, spec.def_alpha, spec.def_gain, c)
        torch.testing.assert_close(got_dx, expected_dx)
        if act in ("linear", "relu", "lrelu"):
            # Slope from the output (no bias with it); exact ties with the clamp limit differ by design.
            got_dx = host_kernels.bias_act_grad(dy, expected, None, 1, spec.cuda_ref, True, spec.def_alpha,
                                                spec.def_gain, c)
            torch.testing.assert_close(got_dx, expected_dx)


@pytest.mark.slow
@pytest.mark.parametrize("up,down,padding,fshape,flip,gain", UPFIRDN_CASES + [(2, 1, [2, 1, 2, 1], (4,), False, 4.0),
                                                                          (1, 2, [3, 3, 3, 3], (8,), True, 1.0)])
def test_upfirdn2d_wrapper_values_and_gradients_on_kernel_code(kernels_on_cpu, up, down, padding, fshape, flip,
                                                               gain) -> None:
    x = rand(2, 2, 6, 7, seed=35).requires_grad_()
    f = rand(*fshape, seed=36).float()
    kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    got = _cuda_ops.upfirdn2d_cuda(x, f, **kwargs)
    expected = upfirdn2d_ref(x, f, **kwargs)
    torch.testing.assert_close(got, expected)
    fn = lambda x: _cuda_ops.upfirdn2d_cuda(x, f, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.slow
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_wrapper_values_and_gradients_on_kernel_code(kernels_on_cpu, act: str) -> None:
    x = (rand(2, 3, 4, seed=37) * 0.5 + torch.tensor([1.0, -1.0, 0.6]).reshape(1, 3, 1).double()).requires_grad_()
    b = rand(3, seed=38).mul(0.1).requires_grad_()
    clamp = 1.2 if act in ("lrelu", "linear", "swish") else None
    fn = lambda x, b: _cuda_ops.bias_act_cuda(x, b, act=act, clamp=clamp)  # noqa: E731
    torch.testing.assert_close(fn(x, b), bias_act_ref(x, b, act=act, clamp=clamp))
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    # Negative gain and alpha: the slope can no longer be read from the output's sign.
    fn2 = lambda x, b: _cuda_ops.bias_act_cuda(x, b, act=act, alpha=-0.3, gain=-1.5)  # noqa: E731
    torch.testing.assert_close(fn2(x, b), bias_act_ref(x, b, act=act, alpha=-0.3, gain=-1.5))
    assert torch.autograd.gradcheck(fn2, (x, b))


@pytest.mark.slow
def test_bias_act_wrapper_bias_gradient_of_a_1d_input(kernels_on_cpu) -> None:
    """x of shape [C] with a bias along dim 0: the bias gradient has shape [C] (was a scalar: sum over [] sums
    every dimension). Found by the ops clean-up of issue 33."""
    x = rand(5, seed=39).requires_grad_()
    b = rand(5, seed=40).requires_grad_()
    fn = lambda x, b: _cuda_ops.bias_act_cuda(x, b, act="lrelu", dim=0)  # noqa: E731
    torch.testing.assert_close(fn(x, b), bias_act_ref(x, b, act="lrelu", dim=0))
    assert torch.autograd.gradcheck(fn, (x, b))


# ------------------------------------------------------------------------------------------
# Building the real CUDA extension (slow, opt-in: 1.5-3 min on 2 cores)
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cuda_extension_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    if os.environ.get("PTI_TEST_CUDA_BUILD") != "1":
        pytest.skip("compiling the CUDA extension takes minutes; set PTI_TEST_CUDA_BUILD=1 to run this test")
    if shutil.which("nvcc") is None and not (cpp_extension.CUDA_HOME and Path(cpp_extension.CUDA_HOME, "bin", "nvcc").exists()):
        pytest.skip("needs nvcc (the CUDA toolkit) to compile the extension")
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    module = _backend.compile_extension()
    assert {"bias_act", "bias_act_grad", "upfirdn2d"} <= set(dir(module))


# ------------------------------------------------------------------------------------------
# Reference vs CUDA kernels (GPU)
# ------------------------------------------------------------------------------------------
# Not measured on a GPU yet (issue 14's sessions had none; tools/device_check.sh runs these tests and
# tools/selfcheck_spread.py --kernels cuda when one is lent). The reasoning, in units of each dtype's eps
# (float32 1.2e-7, float16 9.8e-4): float64 keeps assert_close's float64 rtol 1e-7 (fast-math does not touch
# double precision); float32 1e-4 is ~800 eps, room for --use_fast_math's approximate exp/tanh and
# other summation orders of up to 8 taps per axis; float16 1e-2 is ~10 eps of its 11-bit mantissa. ``atol`` grows
# with ``scale`` (sums of many terms: bias gradients, 4x4 upsampling gain) and the largest magnitude. The
# kernels' own per-element code on the CPU (the slow tests above) meets the much tighter defaults.
TOLERANCES = {torch.float64: dict(rtol=1e-7, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-4),
              torch.float16: dict(rtol=1e-2, atol=1e-2)}


def assert_close_dtype(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    """Close within the dtype's tolerance; ``atol`` grows with ``scale`` and the largest expected magnitude."""
    tol = TOLERANCES[dtype]
    magnitude = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(got.double(), expected.double(), rtol=tol["rtol"], atol=tol["atol"] * scale * magnitude)


@pytest.fixture(scope="module")
def cuda_kernels():
    return _backend.build_extension()  # fails the test (not skips) when the kernels do not build


@pytest.mark.gpu
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_gpu_bias_act_matches_reference(cuda_kernels, act: str, dtype: torch.dtype) -> None:
    for shape, dim, clamp in [((3, 7, 5, 6), 1, None), ((3, 7, 5, 6), 1, 0.5), ((4, 9), 1, 1.0), ((2, 5, 7), -1, None)]:
        x = (rand(*shape, seed=40, device="cuda") * 2).to(dtype).requires_grad_()
        b = rand(shape[dim], seed=41, device="cuda").to(dtype).requires_grad_()
        dy = rand(*shape, seed=42, device="cuda").to(dtype)
        outs = {}
        for impl in ("ref", "cuda"):
            y = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl=impl)
            dx, db = torch.autograd.grad(y, (x, b), dy)
            outs[impl] = (y, dx, db)
        assert outs["cuda"][0].dtype == dtype
        (y_cuda, dx_cuda, db_cuda), (y_ref, dx_ref, db_ref) = outs["cuda"], outs["ref"]
        assert_close_dtype(y_cuda, y_ref, dtype)
        if clamp is not None and dtype == torch.float16:
            # The kernel reads the clamp mask from the saved output: a value computed just below the
            # limit that rounds onto it in float16 counts as clamped, the half-precision reference may
            # disagree. Compare away from the limit (db, the sum of dx, is checked in float32/64).
            keep = (y_ref.double().abs() - clamp).abs() > 1e-2 * clamp
            assert_close_dtype(dx_cuda[keep], dx_ref[keep], dtype)
        else:
            assert_close_dtype(dx_cuda, dx_ref, dtype)
            assert_close_dtype(db_cuda, db_ref, dtype, scale=30)


@pytest.mark.gpu
@pytest.mark.parametrize("act", ["lrelu", "linear", "tanh", "swish"])
def test_gpu_bias_act_second_order_matches_reference(cuda_kernels, act: str) -> None:
    x = rand(2, 4, 5, 5, seed=43, device="cuda").requires_grad_()
    b = rand(4, seed=44, device="cuda").requires_grad_()
    grads = {}
    for impl in ("ref", "cuda"):
        y = bias_act(x, b, act=act, clamp=1.5 if act == "lrelu" else None, impl=impl)
        (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)  # R1-style penalty
        grads[impl] = torch.autograd.grad(dx.square().sum(), (x, b))
    for got, expected in zip(grads["cuda"], grads["ref"]):
        assert_close_dtype(got, expected, torch.float64)


@pytest.mark.gpu
@pytest.mark.parametrize("up,down,padding,fshape,flip,gain", UPFIRDN_CASES + [(2, 1, [2, 1, 2, 1], (4,), False, 4.0),
                                                                          (1, 2, [3, 3, 3, 3], (8,), True, 1.0),
                                                                          (1, 1, [1, 0, 0, 1], None, False, 2.0)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_gpu_upfirdn2d_matches_reference(cuda_kernels, up, down, padding, fshape, flip, gain, dtype) -> None:
    x = rand(2, 3, 17, 12, seed=45, device="cuda").to(dtype).requires_grad_()
    f = rand(*fshape, seed=46, device="cuda").float().abs() / 4 if fshape is not None else None
    kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    outs = {}
    for impl in ("ref", "cuda"):
        y = upfirdn2d(x, f, impl=impl, **kwargs)
        dy = torch.ones_like(y).mul_(0.5)
        (dx,) = torch.autograd.grad(y, x, dy)
        outs[impl] = (y, dx)
    for got, expected in zip(outs["cuda"], outs["ref"]):
        assert got.shape == expected.shape
        assert_close_dtype(got, expected, dtype, scale=4)
    if dtype == torch.float64:  # gradients of every order run on the kernel
        x64 = rand(1, 2, 6, 5, seed=47, device="cuda").requires_grad_()
        fn = lambda x: upfirdn2d(x, f, impl="cuda", **kwargs)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x64,))
        assert torch.autograd.gradgradcheck(fn, (x64,))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_gpu_resampling_helpers_match_reference(cuda_kernels, dtype: torch.dtype) -> None:
    x = rand(2, 8, 16, 16, seed=48, device="cuda").to(dtype).requires_grad_()
    for taps in ([1, 3, 3, 1], [1, 2, 5, 7, 7, 5, 2, 1]):
        f = setup_filter(taps, device="cuda")
        for op in (upsample2d, downsample2d, filter2d):
            outs = {}
            for impl in ("ref", "cuda"):
                y = op(x, f, impl=impl)
                (dx,) = torch.autograd.grad(y.float().square().sum(), x)
                outs[impl] = (y, dx)
            for got, expected in zip(outs["cuda"], outs["ref"]):
                assert_close_dtype(got, expected, dtype, scale=10)


@pytest.mark.gpu
@pytest.mark.parametrize("up,down,kernel", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (2, 1, 1), (1, 2, 1)])
def test_gpu_conv2d_resample_and_modulated_conv_match_reference(cuda_kernels, up: int, down: int, kernel: int) -> None:
    x = rand(2, 8, 8, 8, seed=49, device="cuda", dtype=torch.float32).requires_grad_()
    w = (rand(6, 8, kernel, kernel, seed=50, device="cuda", dtype=torch.float32) / 8).requires_grad_()
    styles = (rand(2, 8, seed=51, device="cuda", dtype=torch.float32) + 1).requires_grad_()
    f = setup_filter([1, 3, 3, 1], device="cuda")
    outs = {}
    for impl in ("ref", "cuda"):
        y1 = conv2d_resample(x, w, f=f, up=up, down=down, padding=kernel // 2, flip_weight=up == 1, impl=impl)
        y2 = modulated_conv2d(x, w, styles, up=up, down=down, padding=kernel // 2, resample_filter=f,
                              flip_weight=up == 1, impl=impl)
        grads = torch.autograd.grad(y1.square().sum() + y2.square().sum(), (x, w, styles))
        outs[impl] = (y1, y2, *grads)
    for got, expected in zip(outs["cuda"], outs["ref"]):
        assert_close_dtype(got, expected, torch.float32, scale=10)


@pytest.mark.gpu
def test_gpu_tiny_generator_ref_vs_cuda() -> None:
    from conftest import make_tiny_generator

    G = make_tiny_generator(resolution=32).cuda()
    z = rand(2, G.z_dim, seed=52, device="cuda", dtype=torch.float32)
    results = {}
    for impl in ("ref", "cuda"):
        with _backend.auto_impl(impl):
            ws = G.mapping(z, None).detach().requires_grad_()
            img = G.synthesis(ws, noise_mode="const")
            (dws,) = torch.autograd.grad(img.square().sum(), ws, create_graph=True)
            G.zero_grad(set_to_none=True)
            dws.square().sum().backward()  # second order through upfirdn2d and bias_act (R1-style)
            weight_grad = G.synthesis.b32.conv1.weight.grad.clone()
        results[impl] = (img.detach(), dws.detach(), weight_grad)
    for got, expected in zip(results["cuda"], results["ref"]):
        assert_close_dtype(got, expected, torch.float32, scale=10)
    assert _backend._plugin is not None  # the CUDA run really used the kernels


@pytest.mark.gpu
def test_gpu_channels_last_blocks_render_the_same_image() -> None:
    """Every synthesis block in NHWC with fp16 layers, as `pti.fast.execution.channels_last` sets them (the
    bench path fp16-layers+channels-last): the constant-input block too. Its 3-D const once reached
    ``.to(memory_format=channels_last)``, which raises (seen on an H200, 2026-11-30; CPU runs never take
    this path: channels_last is honoured on CUDA only)."""
    from conftest import make_tiny_generator

    G = make_tiny_generator(resolution=32, num_fp16_res=4, conv_clamp=256).cuda()
    ws = G.mapping(rand(3, G.z_dim, seed=53, device="cuda", dtype=torch.float32), None)
    images = {}
    for flag in (False, True):
        for block in G.synthesis.blocks():
            block.channels_last = flag
        with torch.no_grad():
            images[flag] = G.synthesis(ws, noise_mode="const", force_fp32=False)
    assert images[True].dtype == torch.float32 and torch.isfinite(images[True]).all()
    # Same arithmetic in another memory order; fp16 convolutions may pick other algorithms. Bound: 2e-2 of
    # the image's range [-1, 1] (tiny generator, 4 fp16 blocks), ~20x the fp16 unit roundoff of a few layers;
    # measured 3.4e-3 on an H200 (2026-11-30, torch 2.11, CUDA 13.0).
    err = (images[True] - images[False]).abs().max().item()
    print(f"channels_last vs contiguous, fp16 blocks: max |diff| {err:.2e}")
    assert err <= 2e-2


# ------------------------------------------------------------------------------------------
# `pti bench-ops`
# ------------------------------------------------------------------------------------------
def test_bench_ops_cpu_prints_reference_timings(capsys: pytest.CaptureFixture[str]) -> None:
    from pti.cli import main

    assert main(["bench-ops", "--device", "cpu", "--iters", "1", "--warmup", "0", "--resolution", "8"]) == 0
    out = capsys.readouterr().out
    assert "reference timings only" in out and "ref ms" in out and "ref/cuda" not in out
    for case in ("bias_act lrelu fwd+bwd", "upsample2d", "downsample2d", "filter2d", "conv2d_resample",
                 "modulated_conv2d", "generator 8x8 config-f fwd+bwd"):
        assert case in out
    timings = [float(line.split()[-1]) for line in out.splitlines() if line.rstrip().endswith(tuple("0123456789"))
               and (" fwd" in line)]
    assert len(timings) == 18 and all(t > 0 for t in timings)


@pytest.mark.gpu
def test_bench_ops_gpu_prints_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    from pti.cli import main

    assert main(["bench-ops", "--iters", "1", "--warmup", "0", "--resolution", "32", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert torch.cuda.get_device_name() in out and "ref/cuda" in out
    assert "generator 32x32 config-f fwd+bwd" in out
    ratios = [float(tok[:-1]) for line in out.splitlines() for tok in line.split() if tok.endswith("x")
              and tok[:-1].replace(".", "", 1).isdigit()]
    assert len(ratios) == 18 and all(r > 0 for r in ratios)
