"""Configuration dataclasses for inversion and pivotal tuning, with the paper's defaults.

Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images" (ACM TOG 2022):
450 inversion steps, 350 tuning steps at lr 3e-4, LPIPS(alex) early stop at 0.06,
λ_L2 = λ_LPIPS = 1, locality regularisation with α = 30 and λ_R(L2) = λ_R(LPIPS) = 0.1,
N_r = 1 sample per step, w_z drawn from the mapping network with truncation 0.5.
Every field is a plain value so that configs round-trip through JSON, the CLI and
notebook parameters (see :func:`config_from_dict`, :func:`config_to_dict`).

The execution fields at the end of :class:`InversionConfig` and :class:`TuningConfig`
(``precision``, ``channels_last``, ``adam``, ``compile``, ``compile_mode``, ``sync_every``,
``force_fp32``) choose how the same optimisation is computed, never what is optimised. Their
defaults do what the official implementation does (fp32, one host sync per step, no
compilation); every faster setting is opt-in and measured by ``pti bench``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Space = Literal["w", "w+"]
NoiseMode = Literal["const", "random", "none"]
Precision = Literal["fp32", "bf16", "fp16"]
AdamImpl = Literal["auto", "loop", "foreach", "fused"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
ADAM_IMPLS: tuple[str, ...] = ("auto", "loop", "foreach", "fused")
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class InversionConfig:
    """The StyleGAN2 projector (Karras et al. 2020, appendix D) as PTI uses it for the pivot."""

    space: Space = "w"                       # 'w': one w broadcast to all layers (the paper); 'w+': one per layer
    steps: int = 450
    lr: float = 5e-3                         # peak learning rate (official PTI: first_inv_lr = 5e-3)
    lr_rampup: float = 0.05                  # fraction of steps for the linear warm-up
    lr_rampdown: float = 0.25                # fraction of steps for the cosine ramp-down
    w_noise_factor: float = 0.05             # initial noise added to w, times the w std of the mapping samples
    w_noise_ramp: float = 0.75               # fraction of steps over which that noise decays (quadratically) to 0
    noise_reg_weight: float = 1e5            # weight of the noise-map autocorrelation penalty
    optimize_noise: bool = True              # optimise the per-layer noise maps together with w
    w_avg_samples: int = 10_000              # mapping samples for w's mean and std
    perceptual_net: str = "vgg"              # perceptual distance of the projector ('vgg' as StyleGAN2's; 'alex')
    perceptual_resolution: int | None = 256  # images larger than this are area-downsampled before the distance
    l2_weight: float = 0.0                   # optional pixel L2 term (0 = the projector's pure perceptual loss)
    seed: int = 0
    # execution (see the module doc): how the steps are computed, not what they compute
    force_fp32: bool = True                  # False: the network's own fp16 layers (num_fp16_res, conv_clamp; CUDA)
    precision: Precision = "fp32"            # autocast of synthesis + perceptual: 'fp32' (off), 'bf16', 'fp16'
    channels_last: bool = False              # NHWC perceptual network (and fp16 synthesis blocks)
    adam: AdamImpl = "auto"                  # torch.optim.Adam: 'auto' (torch's pick), 'loop' (official), 'foreach', 'fused'
    compile: bool = False                    # torch.compile the fixed-shape forward (and the masked Adam step)
    compile_mode: CompileMode = "default"    # 'reduce-overhead' adds CUDA graphs
    sync_every: int = 1                      # host syncs (history, NaN check, progress) only every N steps


@dataclass
class LocalityConfig:
    """Locality regularisation (PTI Sec. 3.3): keep G unchanged away from the pivot."""

    enabled: bool = False                    # the official code's default is off; the paper's ablation turns it on
    alpha: float = 30.0                      # distance of w_r from the pivot
    l2_weight: float = 0.1                   # λ_R^{L2}
    lpips_weight: float = 0.1                # λ_R^{LPIPS}
    num_samples: int = 1                     # N_r samples per step
    interval: int = 1                        # apply every `interval` steps
    truncation_psi: float = 0.5              # w_z = mapping(z) with this truncation
    norm: Literal["paper", "official"] = "paper"
    # 'paper': ||w_r - w_p|| = alpha in W (per layer); 'official': the official code normalises the
    # stacked [num_ws, w_dim] difference, so each layer moves alpha / sqrt(num_ws).
    noise_mode: NoiseMode = "none"           # noise used when rendering w_r (official: 'none')


@dataclass
class TuningConfig:
    """Pivotal tuning (PTI Sec. 3.2): fine-tune G so that G(w_p) reproduces the photo."""

    steps: int = 350
    lr: float = 3e-4
    l2_weight: float = 1.0                   # λ_L2
    lpips_weight: float = 1.0                # λ_LPIPS
    lpips_threshold: float | None = 0.06     # early stop when the perceptual distance reaches this (None: never)
    perceptual_net: str = "alex"
    perceptual_resolution: int | None = None  # None: full resolution, as the official coach
    noise_mode: NoiseMode = "const"
    use_pivot_noise: bool = False            # render with the pivot's optimised noise maps instead of G's
    batch_size: int | None = None            # multi-image: pivots per step (None: all of them)
    force_fp32: bool = True                  # False: the network's own fp16 layers (num_fp16_res, conv_clamp; CUDA)
    seed: int = 0
    locality: LocalityConfig = field(default_factory=LocalityConfig)
    # execution (see the module doc and InversionConfig): how the steps are computed, not what they compute
    precision: Precision = "fp32"
    channels_last: bool = False
    adam: AdamImpl = "auto"                  # ignored (pti.optim.FlatAdam is used) when updates are masked on the device
    compile: bool = False
    compile_mode: CompileMode = "default"
    sync_every: int = 1                      # >1: early stop decided on the device, frozen weights, syncs every N steps


C = TypeVar("C")


def check_execution(cfg: InversionConfig | TuningConfig) -> None:
    """Raise ``ValueError`` naming the option when an execution field has an unknown value."""
    name = type(cfg).__name__
    for option, value, valid in (("precision", cfg.precision, PRECISIONS), ("adam", cfg.adam, ADAM_IMPLS),
                                 ("compile_mode", cfg.compile_mode, COMPILE_MODES)):
        if value not in valid:
            raise ValueError(f"{name}.{option} must be one of {valid}, got {value!r}")
    if not isinstance(cfg.sync_every, int) or cfg.sync_every < 1:
        raise ValueError(f"{name}.sync_every must be an integer >= 1, got {cfg.sync_every!r}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested dataclasses become dicts)."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[C], values: dict[str, Any] | None = None, **overrides: Any) -> C:
    """Build ``cls`` from a (possibly partial, possibly nested) dict; unknown keys raise ``ValueError``.

    ``overrides`` may use dotted names for nested fields: ``locality.alpha=10``.
    """
    merged: dict[str, Any] = dict(values or {})
    for key, value in overrides.items():
        target = merged
        *parents, leaf = key.replace("__", ".").split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return _build(cls, merged)


def _build(cls: type[C], values: dict[str, Any]) -> C:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {sorted(unknown)}; valid: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING \
            else fields[name].default
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _build(type(default), value)
        kwargs[name] = value
    return cls(**kwargs)
