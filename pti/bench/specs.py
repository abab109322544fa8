"""What ``pti bench`` runs and what it measures: path specs, the bench config, the results."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pti.fast.config import ExecutionConfig

from dataclasses import dataclass, field
from typing import Any

from pti.bench_presets import ALIASES, DEFAULT_PATHS, GENERATOR_CONFIGS, PERCEPTUAL_MODES  # noqa: F401 (torch-free)

PAPER_INV_STEPS, PAPER_TUNE_STEPS = 450, 350
AUTO_BATCH_LIMIT = 32
REPEAT_NAME = "baseline (repeated last)"


@dataclass(frozen=True)
class PathSpec:
    """One execution path: the baseline's settings with the given tokens applied."""

    name: str
    batch: int | None = None          # None: one photo at a time; 0: auto; K: K photos at once
    precision: str = "fp32"
    force_fp32: bool = True
    channels_last: bool = False
    adam: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    sync_every: int = 1
    tune_perceptual_resolution: int | None = None
    ref_ops: bool = False
    tf32: str = "default"
    cuda_graphs: bool = False

    def execution(self) -> "ExecutionConfig":
        """The :class:`pti.fast.ExecutionConfig` of this path (the core's for ``baseline``)."""
        from pti.fast.config import ExecutionConfig

        return ExecutionConfig(precision=self.precision, force_fp32=self.force_fp32, channels_last=self.channels_last,
                               adam=self.adam, compile=self.compile, compile_mode=self.compile_mode,
                               sync_every=self.sync_every, tf32=self.tf32, cuda_graphs=self.cuda_graphs)


def parse_path(text: str) -> PathSpec:
    """``'batched:8+bf16+nosync'`` -> :class:`PathSpec`; raises ``ValueError`` naming an unknown token."""
    name = text.strip()
    tokens = [t for part in name.split("+") for t in ALIASES.get(part.strip(), part.strip()).split("+") if t]
    values: dict[str, Any] = {}
    for token in tokens:
        head, _, arg = token.partition(":")
        if token == "baseline":
            continue
        if token in ("bf16", "fp16"):
            values["precision"] = token
        elif token == "fp16-layers":
            values["force_fp32"] = False
        elif token == "channels-last":
            values["channels_last"] = True
        elif token in ("loop", "foreach", "fused", "auto"):
            values["adam"] = token
        elif token == "compile":
            values["compile"] = True
        elif token in ("cudagraphs", "max-autotune"):
            values.update(compile=True, compile_mode="reduce-overhead" if token == "cudagraphs" else token)
        elif head == "nosync":
            values["sync_every"] = int(arg) if arg else 25
        elif token == "lpips256" or head == "lpips":
            values["tune_perceptual_resolution"] = 256 if token == "lpips256" else int(arg)
        elif token == "ref-ops":
            values["ref_ops"] = True
        elif token in ("tf32", "no-tf32"):
            values["tf32"] = "on" if token == "tf32" else "off"
        elif token == "graphs":
            values["cuda_graphs"] = True
        elif head == "batched":
            values["batch"] = 0 if arg in ("", "auto") else int(arg)
            if values["batch"] < 0:
                raise ValueError(f"path {name!r}: batched:K needs K >= 1")
        else:
            raise ValueError(f"path {name!r}: unknown token {token!r} (see `pti bench --help`)")
    return PathSpec(name=name, **values)


@dataclass
class BenchConfig:
    """What ``pti bench`` runs (see :func:`run_bench`)."""

    config: str = "f1024"
    checkpoint: str | None = None
    device: str = "cuda"
    paths: list[str] = field(default_factory=lambda: DEFAULT_PATHS["cuda"].split(","))
    inv_steps: int = PAPER_INV_STEPS
    tune_steps: int = PAPER_TUNE_STEPS
    locality_steps: int = 20
    warmup_steps: int = 2
    images: int = 8
    w_avg_samples: int = 10_000
    early_stop: bool = False          # keep the paper's LPIPS early stop (off: every path runs every step)
    targets: str | None = None        # folder of aligned images; default: synthetic targets from G
    seed: int = 0
    threads: int | None = None
    repeat_baseline: bool = False     # run the baseline first and last; ratios use the mean of both timings
    perceptual: str = "auto"          # what to time with: see PERCEPTUAL_MODES and pti.bench.paths.timing_net


@dataclass
class PathResult:
    """Measurements of one path (times in seconds, memory in bytes)."""

    name: str
    batch: int
    inv_step_s: float
    tune_step_s: float
    locality_step_s: float
    e2e_s_per_image: float
    paper_s_per_image: float
    peak_memory: int | None
    warmup_s: float
    mse: float                        # on [0, 1] (pti.metrics.evaluate), mean over the photos
    perceptual: float
    pivot_mse: float                  # on [0, 1], the pivots in the original G
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_minute(self) -> float:
        return 60.0 / self.paper_s_per_image if self.paper_s_per_image > 0 else float("inf")


@dataclass
class BenchReport:
    config: BenchConfig
    environment: dict[str, str]
    results: list[PathResult]
    failures: dict[str, str]
