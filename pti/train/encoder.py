"""Train a small e4e encoder for a pti generator on the generator's own samples (issue 19).

The recipe behind ``pti/assets/demo_encoder.safetensors``: the same
:class:`pti.encoders.Encoder4Editing` as the FFHQ e4e, with a small backbone
(:data:`DEMO_ENCODER`), trained on images ``x = G(w)`` of random codes, for which the right
answer ``w`` is known. Losses (e4e, Tov et al. 2021, Sec. 4-5, with a code term that a
generator's own samples allow):

    L = lambda_l2 |G(E(x)) - x|^2 + lambda_p d_P(G(E(x)), x)
        + lambda_code |E(x) - w|^2 + lambda_delta sum_k |Delta_k|_2

``d_P`` is the offline EfficientNet-Lite0 distance of :mod:`pti.core.perceptual` (not LPIPS);
``Delta_k`` are the encoder's per-layer offsets from its base code (e4e's delta
regularisation keeps the codes near W, where edits work). ``G`` is frozen. The samples'
codes are W codes with truncation ``psi ~ U(psi_min, 1)`` and random synthesis noise, so
the encoder sees both typical and average faces.

Entry point: ``python -m pti.train.encoder --generator demo --out train_runs/encoder``;
resumes from ``OUT/state.pt``; ``--export`` receives the encoder (eval mode) at every save.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pti.encoders import E4EConfig, Encoder4Editing, prepare_input
from pti.train.loop import check_max_seconds, load_progress, open_run, parse_run_args, progress_state, run_parser, \
    run_steps, state_saver

STATE_KIND = "pti-encoder-train-v1"

#: the demo encoder: 10 x 256 codes of the 64 px demo generator, ~2.0 M parameters (7.8 MiB)
DEMO_ENCODER = E4EConfig(num_ws=10, w_dim=256, input_size=64, stem_channels=16, stage_channels=(16, 32, 64, 128),
                         stage_units=(1, 1, 2, 1), se_reduction=8, style_channels=64, coarse_styles=3, middle_end=7)


@dataclass
class EncoderTrainConfig:
    """An encoder training run.

    ``generator``: path or name of the (frozen) pti generator. ``encoder``: the encoder's shape;
    its ``num_ws``/``w_dim`` must be the generator's. ``batch``: images per step; ``lr``: Adam
    lr (betas 0.9, 0.999). Loss weights as in the module docstring. ``psi_min``: truncation
    of the training codes is drawn from ``U(psi_min, 1)``. ``init``: path or name of an encoder
    (same :class:`E4EConfig`) whose weights E starts from, e.g. the encoder of an earlier
    generator; its ``latent_avg`` is replaced by this generator's average w.
    """

    generator: str = "demo"
    encoder: E4EConfig = DEMO_ENCODER
    batch: int = 8
    lr: float = 1e-3
    lambda_l2: float = 1.0
    lambda_perceptual: float = 0.8
    lambda_code: float = 10.0
    lambda_delta: float = 1e-3
    psi_min: float = 0.5
    seed: int = 0
    init: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["encoder"] = self.encoder.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderTrainConfig":
        data = dict(data)
        data["encoder"] = E4EConfig.from_dict(data["encoder"])
        return cls(**data)


class EncoderTrainer:
    """Holds E, the frozen G and the perceptual distance; :meth:`step` is one Adam update of E."""

    def __init__(self, cfg: EncoderTrainConfig, device: torch.device | str = "cpu") -> None:
        from pti.core.perceptual import load_fallback
        from pti.stylegan2.checkpoints import load

        self.cfg, self.device = cfg, torch.device(device)
        self.G = load(cfg.generator).to(self.device).eval().requires_grad_(False)
        if (cfg.encoder.num_ws, cfg.encoder.w_dim) != (int(self.G.num_ws), int(self.G.w_dim)):
            raise ValueError(f"the encoder gives [{cfg.encoder.num_ws}, {cfg.encoder.w_dim}] codes but generator "
                             f"{cfg.generator!r} takes [{int(self.G.num_ws)}, {int(self.G.w_dim)}]")
        if getattr(self.G, "c_dim", 0):
            raise ValueError(f"generator {cfg.generator!r} is conditional; the encoder recipe needs an unconditional one")
        torch.manual_seed(cfg.seed)
        self.E = Encoder4Editing(cfg.encoder).to(self.device).train()
        if cfg.init is not None:
            self._warm_start(cfg.init)
        with torch.no_grad():  # codes start from the generator's average w, as e4e's do
            self.E.latent_avg.copy_(self.G.mapping.w_avg.float().expand(cfg.encoder.num_ws, -1))
        self.perceptual = load_fallback(self.device)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=cfg.lr)
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self.nimg, self.step_count, self.train_seconds = 0, 0, 0.0

    def _warm_start(self, init: str) -> None:
        from pti.encoders import load_e4e

        source = load_e4e(init)
        if source.config != self.cfg.encoder:
            raise ValueError(f"--init {init!r} has encoder shape {source.config.to_dict()}, "
                             f"but this run trains {self.cfg.encoder.to_dict()}")
        self.E.load_state_dict(source.state_dict())

    @torch.no_grad()
    def samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [n, 3, R, R], codes [n, num_ws, w_dim])``: random W codes, truncated, random noise."""
        z = torch.randn([n, self.G.z_dim], generator=self.rng).to(self.device)
        psi = (self.cfg.psi_min + (1 - self.cfg.psi_min) * torch.rand([n, 1, 1], generator=self.rng)).to(self.device)
        ws = self.G.mapping(z, None)
        ws = self.G.mapping.w_avg.lerp(ws, psi)  # truncation per sample
        return self.G.synthesis(ws, noise_mode="random").clamp(-1, 1), ws

    def losses(self, x: torch.Tensor, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        w0, deltas = self.E.base_and_deltas(prepare_input(x, cfg.encoder.input_size))
        codes = w0.unsqueeze(1) + deltas + self.E.latent_avg
        rec = self.G.synthesis(codes, noise_mode="const")
        out = {"l2": (rec - x).square().mean(), "perceptual": self.perceptual(rec, x).mean(),
               "code": (codes - ws).square().mean(), "delta": deltas[:, 1:].norm(dim=-1).sum(1).mean()}
        out["loss"] = (cfg.lambda_l2 * out["l2"] + cfg.lambda_perceptual * out["perceptual"]
                       + cfg.lambda_code * out["code"] + cfg.lambda_delta * out["delta"])
        return out

    def step(self) -> dict[str, float]:
        x, ws = self.samples(self.cfg.batch)
        parts = self.losses(x, ws)
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt.step()
        self.nimg += self.cfg.batch
        self.step_count += 1
        return {k: float(v.detach()) for k, v in parts.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "config": self.cfg.to_dict(), "E": self.E.state_dict(),
                "opt": self.opt.state_dict(), **progress_state(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_progress(self, state, STATE_KIND, "an encoder training state")
        self.E.load_state_dict(state["E"])
        self.opt.load_state_dict(state["opt"])


def train_encoder(cfg: EncoderTrainConfig, out_dir: str | Path, kimg: float, export: str | Path | None = None,
                  device: str = "cpu", state_interval_s: float = 600.0, max_seconds: float | None = None,
                  max_steps: int | None = None, progress: bool = False) -> EncoderTrainer:
    """Train until ``kimg`` thousand images, ``max_steps``, ``max_seconds`` of wall time or SIGTERM/SIGINT.

    Resumes from ``out_dir/state.pt`` when it exists (its stored config wins). Writes the state,
    ``log.txt`` and, at every save, the encoder in eval mode to ``export`` (``.safetensors``).
    Raises ``FloatingPointError`` on a non-finite loss (the state of the last save is kept),
    ``ValueError`` if ``max_seconds`` is not positive.
    ``progress`` shows a progress bar (the CLI does).
    """
    check_max_seconds(max_seconds)
    from pti.encoders import save_encoder

    trainer, log, state_path = open_run(
        Path(out_dir), lambda stored: EncoderTrainer(cfg if stored is None else EncoderTrainConfig.from_dict(stored),
                                                     device), net="E")

    def export_eval() -> None:
        was_training = trainer.E.training
        save_encoder(trainer.E.eval(), Path(export))
        trainer.E.train(was_training)

    save_all = state_saver(trainer, state_path, log, export=None if export is None else export_eval)
    run_steps(trainer, kimg, log, save_all, state_interval_s, max_steps, max_seconds,
              progress="train-encoder" if progress else None, postfix={"L2": "l2"})
    return trainer


def main(argv: list[str] | None = None) -> int:
    p = run_parser("Train a small e4e encoder on a pti generator's own samples.", "run folder (state.pt, log.txt)",
                   kimg_default=100.0)
    p.add_argument("--generator", default="demo", help="pti generator path or name (frozen)")
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lambda-code", type=float, default=10.0, help="weight of the code regression")
    p.add_argument("--lambda-delta", type=float, default=1e-3, help="weight of e4e's delta regularisation")
    p.add_argument("--init", default=None, help="encoder (.safetensors or name) to start from; its latent_avg is reset")
    a = parse_run_args(p, argv)
    cfg = EncoderTrainConfig(generator=a.generator, batch=a.batch, lr=a.lr, lambda_code=a.lambda_code,
                             lambda_delta=a.lambda_delta, init=a.init)
    train_encoder(cfg, a.out, a.kimg, export=a.export, device=a.device, state_interval_s=a.state_interval,
                  max_seconds=a.max_seconds, progress=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
