#!/usr/bin/env python3
"""Measure how far the StyleGAN2 kernels land from the float64 reference, beside the reference
op in the same dtype: the spread that ``pti/stylegan2/ops/_selfcheck.py``'s pass rule rests on.

    python tools/selfcheck_spread.py --kernels harness   # the kernels' code on the CPU (compiles
                                                         # tests/ops_host_harness.cpp, ~1 min once)
    python tools/selfcheck_spread.py --kernels cuda      # the compiled CUDA kernels (needs a GPU)

For every activation (with and without clamp, default and negative gain), the StyleGAN2
upfirdn2d cases and every dtype, it runs the self-check and prints, per compared tensor, the
kernel's error, the reference's error and the margin the kernel needed in units of the
compute dtype's eps: ``(err_kernel - ERROR_RATIO * err_ref) / eps``, which the pass rule allows
up to ``FLOOR_EPS``. ``--json FILE`` writes every verdict.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pti.stylegan2.ops import _backend, _cuda_ops, _selfcheck  # noqa: E402
from pti.stylegan2.ops._reference import ACTIVATIONS  # noqa: E402

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# (up, down, padding, filter shape, flip, gain): tests/test_ops.py's cases and StyleGAN2's own
UPFIRDN_CASES = [
    (1, 1, 0, (3, 3), False, 1.0), (2, 1, [2, 1, 2, 1], (4, 4), False, 4.0), (1, 2, [1, 1, 1, 1], (4, 4), True, 1.0),
    ([2, 3], [1, 2], [1, -1, 3, 0], (3, 5), False, 1.5), (3, 2, [-2, 4, 0, -1], (5, 2), True, 1.0),
    (1, [3, 1], [2, 2], (2, 3), False, 0.5), (2, 1, [2, 1, 2, 1], (4,), False, 4.0), (1, 2, [3, 3, 3, 3], (8,), True, 1.0),
    (1, 1, [1, 0, 0, 1], None, False, 2.0),
    (1, 1, [2, 1, 2, 1], (4, 4), False, 4.0),   # conv2d_resample's filter after a transposed conv (up=2)
    (1, 2, [1, 1, 1, 1], (4, 4), False, 1.0),   # downsample2d
]


def harness_kernels():
    from torch.utils import cpp_extension

    build_dir = _backend.default_build_dir() / "host_harness"
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(name="pti_ops_host_harness", sources=[str(ROOT / "tests" / "ops_host_harness.cpp")],
                              extra_include_paths=[str(_backend.CSRC)], extra_cflags=["-O2"],
                              build_directory=str(build_dir))


def sweep(device: torch.device) -> list[_selfcheck.Verdict]:
    verdicts = []
    for dtype in DTYPES:
        for act, spec in sorted(ACTIVATIONS.items()):
            for clamp in (None, 0.8, 256.0):
                for gain in (None, -1.5):
                    for ndim, dim in ((4, 1), (2, 1), (3, 2)):
                        verdicts.append(_selfcheck.check_bias_act(dtype, device, ndim, dim, act, None, gain, clamp,
                                                                  has_bias=ndim != 3))
        for up, down, padding, f_shape, flip, gain in UPFIRDN_CASES:
            verdicts.append(_selfcheck.check_upfirdn2d(dtype, device, f_shape, up, down, padding, flip, gain))
    return verdicts


def margin_eps(v: _selfcheck.Verdict, name: str) -> float:
    e_kernel, e_ref, _ = v.errors[name]
    eps = torch.finfo(torch.float64 if v.dtype == "float64" else torch.float32).eps
    return (e_kernel - _selfcheck.ERROR_RATIO * e_ref) / eps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", choices=["harness", "cuda"], required=True)
    parser.add_argument("--json", default=None, help="write every verdict to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.kernels == "harness":
        module = harness_kernels()
        _cuda_ops.kernels = lambda: module  # the autograd wrappers now run the kernels' code on CPU tensors
        device = torch.device("cpu")
    else:
        _backend.build_extension()
        device = torch.device("cuda")
    verdicts = sweep(device)
    worst: dict[str, tuple[float, float, str]] = {}
    for v in verdicts:
        for name, (e_kernel, e_ref, _) in v.errors.items():
            ratio = e_kernel / e_ref if e_ref > 0 else (0.0 if e_kernel == 0 else math.inf)
            m = margin_eps(v, name)
            key = v.dtype
            prev = worst.get(key, (-math.inf, -math.inf, ""))
            worst[key] = (max(prev[0], ratio if math.isfinite(ratio) else prev[0]), max(prev[1], m),
                          prev[2] if prev[1] >= m or m <= 0 else f"{v.op} {name} ({v.flags})")
    failed = [v for v in verdicts if not v.ok]
    print(f"{len(verdicts)} checks on {device} ({args.kernels} kernels), {len(failed)} failed; "
          f"ERROR_RATIO={_selfcheck.ERROR_RATIO}, FLOOR_EPS={_selfcheck.FLOOR_EPS}")
    print("| dtype | max err_kernel / err_ref (err_ref > 0) | max (err_kernel - ratio * err_ref) / eps | "
          "where that margin was largest (if > 0) |")
    print("|---|---:|---:|---|")
    for dtype, (ratio, m, where) in worst.items():
        print(f"| {dtype} | {ratio:.2f} | {m:.1f} | {where or '-'} |")
    for v in failed:
        print(f"FAILED {v.op} {v.dtype} ({v.flags}): {v.error}")
    seconds = sorted(v.seconds for v in verdicts)
    print(f"check time: median {seconds[len(seconds) // 2] * 1e3:.1f} ms, max {seconds[-1] * 1e3:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps([v.as_dict() for v in verdicts], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
