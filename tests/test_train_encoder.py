"""The demo encoder's recipe (pti.train.encoder): losses, learning, exact resume, refusals."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_generator
from pti.encoders import E4EConfig, load_e4e
from pti.stylegan2.checkpoints import save
from pti.train.encoder import DEMO_ENCODER, EncoderTrainConfig, EncoderTrainer, train_encoder

TINY_E = E4EConfig(num_ws=6, w_dim=32, input_size=32, stem_channels=8, stage_channels=(8, 12, 16, 24),
                   stage_units=(1, 1, 1, 1), se_reduction=4, style_channels=16, coarse_styles=2, middle_end=4)


@pytest.fixture
def tiny(tmp_path: Path) -> EncoderTrainConfig:
    torch.set_num_threads(1)
    path = tmp_path / "g.safetensors"
    save(make_tiny_generator(resolution=16), path)
    return EncoderTrainConfig(generator=str(path), encoder=TINY_E, batch=4, lr=3e-3, seed=2)


def test_demo_encoder_shape_fits_the_demo_generator():
    from pti.encoders import Encoder4Editing

    assert (DEMO_ENCODER.num_ws, DEMO_ENCODER.w_dim, DEMO_ENCODER.input_size) == (10, 256, 64)
    n = sum(p.numel() for p in Encoder4Editing(DEMO_ENCODER).parameters())
    assert n * 4 < 10e6  # the 10 MB budget for the shipped file (fp32)


def test_steps_lower_the_loss_on_a_fixed_batch(tiny: EncoderTrainConfig):
    trainer = EncoderTrainer(tiny)
    x, ws = trainer.samples(4)
    assert x.shape == (4, 3, 16, 16) and ws.shape == (4, 6, 32)
    first = trainer.losses(x, ws)
    assert set(first) == {"l2", "perceptual", "code", "delta", "loss"}
    for _ in range(15):
        loss = trainer.losses(x, ws)["loss"]
        trainer.opt.zero_grad()
        loss.backward()
        trainer.opt.step()
    last = trainer.losses(x, ws)
    # measured over seeds 2, 3, 4 (15 Adam steps at lr 3e-3, the default weights): the loss fell to
    # 0.46-0.50 of its start, the code term to 0.43-0.50; an optimiser that does nothing leaves 1.0
    assert float(last["loss"]) < 0.7 * float(first["loss"])
    assert float(last["code"]) < 0.7 * float(first["code"])
    assert not any(p.requires_grad for p in trainer.G.parameters())  # G stays frozen


def test_resume_continues_exactly_and_export_loads(tiny: EncoderTrainConfig, tmp_path: Path):
    straight = train_encoder(tiny, tmp_path / "a", kimg=1, max_steps=3)
    train_encoder(tiny, tmp_path / "b", kimg=1, max_steps=2, export=tmp_path / "b" / "e.safetensors")
    resumed = train_encoder(tiny, tmp_path / "b", kimg=1, max_steps=1)
    assert resumed.step_count == straight.step_count == 3
    for (k, a), b in zip(straight.E.state_dict().items(), resumed.E.state_dict().values()):
        assert torch.equal(a, b), k  # same kernels, same order: measured max |diff| 0
    enc = load_e4e(tmp_path / "b" / "e.safetensors")
    assert enc.config == TINY_E and not enc.training
    assert "resumed at 0.01 kimg" in (tmp_path / "b" / "log.txt").read_text()


def test_an_encoder_for_another_generator_is_refused(tiny: EncoderTrainConfig):
    with pytest.raises(ValueError, match=r"\[10, 256\] codes but generator .* takes \[6, 32\]"):
        EncoderTrainer(dataclasses.replace(tiny, encoder=DEMO_ENCODER))


def test_init_warm_starts_from_an_encoder_and_resets_latent_avg(tiny: EncoderTrainConfig, tmp_path: Path):
    from pti.encoders import save_encoder

    source = EncoderTrainer(dataclasses.replace(tiny, seed=7)).E.eval()
    with torch.no_grad():
        source.latent_avg.fill_(5.0)  # an earlier generator's average w
    save_encoder(source, tmp_path / "src.safetensors")
    warm = EncoderTrainer(dataclasses.replace(tiny, init=str(tmp_path / "src.safetensors")))
    cold = EncoderTrainer(tiny)
    for key, value in source.state_dict().items():
        if key == "latent_avg":
            assert torch.equal(warm.E.latent_avg, cold.E.latent_avg)  # this generator's w_avg, not 5.0
        else:
            assert torch.equal(warm.E.state_dict()[key], value), key
    first = "input_layer.0.weight"
    assert not torch.equal(cold.E.state_dict()[first], source.state_dict()[first])  # seed 2 vs 7: the copy is real

def test_init_of_another_shape_is_refused(tiny: EncoderTrainConfig, tmp_path: Path):
    from pti.encoders import Encoder4Editing, save_encoder

    save_encoder(Encoder4Editing(dataclasses.replace(TINY_E, style_channels=8)).eval(), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="has encoder shape"):
        EncoderTrainer(dataclasses.replace(tiny, init=str(tmp_path / "other.safetensors")))
