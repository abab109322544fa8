"""Stage 1 of the demo generator's recipe: distil the DigiFace-1M DCGAN into a StyleGAN2.

Adversarial training alone reaches ~24 kimg/h on one CPU thread and was still far from its
source after 58.9 kimg. Here the StyleGAN2 instead *regresses* the DCGAN: both read the same
latent ``z ~ N(0, I_100)`` (the generator's ``z_dim`` equals the DCGAN's ``nz`` = 100) and
``G(z)`` is pulled towards ``DCGAN(z)`` with

    L = |G(z) - DCGAN(z)|_1 + lambda_p * d_P(G(z), DCGAN(z))

where ``d_P`` is the offline EfficientNet-Lite0 feature distance of :mod:`pti.core.perceptual`
(not LPIPS). A supervised target gives a gradient for every pixel, so it converges far faster
than a GAN; what regression cannot give (sharpness, a disentangled W) is left to the
adversarial fine-tune with style mixing of :mod:`pti.train.demo` (stage 2).

Synthesis noise is random during distillation (the target does not depend on it, so G learns
to give it little weight). The mapping network keeps NVIDIA's lr multiplier 0.01 in its
layers; its Adam group runs at ``mapping_lr_scale`` x ``lr`` so that the mapping, which must
learn the whole z -> W change, is not 100x slower than the synthesis.

A run folder holds ``state.pt`` (weights_only-loadable; resumes exactly), ``log.txt`` and
``samples/`` grids (top: G_ema, bottom: the DCGAN, same latents).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pti.stylegan2 import Generator
from pti.train.dcgan_source import DCGAN_Z_DIM, load_dcgan
from pti.train.loop import check_max_seconds, load_progress, open_run, parse_run_args, progress_state, run_parser, \
    run_steps, state_saver

STATE_KIND = "pti-demo-distill-v1"


@dataclass
class DistillConfig:
    """A distillation run. Architecture fields as in :class:`pti.train.demo.TrainDemoConfig`.

    ``lr``: Adam lr of the synthesis (betas (0.9, 0.99)); ``mapping_lr_scale``: the mapping's
    group runs at ``lr * mapping_lr_scale``. ``perceptual_weight``: lambda_p. ``ema_kimg``:
    half-life of G_ema in thousands of images (ramp-up ``ema_rampup`` x images seen).
    ``init``: optional pti ``.safetensors`` generator whose matching tensors start G.
    """

    resolution: int = 64
    w_dim: int = 256
    mapping_layers: int = 8
    channel_base: int = 4096
    channel_max: int = 128
    batch: int = 16
    lr: float = 0.002
    mapping_lr_scale: float = 100.0
    perceptual_weight: float = 1.0
    ema_kimg: float = 2.0
    ema_rampup: float = 0.1
    seed: int = 0
    init: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_student(cfg: DistillConfig) -> Generator:
    """``[N, 100]`` -> ``[N, 3, R, R]``: the demo StyleGAN2 with the DCGAN's latent size."""
    return Generator(z_dim=DCGAN_Z_DIM, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=3,
                     mapping_kwargs={"num_layers": cfg.mapping_layers, "lr_multiplier": 0.01},
                     synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                       "architecture": "skip"})


class Distiller:
    """Holds G, G_ema, the frozen DCGAN teacher and the perceptual distance; :meth:`step` = one update."""

    def __init__(self, cfg: DistillConfig, device: torch.device | str = "cpu") -> None:
        from pti.core.perceptual import load_fallback

        self.cfg, self.device = cfg, torch.device(device)
        torch.manual_seed(cfg.seed)
        self.G = build_student(cfg).to(self.device).train()
        if cfg.init:
            self._warm_start(cfg.init)
        self.G_ema = build_student(cfg).to(self.device).eval().requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.teacher = load_dcgan(self.device)
        self.perceptual = load_fallback(self.device)
        mapping = list(self.G.mapping.parameters())
        ids = {id(p) for p in mapping}
        synthesis = [p for p in self.G.parameters() if id(p) not in ids]
        self.opt = torch.optim.Adam([{"params": synthesis, "lr": cfg.lr},
                                     {"params": mapping, "lr": cfg.lr * cfg.mapping_lr_scale}],
                                    betas=(0.9, 0.99), eps=1e-8)
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(cfg.seed + 1)
        self.nimg, self.step_count, self.train_seconds = 0, 0, 0.0

    def _warm_start(self, path: str) -> None:
        from pti.stylegan2.checkpoints import load

        src = load(path).state_dict()
        own = self.G.state_dict()
        shared = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
        self.G.load_state_dict(shared, strict=False)

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        z = torch.randn([cfg.batch, DCGAN_Z_DIM], generator=self.rng, device=self.device)
        with torch.no_grad():
            target = self.teacher(z[:, :, None, None]).clamp(-1, 1)
            if target.shape[-1] != cfg.resolution:
                target = F.interpolate(target, size=(cfg.resolution,) * 2, mode="area")
        ws = self.G.mapping(z, None, update_w_avg=True)
        img = self.G.synthesis(ws, noise_mode="random")
        l1 = (img - target).abs().mean()
        perc = self.perceptual(img, target).mean()
        loss = l1 + cfg.perceptual_weight * perc
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.update_ema()
        self.nimg += cfg.batch
        self.step_count += 1
        return {"l1": float(l1.detach()), "perceptual": float(perc.detach()), "loss": float(loss.detach())}

    @torch.no_grad()
    def update_ema(self) -> None:
        from pti.train.demo import ema_update

        ema_update(self.G_ema, self.G, self.cfg.batch, min(self.cfg.ema_kimg * 1000, self.nimg * self.cfg.ema_rampup))

    @torch.no_grad()
    def sample_grid(self, path: Path, n: int = 8, seed: int = 1234) -> None:
        """Two rows per 8 latents: G_ema (const noise) above the DCGAN teacher."""
        from pti.images import save_grid

        g = torch.Generator().manual_seed(seed)
        z = torch.randn([2 * n, DCGAN_Z_DIM], generator=g).to(self.device)
        mine = self.G_ema(z, None, noise_mode="const").cpu()
        ref = self.teacher(z[:, :, None, None]).clamp(-1, 1).cpu()
        rows = [mine[:n], ref[:n], mine[n:], ref[n:]]
        save_grid(rows, path, pad=2, title=f"distilled G_ema (rows 1, 3) vs DCGAN (rows 2, 4), "
                                           f"{self.nimg / 1000:.1f} kimg")

    def state_dict(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "config": self.cfg.to_dict(), "G_init_kwargs": self.G.init_kwargs,
                "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "opt": self.opt.state_dict(),
                **progress_state(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_progress(self, state, STATE_KIND, "a distillation state")
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt.load_state_dict(state["opt"])


def distill(cfg: DistillConfig, out_dir: str | Path, kimg: float, export: str | Path | None = None,
            device: str = "cpu", state_interval_s: float = 600.0, grid_interval_s: float = 900.0,
            max_steps: int | None = None, max_seconds: float | None = None, progress: bool = False) -> Distiller:
    """Regress the DCGAN until ``kimg`` thousand images, ``max_steps`` steps, SIGTERM/SIGINT, or
    ``max_seconds`` seconds of wall time since the first step of this call, whichever comes first.

    The time budget is checked before each step (at least one step runs; a step is not cut), so
    a call ends about one step plus the final save after ``max_seconds``; start-up (loading the
    teacher and the perceptual network) is not counted. Resumes from ``out_dir/state.pt`` when
    it exists (its stored config wins). Writes the state on a timer and at the end, however the
    loop stopped; ``export`` (a ``.safetensors`` path) receives G_ema at every state save.
    ``progress`` shows a progress bar (the CLI does).
    Raises ``FloatingPointError`` if the loss becomes non-finite, ``ValueError`` if
    ``max_seconds`` is not positive.
    """
    check_max_seconds(max_seconds)
    from pti.stylegan2.checkpoints import save

    out = Path(out_dir)
    # a resumed run keeps its stored config; its warm start is already in the state (the file may be gone)
    trainer, log, state_path = open_run(
        out, lambda stored: Distiller(cfg if stored is None else DistillConfig(**{**stored, "init": None}), device),
        net="G")
    (out / "samples").mkdir(exist_ok=True)
    save_all = state_saver(trainer, state_path, log,
                           export=None if export is None else lambda: save(trainer.G_ema, Path(export)))

    def grid() -> None:
        trainer.sample_grid(out / "samples" / f"grid_{trainer.nimg // 1000:05d}kimg.png")

    run_steps(trainer, kimg, log, save_all, state_interval_s, max_steps, max_seconds,
              progress="distill" if progress else None, postfix={"L1": "l1"},
              timers=[(grid_interval_s, grid)])
    grid()
    return trainer


def main(argv: list[str] | None = None) -> int:
    p = run_parser("Distil the DCGAN into the demo StyleGAN2 (stage 1).", "run folder (state.pt, log.txt, samples/)")
    p.add_argument("--init", default=None, help="warm start from this pti .safetensors generator")
    p.add_argument("--batch", type=int, default=16, help="images per step")
    p.add_argument("--lr", type=float, default=0.002, help="Adam lr of the synthesis network")
    p.add_argument("--channel-max", type=int, default=128, help="most channels per synthesis layer")
    a = parse_run_args(p, argv)
    cfg = DistillConfig(batch=a.batch, lr=a.lr, channel_max=a.channel_max, init=a.init)
    distill(cfg, a.out, a.kimg, export=a.export, device=a.device, state_interval_s=a.state_interval,
            max_seconds=a.max_seconds, progress=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
