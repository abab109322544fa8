"""``pti bench-ops``: time StyleGAN2's ops and a generator, reference vs CUDA kernels.

On a CUDA device every case runs with ``impl='ref'`` and ``impl='cuda'`` in the same process
and the table shows both times and their ratio (ref / cuda: > 1 means the kernels are faster),
plus the largest difference between the two outputs as a sanity check. Without a CUDA device
it prints the reference timings on smaller inputs (a 64x64 generator by default).
``--compile-only`` just builds the CUDA extension (no GPU needed when TORCH_CUDA_ARCH_LIST is set).
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

from pti.commands._config_args import bounded

HELP = "time the StyleGAN2 ops and a config-f generator: reference vs CUDA kernels (ratios) on GPU, reference on CPU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="'auto' (cuda if available, else cpu), 'cuda', 'cuda:1' or 'cpu'")
    parser.add_argument("--resolution", type=bounded(int, ge=4), default=None,
                        help="generator output side in pixels (default: 1024 on GPU, 64 on CPU)")
    parser.add_argument("--batch", type=bounded(int, ge=1), default=None, help="batch size (default: 4 on GPU, 1 on CPU)")
    parser.add_argument("--iters", type=bounded(int, ge=1), default=None, help="timed runs per case; the median is shown "
                        "(default: 20 on GPU, 5 on CPU)")
    parser.add_argument("--warmup", type=bounded(int, ge=0), default=2, help="untimed runs before timing each case")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="dtype of the op inputs (the generator always runs in its own precision)")
    parser.add_argument("--skip-generator", action="store_true", help="time the single ops only")
    parser.add_argument("--compile-only", action="store_true",
                        help="only build (or load from the cache) the CUDA extension and report how long it took")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output when building")


Case = tuple[str, list[int], Callable[[Any, str], Any]]


def _op_cases(device: Any, dtype: Any, batch: int, small: bool) -> list[Case]:
    """(label, input shape, fn(x, impl) -> y) for the ops as the 1024x1024 generator uses them."""
    import torch

    from pti.stylegan2.ops import (bias_act, conv2d_resample, downsample2d, filter2d, modulated_conv2d,
                                   setup_filter, upsample2d)

    g = torch.Generator(device="cpu").manual_seed(0)
    cdiv, sdiv = (4, 2) if small else (1, 1)  # smaller channels and maps on CPU

    def c(n: int) -> int:
        return max(n // cdiv, 3)

    def s(n: int) -> int:
        return max(n // sdiv, 8)

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    f = setup_filter([1, 3, 3, 1], device=device)
    bias = randn(c(128))
    w_up = randn(c(128), c(256), 3, 3) / (c(256) * 9) ** 0.5
    w_mod = torch.randn(c(256), c(256), 3, 3, generator=g).to(device)
    styles = torch.randn(batch, c(256), generator=g).to(device) + 1
    return [
        ("bias_act lrelu", [batch, c(128), s(256), s(256)],
         lambda x, impl: bias_act(x, bias, act="lrelu", impl=impl)),
        ("bias_act lrelu clamp=256", [batch, c(128), s(256), s(256)],
         lambda x, impl: bias_act(x, bias, act="lrelu", clamp=256, impl=impl)),
        ("upsample2d [1,3,3,1] (rgb skip)", [batch, 3, s(512), s(512)],
         lambda x, impl: upsample2d(x, f, impl=impl)),
        ("upsample2d [1,3,3,1]", [batch, c(128), s(128), s(128)],
         lambda x, impl: upsample2d(x, f, impl=impl)),
        ("filter2d [1,3,3,1]", [batch, c(128), s(256), s(256)],
         lambda x, impl: filter2d(x, f, impl=impl)),
        ("downsample2d [1,3,3,1]", [batch, c(128), s(256), s(256)],
         lambda x, impl: downsample2d(x, f, impl=impl)),
        ("conv2d_resample 3x3 up=2", [batch, c(256), s(64), s(64)],
         lambda x, impl: conv2d_resample(x, w_up, f=f, up=2, padding=1, flip_weight=False, impl=impl)),
        ("modulated_conv2d 3x3 up=2", [batch, c(256), s(64), s(64)],
         lambda x, impl: modulated_conv2d(x, w_mod.to(x.dtype), styles.to(x.dtype), up=2, padding=1,
                                          resample_filter=f, flip_weight=False, impl=impl)),
    ]


def _timer(device: Any) -> Callable[[Callable[[], Any], int, int], float]:
    import statistics
    import time

    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def time_ms(fn: Callable[[], Any], iters: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000.0

    return time_ms


def _row(label: str, shape: str, times: dict[str, float], diff: float | None, impls: list[str]) -> str:
    cols = [f"{label:<40s}", f"{shape:<22s}"] + [f"{times[i]:>10.3f}" for i in impls]
    if len(impls) == 2:
        cols.append(f"{times['ref'] / times['cuda']:>9.2f}x")
        cols.append(f"{diff:>10.2e}" if diff is not None else f"{'':>10s}")
    return " ".join(cols)


def _header(impls: list[str]) -> str:
    cols = [f"{'case':<40s}", f"{'input shape':<22s}"] + [f"{i + ' ms':>10s}" for i in impls]
    if len(impls) == 2:
        cols += [f"{'ref/cuda':>10s}", f"{'max |diff|':>10s}"]
    return " ".join(cols)


def _bench_ops(device: Any, dtype: Any, batch: int, iters: int, warmup: int, impls: list[str]) -> None:
    import torch

    time_ms = _timer(device)
    print(_header(impls))
    for label, shape, op in _op_cases(device, dtype, batch, small=device.type != "cuda"):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
        x.requires_grad_(True)
        outputs = {}
        fwd, fwd_bwd = {}, {}
        for impl in impls:
            with torch.no_grad():
                outputs[impl] = op(x, impl).float()
            dy = torch.randn_like(outputs[impl]).to(dtype)

            def forward(impl: str = impl) -> None:
                with torch.no_grad():
                    op(x, impl)

            def forward_backward(impl: str = impl, dy: Any = dy) -> None:
                x.grad = None
                op(x, impl).backward(dy)

            fwd[impl] = time_ms(forward, iters, warmup)
            fwd_bwd[impl] = time_ms(forward_backward, iters, warmup)
        diff = (outputs["ref"] - outputs["cuda"]).abs().max().item() if len(impls) == 2 else None
        shape_text = "[" + ",".join(str(v) for v in shape) + "]"
        print(_row(label + " fwd", shape_text, fwd, diff, impls), flush=True)
        print(_row(label + " fwd+bwd", shape_text, fwd_bwd, None, impls), flush=True)


def _bench_generator(device: Any, resolution: int, batch: int, iters: int, warmup: int, impls: list[str]) -> None:
    import torch

    from pti.stylegan2 import Generator
    from pti.stylegan2.ops._backend import auto_impl

    time_ms = _timer(device)
    torch.manual_seed(0)
    G = Generator(512, 0, 512, resolution, 3, mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512}).to(device)
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(2)).to(device)
    label = f"generator {resolution}x{resolution} config-f"
    shape_text = f"z [{batch},512]"
    fwd, fwd_bwd, images = {}, {}, {}
    for impl in impls:
        with auto_impl(impl):  # type: ignore[arg-type]
            def forward() -> None:
                with torch.no_grad():
                    G(z, None, noise_mode="const")

            def forward_backward() -> None:
                G.zero_grad(set_to_none=True)
                G(z, None, noise_mode="const").square().mean().backward()

            with torch.no_grad():
                images[impl] = G(z, None, noise_mode="const").float()
            fwd[impl] = time_ms(forward, iters, warmup)
            fwd_bwd[impl] = time_ms(forward_backward, iters, warmup)
    diff = (images["ref"] - images["cuda"]).abs().max().item() if len(impls) == 2 else None
    print(_row(label + " fwd", shape_text, fwd, diff, impls), flush=True)
    print(_row(label + " fwd+bwd", shape_text, fwd_bwd, None, impls), flush=True)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from pti.stylegan2.ops import _backend

    if args.compile_only:
        t0 = time.perf_counter()
        try:
            module = _backend.compile_extension(verbose=args.verbose)
        except Exception as exc:  # report, do not trace back
            print(f"pti bench-ops: building the CUDA extension failed: {type(exc).__name__}: {exc}")
            return 1
        print(f"pti bench-ops: CUDA extension built/loaded in {time.perf_counter() - t0:.1f} s: {module.__file__}")
        return 0

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("pti bench-ops: --device cuda but torch.cuda.is_available() is False; use --device cpu")
        return 1
    on_gpu = device.type == "cuda"
    batch = args.batch or (4 if on_gpu else 1)
    iters = args.iters or (20 if on_gpu else 5)
    resolution = args.resolution or (1024 if on_gpu else 64)
    dtype = getattr(torch, args.dtype)
    impls = ["ref", "cuda"] if on_gpu else ["ref"]

    if on_gpu:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
        print(f"pti bench-ops on {name} (torch {torch.__version__}, CUDA {torch.version.cuda}), {args.dtype}, "
              f"batch {batch}, median of {iters} runs after {args.warmup} warm-up runs; times in ms")
        t0 = time.perf_counter()
        try:
            _backend.build_extension(verbose=args.verbose)
        except RuntimeError as exc:
            print(f"pti bench-ops: the CUDA kernels are unavailable: {exc}")
            return 1
        print(f"CUDA extension ready in {time.perf_counter() - t0:.1f} s (cache: {_backend.default_build_dir()})")
    else:
        if dtype == torch.float16:
            print("pti bench-ops: float16 timings on CPU are not meaningful; use --dtype float32")
            return 1
        print(f"pti bench-ops on CPU ({torch.get_num_threads()} threads, torch {torch.__version__}): no CUDA device, "
              f"reference timings only; batch {batch}, median of {iters} runs; times in ms")

    _bench_ops(device, dtype, batch, iters, args.warmup, impls)
    if not args.skip_generator:
        _bench_generator(device, resolution, batch, iters, args.warmup, impls)
    return 0
