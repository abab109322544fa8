"""How PTI's steps are computed, apart from what they compute: :class:`ExecutionConfig`.

The core (:func:`pti.core.projector.project`, :func:`pti.core.tuning.pivotal_tune`) always runs as the
official implementation does: fp32 everywhere, ``torch.optim.Adam``, one host sync per step, no
compilation. Every field here is an opt-in speed path of :mod:`pti.fast`, tested equal to the core
within measured tolerances (``tests/test_speed_paths.py``) and measured by ``pti bench``.
Plain values only (JSON, CLI, notebook parameters); no torch import.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from pti.core.config import ranged

Precision = Literal["fp32", "bf16", "fp16"]
AdamImpl = Literal["auto", "loop", "foreach", "fused"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
Tf32 = Literal["default", "on", "off"]

PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
ADAM_IMPLS: tuple[str, ...] = typing.get_args(AdamImpl)
COMPILE_MODES: tuple[str, ...] = typing.get_args(CompileMode)
TF32_MODES: tuple[str, ...] = typing.get_args(Tf32)


@dataclass
class ExecutionConfig:
    """How inversion and tuning are computed (both stages). The defaults are the core's (the official code's).

    Each field's docstring is its help text on the command line (``--exec-<field>``).
    """

    precision: Precision = "fp32"
    """autocast of synthesis and perceptual network: 'fp32' (off, the official code), 'bf16' or 'fp16'
    (fp16 with loss scaling)"""
    force_fp32: bool = True
    """run every synthesis layer in fp32; false: the network's own fp16 layers (num_fp16_res, conv_clamp; CUDA)"""
    channels_last: bool = False
    """NHWC memory layout for the perceptual network (and the fp16 synthesis blocks)"""
    adam: AdamImpl = "auto"
    """torch.optim.Adam implementation: 'auto' (torch's pick), 'loop' (the official code's), 'foreach',
    'fused'; ignored (pti.fast.optim.FlatAdam is used) when updates are masked on the device"""
    compile: bool = False
    """torch.compile the fixed-shape forward (and the masked Adam step)"""
    compile_mode: CompileMode = "default"
    """torch.compile mode; 'reduce-overhead' adds CUDA graphs"""
    sync_every: int = ranged(1, ge=1)
    """read losses back to the host (history, NaN check, progress bar) only every N steps (1: every step);
    >1: tuning's early stop is decided on the device and the weights are frozen there"""
    tf32: Tf32 = "default"
    """TF32 tensor cores for fp32 convolutions and matmuls (CUDA, Ampere and later): 'default' (torch's
    defaults, which the official code runs with: cuDNN convolutions in TF32, matmuls in full fp32), 'on'
    (both), 'off' (neither); no effect on a CPU"""
    cuda_graphs: bool = False
    """capture each whole step (forward, backward, Adam) once as a CUDA graph and replay it (graph-safe
    steps: device-side learning rates, masks and checks, the masked Adam, random numbers drawn ahead);
    where capture is impossible (no CUDA, or it fails) the same steps run eagerly with one warning"""

    def is_core(self) -> bool:
        """True when every field has the core's value (the fast layer then adds nothing)."""
        return self == ExecutionConfig()


def check_execution(cfg: ExecutionConfig) -> None:
    """Raise ``ValueError`` naming the option when a field has an unknown value."""
    for option, value, valid in (("precision", cfg.precision, PRECISIONS), ("adam", cfg.adam, ADAM_IMPLS),
                                 ("compile_mode", cfg.compile_mode, COMPILE_MODES), ("tf32", cfg.tf32, TF32_MODES)):
        if value not in valid:
            raise ValueError(f"ExecutionConfig.{option} must be one of {valid}, got {value!r}")
    if not isinstance(cfg.sync_every, int) or cfg.sync_every < 1:
        raise ValueError(f"ExecutionConfig.sync_every must be an integer >= 1, got {cfg.sync_every!r}")


def fast_preset(device_type: str) -> ExecutionConfig:
    """What ``pti run --fast`` uses on a device type ('cuda' or 'cpu').

    CUDA: bf16 autocast, NHWC perceptual network, fused Adam, host syncs every 25 steps (the paths that
    ``pti bench`` keeps at equal quality). CPU: fp32 (bf16 is slow without AVX-512 bf16), foreach Adam,
    syncs every 25 steps.
    """
    if device_type == "cuda":
        return ExecutionConfig(precision="bf16", channels_last=True, adam="fused", sync_every=25)
    return ExecutionConfig(adam="foreach", sync_every=25)
