"""``pti bench``: speed and reconstruction quality of PTI's execution paths, side by side.

Every path runs the same PTI (inversion, then pivotal tuning) on the same targets with the
same seeds; only how the steps are computed differs. The ``baseline`` path is the core
(:func:`pti.core.projector.project`, :func:`pti.core.tuning.pivotal_tune`), which does what the official
implementation does: fp32 everywhere (``force_fp32=True``), the CUDA ops on a GPU
(``impl='auto'``), one photo at a time, ``torch.optim.Adam``, a host sync every step,
full-resolution LPIPS for tuning, no compilation. Every other path runs :mod:`pti.fast`. Other paths are ``+``-joined tokens applied on top of it::

    bf16 | fp16            autocast of synthesis + perceptual (fp16 adds device-side loss scaling)
    fp16-layers            the network's own fp16 layers with conv_clamp (force_fp32=False; CUDA only)
    channels-last          NHWC perceptual network (and fp16 synthesis blocks)
    loop|foreach|fused     torch.optim.Adam implementation
    compile | cudagraphs   torch.compile of the fixed-shape step (cudagraphs: mode='reduce-overhead')
    nosync[:N]             host syncs only every N steps (default 25); early stop decided on the device
    lpips256 | lpips:R     tuning's perceptual distance on the R-pixel downsampled image (as the projector)
    ref-ops                StyleGAN2's pure-PyTorch reference ops instead of the CUDA kernels
    tf32 | no-tf32         TF32 for fp32 convolutions and matmuls on / off (default: torch's, convolutions only)
    graphs                 each whole step captured once as a CUDA graph and replayed (graph-safe steps)
    batched:K | batched:auto   K photos at once, each with its own weights (auto: K from a memory probe)
    fast                   = batched:auto+bf16+nosync

For each path: per-step times (per image: a batched step of K photos counts K image-steps),
end-to-end seconds per image and images per minute (measured, and projected to the paper's
450 + 350 steps), peak memory, the one-off warm-up (compilation) time, and the final
reconstruction MSE (on [0, 1]) and perceptual distance (:func:`pti.metrics.evaluate`, one fp32
evaluator for all paths), with ratios to the baseline measured in the same run. Timings are
printed, never asserted. Where torchvision's LPIPS weights cannot be had, the steps are timed with LPIPS
on random backbones of the same architecture (``random-vgg``, ``random-alex``: the same FLOPs); the tables
name them, and the quality columns are scored by real LPIPS-alex or the named EfficientNet-Lite0 fallback.

Modules: :mod:`.specs` (paths, config, results; no torch), :mod:`.measure` (generator, targets,
memory, environment, quality), :mod:`.paths` (running the paths), :mod:`.report` (markdown, JSON).
"""
from __future__ import annotations

from pti.bench.measure import (PeakMemory, build_generator, describe_environment, load_targets,  # noqa: F401
                               reconstruction_quality, synchronize, synthetic_targets)
from pti.bench.paths import run_bench, run_path  # noqa: F401
from pti.bench.report import format_markdown, report_json, section_key, write_section  # noqa: F401
from pti.bench.specs import (ALIASES, DEFAULT_PATHS, GENERATOR_CONFIGS, PAPER_INV_STEPS, PAPER_TUNE_STEPS,  # noqa: F401
                             REPEAT_NAME, BenchConfig, BenchReport, PathResult, PathSpec, parse_path)
