"""Presets of ``pti bench`` (no torch import: ``pti --help`` reads them)."""
from __future__ import annotations

from typing import Any

GENERATOR_CONFIGS: dict[str, dict[str, Any]] = {
    # StyleGAN2 config-f at 1024 (FFHQ), as in StyleGAN2-ADA's converted pickles: 30.4M parameters.
    "f1024": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                  mapping_kwargs={"num_layers": 8, "lr_multiplier": 0.01},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4,
                                    "conv_clamp": 256}),
    # the 64x64 demo generator's architecture (pti train-demo defaults)
    "demo64": dict(z_dim=256, c_dim=0, w_dim=256, img_resolution=64, img_channels=3,
                   mapping_kwargs={"num_layers": 8, "lr_multiplier": 0.01},
                   synthesis_kwargs={"channel_base": 4096, "channel_max": 128, "architecture": "skip"}),
    # the architecture that ../shared/peers/official_pti_bench.py times as `--config demo64` (NVIDIA's Generator:
    # z = w = 512, 8 mapping layers, channel_base 8192, channel_max 256, skip, no fp16, no clamp): pti side by side
    "official64": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=64, img_channels=3,
                       mapping_kwargs={"num_layers": 8, "lr_multiplier": 0.01},
                       synthesis_kwargs={"channel_base": 8192, "channel_max": 256, "architecture": "skip"}),
    # a toy for smoke tests
    "tiny": dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                 mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 512, "channel_max": 32}),
}

DEFAULT_PATHS = {
    "cpu": "baseline,foreach,fused,bf16,channels-last,nosync,batched:4,batched:4+nosync",
    "cuda": ("baseline,fused,bf16,fp16,fp16-layers,fp16-layers+channels-last,lpips256,nosync,ref-ops,compile,"
             "batched:auto,fast,fast+lpips256,fast+compile"),
}
ALIASES = {"fast": "batched:auto+bf16+nosync"}
#: how ``pti bench`` chooses the perceptual networks it times with (``--perceptual``)
PERCEPTUAL_MODES = ("auto", "random", "effnet")
