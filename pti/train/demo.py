"""Train the small demo StyleGAN2 on DCGAN faces (the recipe behind ``pti/assets/demo_generator``).

Generator: this project's :class:`pti.stylegan2.Generator` (64x64, 'skip' architecture).
Training data: faces sampled on the fly from the DigiFace-1M DCGAN of ``gan-face-generate``
(:mod:`pti.train.dcgan_source`). Objective (StyleGAN2): non-saturating logistic loss, lazy
R1 penalty on real images (gradient of the discriminator's score with respect to the real
image before augmentation), generator EMA with ramp-up, style mixing, mapping network at
lr x 0.01 and ``w_avg`` tracking. Discriminator: a Projected GAN discriminator on frozen
EfficientNet-Lite0 features (:mod:`pti.train.projected_d`) with DiffAugment
(:mod:`pti.train.augment`) on both real and fake images.

A run directory holds ``state.pt`` (everything needed to resume, loadable with
``torch.load(weights_only=True)``), ``log.txt``, ``samples/*.png`` grids, and, on their own
schedules, the exported generator (``demo_generator.safetensors``) and a compact resume copy
(``demo_resume.pt``). Nothing is written into the installed package unless asked for by path.

Entry point: :func:`train` (also ``pti train-demo``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pti.io_utils import atomic_torch_save
from pti.stylegan2 import Generator
from pti.train.augment import diff_augment
from pti.train.dcgan_source import DCGANFaceSource
from pti.train.demo_state import compact_state, export_generator, find_resume_state, load_state  # noqa: F401
from pti.train.loop import RunLog, run_steps
from pti.train.projected_d import ProjectedDConfig, ProjectedDiscriminator

STATE_VERSION = 2  # 2: D heads with minibatch stddev
#: hyperparameters that may change when a run is resumed (the architecture may not)
RESUME_OVERRIDABLE = ("r1_gamma", "r1_interval", "g_lr", "d_lr", "style_mixing_prob", "ema_kimg", "ema_rampup",
                      "distill_weight", "augment")
#: file names, inside the run folder, of the exported G_ema and of the compact resume copy. No
#: state is committed: the 58.9 kimg run's ``demo_resume.pt`` left the source tree (issue 18: it
#: kept the GPU device call over its size limit); that run's G_ema is ``pti/assets/demo_generator``.
EXPORT_NAME = "demo_generator.safetensors"
RESUME_COPY_NAME = "demo_resume.pt"


@dataclass
class TrainDemoConfig:
    """Everything that defines a training run (saved in the state; resuming keeps it).

    Generator: ``z_dim``/``w_dim``, ``mapping_layers``, synthesis ``channel_base`` /
    ``channel_max`` (channels at resolution r are ``min(channel_base / r, channel_max)``),
    ``resolution`` (DCGAN faces are 64x64; other values resize them, for tests).
    Optimisation: Adam with betas (0, 0.99), ``g_lr`` for G and ``d_lr`` for the D heads
    (equalised-lr layers; 0.002 let them learn too slowly and G collapsed), ``batch`` images per step.
    ``r1_gamma`` and ``r1_interval``: lazy R1 on reals. ``ema_kimg``: EMA half-life in
    thousands of images, ramped up as ``min(ema_kimg, ema_rampup * kimg seen)``.
    ``style_mixing_prob``: per-sample probability of mixing two latents at a random cutoff.
    ``augment``: DiffAugment policies applied before D. ``calib_images``: real images (from a
    separate seed) used once to fix D's feature scales. ``d``: discriminator settings.
    ``init``: a pti ``.safetensors`` generator that G and G_ema start from (stage 2 of the
    recipe: the fine-tune of the distilled generator of :mod:`pti.train.distill`); its
    architecture must be the one these fields describe (:func:`config_for_init` reads it).
    ``d_warmup_kimg``: with ``init``, D alone is trained on the first this-many thousand
    images, so that the pretrained G is not pushed around by an untrained D.
    ``distill_weight``: weight of the distillation anchor in G's loss (0: off). The G samples of
    a step that are not style-mixed are pulled towards the DCGAN's image for the same z, with
    the L1 + perceptual loss of :mod:`pti.train.distill` (needs ``z_dim`` = the DCGAN's 100). It
    keeps the fine-tune on the distilled faces while the adversarial loss sharpens them: without
    it the first 4 kimg from the distilled generator turned its faces into masks.
    """

    resolution: int = 64
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 8
    channel_base: int = 4096
    channel_max: int = 128
    batch: int = 16
    g_lr: float = 0.002
    d_lr: float = 0.005
    r1_gamma: float = 0.01
    r1_interval: int = 16
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    style_mixing_prob: float = 0.9
    augment: tuple[str, ...] = ("color", "translation", "cutout")
    calib_images: int = 64
    d: ProjectedDConfig = field(default_factory=ProjectedDConfig)
    seed: int = 0
    init: str | None = None
    d_warmup_kimg: float = 0.0
    distill_weight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["augment"] = list(self.augment)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainDemoConfig":
        data = dict(data)
        data["d"] = ProjectedDConfig(**data.get("d", {}))
        data["augment"] = tuple(data.get("augment", ()))
        return cls(**data)


@dataclass
class ScheduleConfig:
    """When and where a run writes things.

    Intervals are seconds of wall time (0 disables); ``log_interval_steps`` (>= 1) counts steps. ``export_path`` (G_ema as a pti
    ``.safetensors``) and ``resume_copy_path`` (the compact resume state, which ``resume='auto'``
    also considers): a relative path is inside the run folder, None writes nothing.
    """

    state_interval_s: float = 600.0
    grid_interval_s: float = 600.0
    export_interval_s: float = 900.0
    export_path: Path | None = Path(EXPORT_NAME)
    resume_copy_path: Path | None = Path(RESUME_COPY_NAME)
    log_interval_steps: int = 20


def build_generator(cfg: TrainDemoConfig) -> Generator:
    """The demo generator architecture: ``[N, z_dim]`` -> ``[N, 3, resolution, resolution]``."""
    return Generator(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=3,
                     mapping_kwargs={"num_layers": cfg.mapping_layers, "lr_multiplier": 0.01},
                     synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                       "architecture": "skip"})


def config_for_init(cfg: TrainDemoConfig, init: str | Path) -> TrainDemoConfig:
    """``cfg`` with ``init`` set and its architecture fields read from the generator file ``init``.

    Raises :class:`pti.stylegan2.checkpoints.CheckpointError` for a file that is not a pti
    generator, ``ValueError`` for a generator this trainer cannot continue (conditional,
    not RGB, not the 'skip' architecture, or another mapping lr multiplier).
    """
    from pti.stylegan2.checkpoints import load

    G = load(str(init))
    kw = G.init_kwargs
    syn, mapping = kw.get("synthesis_kwargs", {}), kw.get("mapping_kwargs", {})
    if (kw.get("c_dim", 0) != 0 or kw.get("img_channels", 3) != 3 or syn.get("architecture", "skip") != "skip"
            or mapping.get("lr_multiplier", 0.01) != 0.01):
        raise ValueError(f"{init}: train-demo continues only unconditional RGB 'skip' generators with mapping "
                         f"lr multiplier 0.01; this one has {kw}")
    return dataclasses.replace(cfg, init=str(init), z_dim=int(kw["z_dim"]), w_dim=int(kw["w_dim"]),
                               resolution=int(kw["img_resolution"]),
                               mapping_layers=int(mapping.get("num_layers", cfg.mapping_layers)),
                               channel_base=int(syn.get("channel_base", cfg.channel_base)),
                               channel_max=int(syn.get("channel_max", cfg.channel_max)))


@torch.no_grad()
def ema_update(G_ema: Generator, G: Generator, batch: int, ema_nimg: float) -> None:
    """StyleGAN2's generator EMA: half-life ``ema_nimg`` images, ``batch`` images per step; buffers copied."""
    beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def _seeded(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


class DemoTrainer:
    """One StyleGAN2 + projected-discriminator training run; :meth:`step` does one G and one D update.

    All randomness is drawn from explicit generators (latents/mixing, augmentation, data)
    plus the global torch RNG (the synthesis layers' random noise); :meth:`state_dict`
    stores all of them, so a resumed run continues exactly as an uninterrupted one would.
    """

    def __init__(self, cfg: TrainDemoConfig, device: torch.device | str = "cpu", load_init: bool = True) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.G = build_generator(cfg).to(self.device).train()
        if cfg.init and load_init:  # not when a state is loaded next (the file may be gone by then)
            from pti.stylegan2.checkpoints import load

            self.G.load_state_dict(load(cfg.init).state_dict())  # strict: config_for_init set the architecture
        self.G_ema = build_generator(cfg).to(self.device).eval().requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.D = ProjectedDiscriminator(cfg.d, seed=cfg.seed + 1).to(self.device).train()
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=(0.0, 0.99), eps=1e-8)
        self.D_opt = torch.optim.Adam(self.D.heads.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99), eps=1e-8)
        self.source = DCGANFaceSource(seed=cfg.seed + 2, device=self.device)
        self.latent_rng = _seeded(cfg.seed + 3, self.device)
        self.aug_rng = _seeded(cfg.seed + 4, self.device)
        self.teacher = self.perceptual = None
        if cfg.distill_weight > 0:
            from pti.core.perceptual import load_fallback
            from pti.train.dcgan_source import DCGAN_Z_DIM, load_dcgan

            if cfg.z_dim != DCGAN_Z_DIM:
                raise ValueError(f"distill_weight > 0 needs z_dim {DCGAN_Z_DIM} (the DCGAN's), got {cfg.z_dim}")
            self.teacher, self.perceptual = load_dcgan(self.device), load_fallback(self.device)
        self.step_count = 0
        self.nimg = 0
        self.train_seconds = 0.0  # wall time spent in step() over all sessions of the run
        # fixed feature scales of D from real images that are not drawn from the training stream
        calib = DCGANFaceSource(seed=cfg.seed + 5, device=self.device).next_batch(cfg.calib_images)
        if calib.shape[-1] != cfg.resolution:
            calib = F.interpolate(calib, size=(cfg.resolution,) * 2, mode="area")
        self.D.calibrate(calib)

    # ---------------------------------------------------------------- sampling
    def real_batch(self, n: int) -> torch.Tensor:
        """``[n, 3, R, R]`` DCGAN faces in [-1, 1] at the training resolution."""
        x = self.source.next_batch(n)
        if x.shape[-1] != self.cfg.resolution:
            x = F.interpolate(x, size=(self.cfg.resolution,) * 2, mode="area")
        return x

    def mixed_ws(self, G: Generator, n: int, update_w_avg: bool, z: torch.Tensor | None = None) -> torch.Tensor:
        """``ws [n, num_ws, w_dim]`` with per-sample style mixing (prob ``style_mixing_prob``); ``z``: the
        first latents (drawn here when None). Unmixed rows use ``z`` alone on every layer."""
        if z is None:
            z = torch.randn([n, G.z_dim], generator=self.latent_rng, device=self.device)
        ws = G.mapping(z, None, update_w_avg=update_w_avg)
        if self.cfg.style_mixing_prob > 0:
            z2 = torch.randn([n, G.z_dim], generator=self.latent_rng, device=self.device)
            ws2 = G.mapping(z2, None)
            cutoff = torch.randint(1, G.num_ws, [n, 1], generator=self.latent_rng, device=self.device)
            mix = torch.rand([n, 1], generator=self.latent_rng, device=self.device) < self.cfg.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, G.num_ws))
            use_second = torch.arange(G.num_ws, device=self.device).view(1, -1) >= cutoff  # [n, num_ws]
            ws = torch.where(use_second.unsqueeze(-1), ws2, ws)
        return ws

    def run_D(self, img: torch.Tensor) -> list[torch.Tensor]:
        return self.D(diff_augment(img, self.cfg.augment, generator=self.aug_rng))

    # ---------------------------------------------------------------- one step
    def step(self) -> dict[str, float]:
        """One D update (with lazy R1) then one G update and the EMA; returns scalar stats."""
        cfg, B = self.cfg, self.cfg.batch
        stats: dict[str, float] = {}

        # discriminator
        self.D.heads.requires_grad_(True)
        with torch.no_grad():
            fake = self.G.synthesis(self.mixed_ws(self.G, B, update_w_avg=False))
        real = self.real_batch(B)
        do_r1 = cfg.r1_gamma > 0 and cfg.r1_interval > 0 and self.step_count % cfg.r1_interval == 0
        real = real.detach().requires_grad_(do_r1)
        fake_logits = self.run_D(fake)
        real_logits = self.run_D(real)
        loss_fake = sum(F.softplus(l).mean() for l in fake_logits)
        loss_real = sum(F.softplus(-l).mean() for l in real_logits)
        loss_D = loss_fake + loss_real
        if do_r1:
            score = sum(l.flatten(1).mean(1) for l in real_logits)
            (grad,) = torch.autograd.grad(score.sum(), real, create_graph=True)
            penalty = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_D = loss_D + penalty * (cfg.r1_gamma / 2) * cfg.r1_interval
            stats["r1_penalty"] = float(penalty.detach())
        self.D_opt.zero_grad(set_to_none=True)
        loss_D.backward()
        self.D_opt.step()
        stats.update(fake_div=float(fake.std(dim=0).mean()),  # per-pixel std over the batch: ~0 = collapse
                     real_div=float(real.detach().std(dim=0).mean()),
                     loss_D=float(loss_fake.detach() + loss_real.detach()),
                     D_real=float(sum(l.detach().mean() for l in real_logits)),
                     D_fake=float(sum(l.detach().mean() for l in fake_logits)))

        # generator (not while D warms up on a pretrained G)
        self.nimg += B
        self.step_count += 1
        if self.nimg <= cfg.d_warmup_kimg * 1000:
            return stats
        self.D.heads.requires_grad_(False)
        z = torch.randn([B, self.G.z_dim], generator=self.latent_rng, device=self.device)
        ws = self.mixed_ws(self.G, B, update_w_avg=True, z=z)
        fake = self.G.synthesis(ws)
        loss_G = sum(F.softplus(-l).mean() for l in self.run_D(fake))
        stats["loss_G_adv"] = float(loss_G.detach())
        if self.teacher is not None:
            # the rows whose every layer took z (not style-mixed) have a DCGAN target
            plain = (ws == ws[:, :1]).all(dim=2).all(dim=1)
            if bool(plain.any()):
                with torch.no_grad():
                    target = self.teacher(z[plain][:, :, None, None]).clamp(-1, 1)
                    if target.shape[-1] != cfg.resolution:
                        target = F.interpolate(target, size=(cfg.resolution,) * 2, mode="area")
                l1 = (fake[plain] - target).abs().mean()
                perc = self.perceptual(fake[plain], target).mean()
                loss_G = loss_G + cfg.distill_weight * (l1 + perc)
                stats.update(distill_l1=float(l1.detach()), distill_perceptual=float(perc.detach()))
        self.G_opt.zero_grad(set_to_none=True)
        loss_G.backward()
        self.G_opt.step()
        stats["loss_G"] = float(loss_G.detach())
        self.update_ema()
        return stats

    @torch.no_grad()
    def update_ema(self) -> None:
        ema_nimg = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * self.cfg.ema_rampup)
        ema_update(self.G_ema, self.G, self.cfg.batch, ema_nimg)

    # ---------------------------------------------------------------- samples
    @torch.no_grad()
    def sample_grid(self, path: Path, n: int = 64, seed: int = 1234, truncation_psi: float = 1.0) -> None:
        """Write an ``sqrt(n)``-column grid of G_ema samples (fixed latents, const noise) to ``path``."""
        from pti.images import save_grid

        cols = int(math.sqrt(n))
        g = _seeded(seed, torch.device("cpu"))
        z = torch.randn([n, self.G_ema.z_dim], generator=g).to(self.device)
        img = self.G_ema(z, None, truncation_psi=truncation_psi, noise_mode="const").cpu()
        save_grid([img[i:i + cols] for i in range(0, n, cols)], path, pad=2,
                  title=f"G_ema at {self.nimg / 1000:.1f} kimg, psi={truncation_psi}")

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (plain tensors, numbers, strings: ``weights_only``-loadable)."""
        return {
            "version": STATE_VERSION,
            "config": self.cfg.to_dict(),
            "G_init_kwargs": self.G.init_kwargs,
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.trainable_state_dict(),
            "G_opt": self.G_opt.state_dict(),
            "D_opt": self.D_opt.state_dict(),
            "step": self.step_count,
            "nimg": self.nimg,
            "train_seconds": self.train_seconds,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
                    "latent": self.latent_rng.get_state(), "aug": self.aug_rng.get_state(),
                    "source": self.source.state_dict()["rng"]},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"training state version {state.get('version')} != {STATE_VERSION}")
        as_fp32 = lambda sd: {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}  # noqa: E731
        self.G.load_state_dict(as_fp32(state["G"]))
        self.G_ema.load_state_dict(as_fp32(state["G_ema"]))
        self.D.load_trainable_state_dict(as_fp32(state["D"]))
        self.G_opt.load_state_dict(state["G_opt"])
        self.D_opt.load_state_dict(state["D_opt"])
        for opt, lr in ((self.G_opt, self.cfg.g_lr), (self.D_opt, self.cfg.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr  # the configuration (possibly changed on resume) wins
        self.step_count, self.nimg = int(state["step"]), int(state["nimg"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"])
        self.latent_rng.set_state(rng["latent"])
        self.aug_rng.set_state(rng["aug"])
        self.source.load_state_dict({"rng": rng["source"]})


def train(cfg: TrainDemoConfig, out_dir: str | Path, kimg: float, resume: str = "auto",
          device: str | None = None, schedule: ScheduleConfig | None = None, max_steps: int | None = None,
          progress: bool = True, resume_overrides: set[str] | None = None) -> DemoTrainer:
    """Train until ``kimg`` thousand images have been seen (or ``max_steps`` steps, or SIGTERM/SIGINT).

    Resuming replaces ``cfg`` by the configuration stored in the state, except the fields
    named in ``resume_overrides`` (only those in :data:`RESUME_OVERRIDABLE`), which take
    ``cfg``'s values. Writes
    ``out_dir/state.pt``, ``log.txt`` and ``samples/`` on the ``schedule``; the state is also
    written when the run ends, reaches ``max_steps`` or is stopped by SIGTERM/SIGINT. A non-finite
    loss raises ``FloatingPointError`` and writes nothing (see :func:`pti.train.loop.run_steps`).
    """
    schedule = schedule or ScheduleConfig()
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "log.txt")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    export_path = None if schedule.export_path is None else out / schedule.export_path
    resume_copy_path = None if schedule.resume_copy_path is None else out / schedule.resume_copy_path
    resume_path = find_resume_state(out, resume, resume_copy_path)
    state = None
    changed: dict[str, Any] = {}
    if resume_path is not None:
        state = load_state(resume_path)
        stored = TrainDemoConfig.from_dict(state["config"])
        changed = {k: getattr(cfg, k) for k in RESUME_OVERRIDABLE
                   if k in (resume_overrides or ()) and getattr(cfg, k) != getattr(stored, k)}
        cfg = dataclasses.replace(stored, **changed)
    trainer = DemoTrainer(cfg, dev, load_init=state is None)
    if state is not None:
        trainer.load_state_dict(state)
        log(f"resumed from {resume_path} at {trainer.nimg / 1000:.2f} kimg (step {trainer.step_count})")
        if changed:
            log(f"changed on resume: {changed}")
    else:
        log(f"new run: {cfg.to_dict()}")
    log(f"device {dev}, torch threads {torch.get_num_threads()}, "
        f"G {sum(p.numel() for p in trainer.G.parameters()) / 1e6:.2f} M params, "
        f"D heads {sum(p.numel() for p in trainer.D.heads.parameters()) / 1e6:.2f} M params")

    def save_state() -> None:
        st = trainer.state_dict()
        atomic_torch_save(st, out / "state.pt")
        log(f"saved state at {trainer.nimg / 1000:.2f} kimg ({trainer.train_seconds / 3600:.2f} h of training)")

    def save_assets() -> None:
        if export_path is not None:
            log(export_generator(trainer.G_ema, export_path))
        if resume_copy_path is not None:
            atomic_torch_save(compact_state(trainer.state_dict()), resume_copy_path)
            log(f"wrote resume copy {resume_copy_path} ({resume_copy_path.stat().st_size / 1e6:.1f} MB)")

    def save_grid() -> None:
        trainer.sample_grid(out / "samples" / f"grid_{trainer.nimg // 1000:06d}kimg.png")

    if state is None:
        save_grid()
    reason = run_steps(trainer, kimg, log, save_state, schedule.state_interval_s, max_steps,
                       timers=[(schedule.grid_interval_s, save_grid), (schedule.export_interval_s, save_assets)],
                       log_every=schedule.log_interval_steps, progress="train-demo" if progress else None,
                       postfix={"D": "loss_D", "G": "loss_G"},
                       nonfinite_hint="; lower the learning rates or raise r1_gamma and resume "
                                      "(--resume auto: the last save, if there is one)")
    save_assets()  # the shipped checkpoint and resume copy always match the last state
    save_grid()
    if reason == "signal":
        log("resume with --resume auto")
    return trainer
