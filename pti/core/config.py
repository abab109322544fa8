"""Configuration dataclasses for inversion and pivotal tuning, with the paper's defaults.

Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images" (ACM TOG 2022):
450 inversion steps, 350 tuning steps at lr 3e-4, LPIPS(alex) early stop at 0.06,
λ_L2 = λ_LPIPS = 1, locality regularisation with α = 30 and λ_R(L2) = λ_R(LPIPS) = 0.1,
N_r = 1 sample per step, w_z drawn from the mapping network with truncation 0.5.
Every field is a plain value so that configs round-trip through JSON, the CLI and
notebook parameters (see :func:`config_from_dict`, :func:`config_to_dict`). Each field has an
attribute docstring (the string under it): what it is, its unit and choices. ``pti`` shows it as the
option's help text (:mod:`pti.commands._config_args`), so it is written only here. So is each numeric
field's valid range (``ranged(default, ge=/gt=/le=)``, a :class:`Range` in the field's metadata): a config
outside it cannot be made (``ValueError`` from :func:`validate`), and the command line refuses it while
parsing, before any photo is read.

These configs hold only the paper's knobs: what is optimised, never how fast. How the steps are
computed (autocast, channels_last, Adam implementation, torch.compile, host syncs) is
:class:`pti.fast.ExecutionConfig`, accepted only by the fast entry points of :mod:`pti.fast`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Space = Literal["w", "w+"]
NoiseMode = Literal["const", "random", "none"]
LocalityNorm = Literal["paper", "official"]
PerceptualNet = Literal["alex", "vgg", "squeeze", "effnet-lite0", "random-alex", "random-vgg", "random-squeeze"]


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric config field: ``low <= x`` (``low < x`` when ``low_open``), ``x <= high``
    (``x < high`` when ``high_open``).

    Every value must also be finite (no NaN or inf). A field annotated ``X | None`` also accepts None.
    Written once, next to its field (:func:`ranged`); checked by :func:`validate` (the Python API) and by the
    command-line option's parser (:mod:`pti.commands._config_args`), which both print :meth:`describe`.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self, integer: bool = False, optional: bool = False) -> str:
        """E.g. 'an integer >= 1', 'a number > 0', 'a number in [0, 1]', 'an integer in [0, 2**63)', '... or none'."""
        kind = "an integer" if integer else "a number"
        low, high = _show_bound(self.low), _show_bound(self.high)
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {low}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {high}"
        else:
            text = f"a finite {kind.split()[-1]}"
        return text + (" or none" if optional else "")

    def error(self, value: Any, integer: bool = False, optional: bool = False) -> str | None:
        """Why ``value`` is invalid ('must be ..., got ...'), or None when it is valid."""
        if value is None and optional:
            return None
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy scalars too
        try:
            ok = number and (not integer or isinstance(value, numbers.Integral)) and math.isfinite(value)
        except OverflowError:  # an int beyond any float
            ok = False
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        return None if ok else f"must be {self.describe(integer, optional)}, got {value!r}"


def _show_bound(bound: float | None) -> str:
    if bound == SEED_END:
        return "2**63"
    return str(bound) if isinstance(bound, int) else f"{bound:g}" if bound is not None else ""


#: seeds are below this: torch.Generator.manual_seed takes a 64-bit integer (larger ones fail per photo
#: with 'Overflow when unpacking long long')
SEED_END = 2 ** 63


def make_range(ge: float | None = None, gt: float | None = None, le: float | None = None,
               lt: float | None = None) -> Range:
    """The :class:`Range` of ``ge`` (>=) or ``gt`` (>), and ``le`` (<=) or ``lt`` (<)."""
    if ge is not None and gt is not None:
        raise TypeError("give ge or gt, not both")
    if le is not None and lt is not None:
        raise TypeError("give le or lt, not both")
    return Range(low=gt if gt is not None else ge, high=lt if lt is not None else le, low_open=gt is not None,
                 high_open=lt is not None)


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """A dataclass field with ``default`` and its valid range (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``: <)."""
    return field(default=default, metadata={"range": make_range(ge, gt, le, lt)})


def field_range(f: dataclasses.Field) -> Range | None:
    """The :class:`Range` written next to a config field (None for fields without one)."""
    return f.metadata.get("range")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def is_integer_field(annotation: Any) -> bool:
    """True for ``int`` and ``int | None`` annotations."""
    return annotation is int or (int in typing.get_args(annotation) and float not in typing.get_args(annotation))


def validate(cfg: Any) -> None:
    """Check every field of a config dataclass (nested ones too) against its range and ``Literal`` choices.

    Raises ``ValueError`` naming the field and what it must be, e.g. ``LocalityConfig.interval must be an
    integer >= 1, got 0``, and ``TypeError`` for a nested config given as anything but its dataclass (a dict:
    build it with :func:`config_from_dict`). Called when a config is made (``__post_init__``) and again by
    :func:`pti.core.projector.project`, :func:`pti.core.tuning.pivotal_tune` and :func:`pti.jobs.runner.process_images`
    (fields may be assigned after construction).
    """
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if not isinstance(value, kind):  # e.g. a dict: it would be used unchecked
                raise TypeError(f"{type(cfg).__name__}.{f.name} must be a {kind.__name__}, got "
                                f"{type(value).__name__} {value!r}; write {kind.__name__}(...) or use "
                                f"config_from_dict({type(cfg).__name__}, {{'{f.name}': {{...}}}})")
            validate(value)
            continue
        optional = type(None) in typing.get_args(hints[f.name])
        choices = literal_choices(hints[f.name])
        if choices is not None and value not in choices and not (value is None and optional):
            raise ValueError(f"{type(cfg).__name__}.{f.name} must be one of {', '.join(map(repr, choices))}, "
                             f"got {value!r}")
        valid = field_range(f)
        problem = valid.error(value, is_integer_field(hints[f.name]), optional) if valid is not None else None
        if problem:
            raise ValueError(f"{type(cfg).__name__}.{f.name} {problem}")


@dataclass
class InversionConfig:
    """The StyleGAN2 projector (Karras et al. 2020, appendix D) as PTI uses it for the pivot.

    Each field's docstring is its help text on the command line (``--inv-<field>``).
    """

    space: Space = "w"
    """latent space of the pivot: 'w' = one code broadcast to all layers (the paper), 'w+' = one code per layer"""
    steps: int = ranged(450, ge=0)
    """Adam steps of the projector (the paper: 450)"""
    lr: float = ranged(5e-3, ge=0)
    """peak Adam learning rate (official PTI: first_inv_lr = 5e-3; the commands and notebooks use 0.02 on the
    'demo' generator, its zoo entry's projector_lr); 0 keeps the start (the mean w or the encoder's code) and
    only measures it"""
    lr_rampup: float = ranged(0.05, ge=0, le=1)
    """fraction of the steps (0-1) with a linear learning-rate warm-up from 0"""
    lr_rampdown: float = ranged(0.25, ge=0, le=1)
    """fraction of the steps (0-1) at the end with a cosine learning-rate ramp-down to 0"""
    w_noise_factor: float = ranged(0.05, ge=0)
    """initial Gaussian noise added to w, in units of the std of the mapped w samples"""
    w_noise_ramp: float = ranged(0.75, ge=0, le=1)
    """fraction of the steps (0-1) over which that noise decays (quadratically) to 0"""
    noise_reg_weight: float = ranged(1e5, ge=0)
    """weight of the noise-map autocorrelation penalty (StyleGAN2's projector: 1e5)"""
    optimize_noise: bool = True
    """optimise the per-layer noise maps together with w"""
    w_avg_samples: int = ranged(10_000, ge=1)
    """number of mapping samples z -> w whose mean is the start and whose std scales the w noise"""
    perceptual_net: PerceptualNet = "vgg"
    """perceptual distance of the projector: LPIPS on 'vgg' (StyleGAN2's), 'alex' or 'squeeze' (the offline
    EfficientNet-Lite0 fallback when the backbone cannot be had), 'effnet-lite0' (that fallback on purpose),
    'random-*' (random backbone: tests only)"""
    perceptual_resolution: int | None = ranged(256, ge=1)
    """images larger than this side (pixels) are area-downsampled before the perceptual distance; none: never"""
    l2_weight: float = ranged(0.0, ge=0)
    """weight of an extra pixel MSE term on [-1, 1] images (0: the projector's pure perceptual loss)"""
    seed: int = ranged(0, ge=0, lt=SEED_END)
    """seed of the mapping samples, the initial noise maps and the per-step w noise"""

    def __post_init__(self) -> None:
        validate(self)  # the ranges written next to the fields


@dataclass
class LocalityConfig:
    """Locality regularisation (PTI Sec. 3.3): keep G unchanged away from the pivot.

    Each field's docstring is its help text on the command line (``--locality-<field>``).
    """

    enabled: bool = False
    """turn the regulariser on (the official code's default is off; the paper's ablation turns it on)"""
    alpha: float = ranged(30.0, gt=0)
    """distance in W of the regularisation codes w_r from the pivot (the paper: 30); > 0: at 0 every w_r is
    the pivot itself, where the regulariser would pull G back to the original and undo the tuning (turn
    locality off instead)"""
    l2_weight: float = ranged(0.1, ge=0)
    """weight λ_R^L2 of the MSE between tuned and original renders of w_r (the paper: 0.1)"""
    lpips_weight: float = ranged(0.1, ge=0)
    """weight λ_R^LPIPS of their perceptual distance (the paper: 0.1)"""
    num_samples: int = ranged(1, ge=1)
    """codes w_r drawn per regularised step (N_r; the paper: 1)"""
    interval: int = ranged(1, ge=1)
    """apply the regulariser every N tuning steps (1: every step)"""
    truncation_psi: float = ranged(0.5, ge=0, le=1)
    """truncation of the random codes w_z = mapping(z) that w_r moves towards (the paper: 0.5); 0-1: 0 = the
    mean w, 1 = untruncated; above 1 (or below 0) w_z leaves the region the generator models well"""
    norm: LocalityNorm = "paper"
    """how w_r - w_p is scaled to length alpha: 'paper' = per layer (a distance of alpha in W), 'official' =
    the stacked [num_ws, w_dim] difference, as the official code (each layer moves alpha / sqrt(num_ws))"""
    noise_mode: NoiseMode = "none"
    """noise inputs when rendering w_r: 'none' (the official code), 'const' or 'random'"""

    def __post_init__(self) -> None:
        validate(self)  # the ranges written next to the fields


@dataclass
class TuningConfig:
    """Pivotal tuning (PTI Sec. 3.2): fine-tune G so that G(w_p) reproduces the photo.

    Each field's docstring is its help text on the command line (``--tune-<field>``).
    """

    steps: int = ranged(350, ge=0)
    """Adam steps of pivotal tuning (the paper: 350)"""
    lr: float = ranged(3e-4, ge=0)
    """Adam learning rate of the generator's weights (the paper: 3e-4); 0 leaves G as it is (a baseline)"""
    l2_weight: float = ranged(1.0, ge=0)
    """weight λ_L2 of the MSE on [-1, 1] images (the paper: 1)"""
    lpips_weight: float = ranged(1.0, ge=0)
    """weight λ_LPIPS of the perceptual distance (the paper: 1)"""
    lpips_threshold: float | None = ranged(0.06, ge=0)
    """stop early once every photo's perceptual distance is at most this (the paper: 0.06 on the LPIPS
    scale); none: run every step"""
    perceptual_net: PerceptualNet = "alex"
    """perceptual distance of tuning: LPIPS on 'alex' (the paper's), 'vgg' or 'squeeze' (the offline
    EfficientNet-Lite0 fallback when the backbone cannot be had), 'effnet-lite0' (that fallback on purpose),
    'random-*' (random backbone: tests only)"""
    perceptual_resolution: int | None = ranged(None, ge=1)
    """images larger than this side (pixels) are area-downsampled before the perceptual distance; none: full
    resolution, as the official code"""
    noise_mode: NoiseMode = "const"
    """noise inputs of the generator while tuning: 'const' (the official code), 'random' or 'none'"""
    use_pivot_noise: bool = False
    """render with the pivot's optimised noise maps instead of the generator's constant ones"""
    batch_size: int | None = ranged(None, ge=1)
    """multi-image tuning: pivots per step (none: all of them)"""
    seed: int = ranged(0, ge=0, lt=SEED_END)
    """seed of the multi-image batch order and of the locality samples"""
    locality: LocalityConfig = field(default_factory=LocalityConfig)
    """the locality regulariser (options --locality-*)"""

    def __post_init__(self) -> None:
        validate(self)  # the ranges written next to the fields


C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested dataclasses become dicts)."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[C], values: dict[str, Any] | None = None, **overrides: Any) -> C:
    """Build ``cls`` from a (possibly partial, possibly nested) dict; unknown keys, values outside a
    ``Literal`` field's choices and values outside a field's range (:func:`validate`) raise ``ValueError``.

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


def literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation; None for other types."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


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
    return cls(**kwargs)  # __post_init__ checks choices and ranges (validate)


def inversion_defaults(generator: object) -> InversionConfig:
    """The paper's :class:`InversionConfig` for ``generator``, with its zoo entry's (:mod:`pti.zoo`)
    ``projector_lr`` when it has one (the demo generator: 0.02 instead of PTI's 5e-3).

    ``generator``: a zoo name; anything else (a checkpoint path, a module, None) gets the paper's settings
    unchanged. Options given on top (``--inv-lr``, ``dataclasses.replace``) still win.
    """
    from pti.zoo import ZOO  # lazily: the zoo is only read here

    entry = ZOO.get(generator) if isinstance(generator, str) else None
    if entry is not None and entry.projector_lr is not None:
        return InversionConfig(lr=entry.projector_lr)
    return InversionConfig()
