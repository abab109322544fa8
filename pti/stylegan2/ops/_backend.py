"""Choosing between the CUDA kernels and the pure-PyTorch reference.

The CUDA extension (``csrc/*.cpp`` + ``csrc/*.cu``) is compiled once per process on first
use with ``torch.utils.cpp_extension.load`` (ninja) into a cache directory:
``$PTI_EXTENSIONS_DIR`` if set, else ``~/.cache/pti/extensions/torch<version>-cu<version>``.
Later processes reuse the cached build (ninja only recompiles what changed). The target GPU
architectures are torch's choice (the visible GPUs) unless ``TORCH_CUDA_ARCH_LIST`` is set.

A failed build is remembered: it is not retried in the same process, ``impl='cuda'`` raises
the remembered error, and ``impl='auto'`` warns once and uses the reference.

Which implementation an op uses (first rule that applies):

1. its ``impl`` argument, when not ``'auto'`` (``'ref'``, or ``'cuda'``: kernels or an error);
2. the innermost :func:`auto_impl` block around the call;
3. the environment variable ``PTI_OPS``: ``ref`` (never the kernels), ``cuda`` (the kernels on
   every CUDA tensor, no fallback: a failed build raises, a failed self-check only warns),
   ``auto`` or unset (the kernels on CUDA tensors when they build and pass their self-check,
   else the reference with one warning); tensors off CUDA always use the reference here;
4. ``auto``.

The self-check itself (each kernel against the reference, once per op, dtype and flags) lives
in :mod:`._selfcheck`; this module only builds the kernels and resolves the choice.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Literal

import torch

Impl = Literal["auto", "cuda", "ref"]
IMPLS: tuple[str, ...] = ("auto", "cuda", "ref")
#: environment variable that sets what ``impl='auto'`` means (see the module doc)
ENV_VAR = "PTI_OPS"
#: the device type whose tensors the compiled kernels take; tests point it at ``'cpu'`` together
#: with a stand-in extension module in ``_plugin`` (tests/test_ops_selfcheck.py)
KERNEL_DEVICE = "cuda"
EXTENSION_NAME = "pti_stylegan2_ops"
CSRC = Path(__file__).parent / "csrc"
_CUDA_FLAGS = ["--use_fast_math", "-O3"]

# Process-wide build cache: the compiled module, or why it could not be had.
_plugin: ModuleType | None = None
_build_error: str | None = None
_warned = False

# What impl='auto' means inside a `auto_impl(...)` block (None: the normal choice).
_auto_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("pti_ops_auto_override", default=None)


def default_build_dir() -> Path:
    """``$PTI_EXTENSIONS_DIR``, or a per-torch/CUDA-version folder under ``~/.cache/pti/extensions``."""
    env = os.environ.get("PTI_EXTENSIONS_DIR")
    if env:
        return Path(env).expanduser()
    tag = f"torch{torch.__version__.split('+')[0]}-cu{torch.version.cuda or 'none'}"
    return Path.home() / ".cache" / "pti" / "extensions" / tag


def source_files() -> list[str]:
    """The extension's sources: every ``.cpp`` then every ``.cu`` file in ``csrc/``."""
    return sorted(str(p) for p in CSRC.glob("*.cpp")) + sorted(str(p) for p in CSRC.glob("*.cu"))


def _has_cuda_toolkit(home: str | None) -> bool:
    return bool(home) and (Path(home) / "include" / "cuda_runtime.h").is_file()


def _settle_cuda_home(cpp_extension: Any) -> None:
    """Point torch at a complete CUDA toolkit when its own guess is not one.

    torch guesses CUDA_HOME from the ``nvcc`` on PATH; a wrapper script such as
    ``/usr/local/bin/nvcc`` makes it guess ``/usr/local``, which has neither the CUDA headers
    nor ``lib64/libcudart.so``. Only done when neither CUDA_HOME nor CUDA_PATH is set.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    if _has_cuda_toolkit(getattr(cpp_extension, "CUDA_HOME", None)):
        return
    candidates = [Path("/usr/local/cuda")] + sorted(Path("/usr/local").glob("cuda-*"), reverse=True)
    for home in candidates:
        if _has_cuda_toolkit(str(home)) and (home / "bin" / "nvcc").exists():
            cpp_extension.CUDA_HOME = str(home)
            return


def compile_extension(build_dir: str | Path | None = None, verbose: bool = False) -> ModuleType:
    """Compile the kernels (or reuse a cached build) and import the module; no caching here.

    Needs ``nvcc`` and ninja but not a GPU: set ``TORCH_CUDA_ARCH_LIST`` (e.g. ``"9.0"``) when
    no GPU is visible. Raises whatever ``torch.utils.cpp_extension.load`` raises.
    """
    from torch.utils import cpp_extension

    sources = source_files()
    if not sources:
        raise RuntimeError(f"no CUDA sources found in {CSRC}; reinstall pti")
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and torch.cuda.device_count() == 0:
        raise RuntimeError("no CUDA device is visible to choose the GPU architecture from; "
                           "set TORCH_CUDA_ARCH_LIST (e.g. '9.0' for H100) to compile without one")
    _settle_cuda_home(cpp_extension)
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=EXTENSION_NAME,
        sources=sources,
        extra_include_paths=[str(CSRC)],
        extra_cuda_cflags=_CUDA_FLAGS,
        build_directory=str(build_dir),
        verbose=verbose,
    )


def _short_reason(exc: BaseException) -> str:
    """The exception's first line, plus the first compiler ``error`` line of a build log."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return f"{type(exc).__name__}: {exc!r}"
    reason = lines[0][:300]
    first_error = next((line for line in lines[1:] if "error" in line.lower()), None)
    if first_error:
        reason += f" [{first_error[:300]}]"
    return f"{type(exc).__name__}: {reason}"


def build_extension(verbose: bool = False) -> ModuleType:
    """The compiled kernels, built on the first call of the process.

    Raises ``RuntimeError`` when they cannot be had (no CUDA device, no compiler, a compile
    error); the failure is remembered and raised again without retrying.
    """
    global _plugin, _build_error
    if _plugin is not None:
        return _plugin
    if _build_error is not None:
        raise RuntimeError(_build_error)
    try:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available")
        _plugin = compile_extension(verbose=verbose)
        return _plugin
    except Exception as exc:  # remember the failure, never retry in this process
        _build_error = (f"{_short_reason(exc)} (building {EXTENSION_NAME} in {default_build_dir()}; "
                        "call pti.stylegan2.ops._backend.compile_extension(verbose=True) to see the compiler output)")
        raise RuntimeError(_build_error) from exc


@contextlib.contextmanager
def auto_impl(impl: Impl) -> Iterator[None]:
    """Within the block (this thread / async context), ops called with ``impl='auto'`` act as ``impl``.

    For comparing whole networks, whose layers call the ops with the default ``'auto'``::

        with auto_impl("ref"):
            img_ref = G.synthesis(ws)
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    token = _auto_override.set(None if impl == "auto" else impl)
    try:
        yield
    finally:
        _auto_override.reset(token)


def env_impl() -> str:
    """``$PTI_OPS`` as an impl: ``'auto'`` when unset or empty; ``ValueError`` for any other value."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in IMPLS:
        raise ValueError(f"{ENV_VAR}={value!r}: must be one of {', '.join(IMPLS)} (or unset)")
    return value


def resolve_impl(impl: Impl) -> tuple[str, bool]:
    """The impl that applies to a call with ``impl``, and whether it came from ``$PTI_OPS``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'auto', 'cuda' or 'ref', got {impl!r}")
    if impl != "auto":
        return impl, False
    override = _auto_override.get()
    if override is not None:
        return override, False
    return env_impl(), True


def kernel_mode(impl: Impl, x: torch.Tensor) -> str:
    """How an op called with ``impl`` on ``x`` may use the kernels: ``'ref'``, ``'auto'`` or ``'cuda'``.

    ``'ref'``: use the reference. ``'auto'``: the kernels are built; use them if they pass their
    self-check. ``'cuda'``: use them whatever the self-check says (forced). Raises
    ``ValueError`` for ``impl='cuda'`` on a tensor off CUDA, and ``RuntimeError`` when forced
    kernels cannot be built; ``'auto'`` warns once and returns ``'ref'`` when they cannot.
    """
    global _warned
    on_kernel_device = x.is_cuda if KERNEL_DEVICE == "cuda" else x.device.type == KERNEL_DEVICE
    if not on_kernel_device and impl == "auto" and _auto_override.get() in (None, "ref"):
        return "ref"  # the common CPU case, without reading the environment
    mode, from_env = resolve_impl(impl)
    if mode == "ref":
        return "ref"
    if not on_kernel_device:
        if mode == "cuda" and not from_env:
            raise ValueError(f"impl='cuda' needs CUDA tensors, got a tensor on {x.device}")
        return "ref"
    if mode == "cuda":
        build_extension()
        return "cuda"
    try:
        build_extension()
        return "auto"
    except RuntimeError as exc:
        if not _warned:
            warnings.warn(f"pti: CUDA ops unavailable ({exc}); using the pure-PyTorch reference ops", stacklevel=3)
            _warned = True
        return "ref"


def use_cuda(impl: Impl, x: torch.Tensor) -> bool:
    """Whether the kernels are available to an op called with ``impl`` on ``x`` (before their self-check).

    ``impl='cuda'`` insists (raises if the kernels cannot be had); ``'ref'`` never uses
    them; ``'auto'`` uses them for CUDA tensors when they build, else warns once.
    """
    return kernel_mode(impl, x) != "ref"


def loaded_build() -> ModuleType | Any | None:
    """The compiled module of this process (``None`` before a successful build)."""
    return _plugin


def build_identity(module: ModuleType | Any) -> str:
    """What identifies a build: ``<file>#<sha256 of the file, 16 hex>``, or the object's id for a stand-in."""
    path = getattr(module, "__file__", None)
    if path and Path(path).is_file():
        import hashlib

        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        return f"{path}#{digest}"
    return f"{type(module).__name__}@{id(module):x}"
