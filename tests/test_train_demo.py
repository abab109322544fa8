"""The demo-generator recipe (pti.train): data source, augmentation, a few real training steps, resume,
where `pti train-demo` writes, quality metric."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch

from pti.train.augment import diff_augment, parse_policies
from pti.train.dcgan_source import DCGANFaceSource
from pti.train.demo import (DemoTrainer, ScheduleConfig, TrainDemoConfig, compact_state, find_resume_state,
                            load_state, train)
from pti.train.projected_d import ProjectedDConfig

# the training data comes from gan-face-generate's DCGAN: part of the `train` extra
needs_dcgan = pytest.mark.skipif(importlib.util.find_spec("gan_face_generate") is None,
                                 reason="gan-face-generate is not installed (pip install 'pti[train]')")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: with two, the R1 double backward through the depthwise convolutions
    slows down 10-30x when the 2 cores are shared with other jobs (measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(**kw) -> TrainDemoConfig:
    cfg = TrainDemoConfig(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=32,
                          batch=2, r1_interval=2, calib_images=8, r1_gamma=0.1, ema_kimg=0.01, ema_rampup=None,
                          d=ProjectedDConfig(input_resolution=128, ccm_channels=8, head_channels_max=16), seed=3)
    return dataclasses.replace(cfg, **kw)


@needs_dcgan
def test_dcgan_source_gives_64px_faces_in_range_and_is_seeded():
    a = DCGANFaceSource(seed=5).next_batch(4)
    b = DCGANFaceSource(seed=5).next_batch(4)
    assert a.shape == (4, 3, 64, 64) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert a.std() > 0.2  # real images, not a constant
    assert (a[0] - a[1]).abs().mean() > 0.05  # different faces (measured std 0.44, mean difference 0.48)
    torch.testing.assert_close(a, b)  # the same seed in the same process: measured max |diff| 0


def test_diff_augment_keeps_shape_and_passes_gradients():
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    y = diff_augment(x * 2 - 1, generator=g)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        diff_augment(x, ["rotate"])


def test_parse_policies_reads_none_and_lists_and_refuses_the_rest():
    assert parse_policies(" none ") == ()
    assert parse_policies("color, cutout") == ("color", "cutout")
    for bad in ("", ",", "color,rotate", "None"):
        with pytest.raises(ValueError, match="takes 'none' or policies"):
            parse_policies(bad)


@needs_dcgan
def test_training_steps_ema_and_exact_resume(tmp_path):
    t = DemoTrainer(tiny_config())
    ema0 = [p.clone() for p in t.G_ema.parameters()]
    g0 = [p.clone() for p in t.G.parameters()]
    for _ in range(3):
        stats = t.step()
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
    assert "r1_penalty" in stats or t.step_count % 2 == 1
    assert any(not torch.equal(a, b) for a, b in zip(g0, t.G.parameters())), "G did not train"
    assert any(not torch.equal(a, b) for a, b in zip(ema0, t.G_ema.parameters())), "EMA did not move"
    assert any(not torch.equal(a, b) for a, b in zip(t.G.parameters(), t.G_ema.parameters())), "EMA equals G"
    assert not torch.equal(t.G.mapping.w_avg, torch.zeros_like(t.G.mapping.w_avg)), "w_avg not tracked"

    state_path = tmp_path / "state.pt"
    torch.save(t.state_dict(), state_path)
    for _ in range(2):
        t.step()
    expected = {k: v.clone() for k, v in t.G.state_dict().items()}

    resumed = DemoTrainer(tiny_config(seed=99))  # different init: everything must come from the state
    resumed.load_state_dict(load_state(state_path))
    for _ in range(2):
        resumed.step()
    for k, v in resumed.G.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0, msg=f"resume diverged at {k}")

    small = compact_state(t.state_dict())
    assert small["G"]["synthesis.b4.const"].dtype == torch.float16
    resumed.load_state_dict(small)  # loads (weights and moments cast back to float32)
    assert resumed.G.synthesis.b4.const.dtype == torch.float32
    assert resumed.G_opt.state_dict()["state"][0]["exp_avg_sq"].dtype == torch.float32
    # float16 keeps 11 significant bits: |error| <= 2^-11 |x| = 4.9e-4 |x| < rtol |x|, a rounding bound whatever
    # the trained values (measured max rel 4.8e-4, max |diff| 8.9e-4 to 9.7e-4 under the kernel settings of issue 14)
    torch.testing.assert_close(resumed.G.synthesis.b4.const, t.G.synthesis.b4.const, rtol=1e-3, atol=1e-3)


@needs_dcgan
def test_train_writes_state_log_and_grid(tmp_path):
    out = tmp_path / "run"
    schedule = ScheduleConfig(state_interval_s=0, grid_interval_s=0, export_interval_s=0, export_path=None,
                              resume_copy_path=None, log_interval_steps=1)
    t = train(tiny_config(), out, kimg=1, resume="auto", device="cpu", schedule=schedule, max_steps=2,
              progress=False)
    assert t.nimg == 4
    assert (out / "state.pt").is_file() and len(list((out / "samples").glob("grid_*.png"))) >= 1
    log = (out / "log.txt").read_text()
    assert "loss_G" in log and "sec/kimg" in log
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["nimg"] == 4
    # resuming picks the state up and continues from 4 images; the architecture comes from the
    # state, an allowed hyperparameter from the caller
    t2 = train(tiny_config(r1_gamma=0.5, z_dim=64), out, kimg=1, resume="auto", device="cpu", schedule=schedule,
               max_steps=1, progress=False, resume_overrides={"r1_gamma", "z_dim"})
    log = (out / "log.txt").read_text()
    assert t2.nimg == 6 and "resumed from" in log and "changed on resume: {'r1_gamma': 0.5}" in log
    assert t2.cfg.r1_gamma == 0.5 and t2.cfg.z_dim == 32


@needs_dcgan
def test_train_exports_the_generator_when_it_ends(tmp_path):
    from pti.stylegan2.checkpoints import load

    out, export, resume_copy = tmp_path / "run", tmp_path / "g.safetensors", tmp_path / "resume.pt"
    # export intervals off: the export happens because the run ended (as after a stop signal)
    schedule = ScheduleConfig(state_interval_s=0, grid_interval_s=0, export_interval_s=0, export_path=export,
                              resume_copy_path=resume_copy, log_interval_steps=1)
    t = train(tiny_config(), out, kimg=1, resume="auto", device="cpu", schedule=schedule, max_steps=1,
              progress=False)
    G = load(export)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), t.G_ema.state_dict().values()))
    assert resume_copy.is_file()


@needs_dcgan
def test_mtcnn_metric_finds_dcgan_faces_and_not_flat_images():
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is not installed (pip install --no-deps "
                                                  "facenet-pytorch==2.6.0)")
    from pti.train.quality import count_faces, load_mtcnn

    mtcnn = load_mtcnn()
    faces = DCGANFaceSource(seed=1).next_batch(8)
    assert count_faces(mtcnn, faces) >= 6
    flat = torch.zeros(4, 3, 64, 64)
    assert count_faces(mtcnn, flat) == 0


@needs_dcgan
def test_quality_figures_and_state_loading(tmp_path):
    from PIL import Image

    from pti.train.quality import generator_sampler, load_demo_generator, style_mixing_figure, truncation_figure

    t = DemoTrainer(tiny_config())
    t.step()
    torch.save(t.state_dict(), tmp_path / "state.pt")
    G = load_demo_generator(tmp_path / "state.pt")  # a train-demo state gives its G_ema
    for k, v in G.state_dict().items():
        torch.testing.assert_close(v, t.G_ema.state_dict()[k], rtol=0, atol=0)
    a = generator_sampler(G, 1.0, seed=0)(3)
    b = generator_sampler(G, 0.0, seed=0)(3)
    assert a.shape == (3, 3, 16, 16)
    assert (b[0] - b[1]).abs().max() < 1e-5  # psi=0: every sample is the average image (measured: equal)
    style_mixing_figure(G, tmp_path / "mix.png", n=3)
    truncation_figure(G, tmp_path / "trunc.png", n=2, psis=(1.0, 0.5, 0.0))
    assert Image.open(tmp_path / "mix.png").size[0] > 3 * 16
    assert Image.open(tmp_path / "trunc.png").size[1] > 2 * 16


def test_minibatch_stddev_sees_batch_diversity():
    from pti.train.projected_d import minibatch_stddev

    same = torch.randn(1, 5, 4, 4).repeat(8, 1, 1, 1)
    diverse = torch.randn(8, 5, 4, 4)
    y_same, y_div = minibatch_stddev(same, 4), minibatch_stddev(diverse, 4)
    assert y_same.shape == (8, 6, 4, 4)
    torch.testing.assert_close(y_same[:, :5], same)
    # identical samples: the stddev feature is sqrt(0 + 1e-8) = 1e-4 (measured); diverse ones: 0.82 at least
    assert y_same[:, 5].max() < 1e-3 and y_div[:, 5].min() > 0.3
    with pytest.raises(ValueError, match="not divisible"):
        minibatch_stddev(torch.randn(6, 5, 4, 4), 4)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_dcgan
def test_train_writes_its_export_and_resume_copy_into_the_run_folder(tmp_path):
    from pti import zoo
    from pti.stylegan2.checkpoints import load

    shipped = zoo.local_path(zoo.ZOO["demo"])
    before = _sha256(shipped) if shipped.is_file() else None
    out = tmp_path / "run"
    schedule = ScheduleConfig(state_interval_s=0, grid_interval_s=0, export_interval_s=0)
    t = train(tiny_config(), out, kimg=1, resume="auto", device="cpu", schedule=schedule, max_steps=1,
              progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["demo_generator.safetensors", "demo_resume.pt", "log.txt",
                                                     "samples", "state.pt"]
    G = load(out / "demo_generator.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), t.G_ema.state_dict().values()))
    assert (_sha256(shipped) if shipped.is_file() else None) == before  # the installed assets are untouched
    # 'auto' also considers the run folder's resume copy: without state.pt it resumes from it
    (out / "state.pt").unlink()
    t2 = train(tiny_config(), out, kimg=1, resume="auto", device="cpu", schedule=schedule, max_steps=1,
               progress=False)
    assert t2.nimg == 4 and f"resumed from {out / 'demo_resume.pt'}" in (out / "log.txt").read_text()


def test_auto_resume_takes_the_newest_existing_state_or_starts_afresh(tmp_path):
    import pti

    package = Path(pti.__file__).resolve().parent
    assert not list(package.rglob("*resume*.pt")), "a training state ships inside the package"

    def state(path: Path, nimg: int) -> Path:  # the keys load_state checks, and images seen
        torch.save({"config": {}, "G": {}, "nimg": nimg}, path)
        return path

    out, copy = tmp_path / "run", tmp_path / "run" / "demo_resume.pt"
    out.mkdir()
    assert find_resume_state(out, "auto", copy, None) is None  # nothing there: a new run
    assert find_resume_state(out, "auto", state(copy, 64)) == copy  # only the resume copy
    state(out / "state.pt", 96)
    assert find_resume_state(out, "auto", copy) == out / "state.pt"  # state.pt has seen more
    state(copy, 128)
    assert find_resume_state(out, "auto", copy) == copy  # the copy has seen more
    assert find_resume_state(out, "none", copy) is None
    assert find_resume_state(out, str(tmp_path / "x.pt"), copy) == tmp_path / "x.pt"
    with pytest.raises(FileNotFoundError, match="no training state here"):
        load_state(tmp_path / "x.pt")
    torch.save({"nimg": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a pti train-demo state"):
        find_resume_state(out, "auto", tmp_path / "bad.pt")


def test_runtime_does_not_import_the_training_recipe():
    """Only the `pti train-demo` / `pti demo-quality` commands import pti.train, and only when they run."""
    import ast

    import pti

    package = Path(pti.__file__).resolve().parent
    allowed = {package / "commands" / "train_demo.py", package / "commands" / "demo_quality.py"}
    found = []
    for path in package.rglob("*.py"):
        if package / "train" in path.parents:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            if any(n == "pti.train" or n.startswith("pti.train.") for n in names):
                if path not in allowed or id(node) in top_level:
                    found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not found, found


@needs_dcgan
@pytest.mark.slow  # 33 s measured (two 64 px runs of one step, with D calibration)
def test_train_demo_command_writes_into_its_run_folder(tmp_path, monkeypatch):
    """`pti train-demo`: export and resume copy in --out by default; an explicit --export is relative to the cwd."""
    from pti.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    small = ["--max-steps", "1", "--resume", "none", "--channel-base", "512", "--channel-max", "16", "--z-dim", "32",
             "--batch", "2", "--threads", "1", "--device", "cpu", "--export-every", "0"]
    assert cli_main(["train-demo", "--out", "run", *small]) == 0
    assert {"demo_generator.safetensors", "demo_resume.pt", "state.pt"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert cli_main(["train-demo", "--out", "run2", "--export", "g.safetensors", *small]) == 0
    assert (tmp_path / "g.safetensors").is_file() and not (tmp_path / "run2" / "demo_generator.safetensors").exists()
    assert (tmp_path / "run2" / "demo_resume.pt").is_file()
    # resuming: the flags that say "also changes a resumed run" do; the architecture stays the state's
    resume = [a for a in small if a not in ("--resume", "none")]
    assert cli_main(["train-demo", "--out", "run", *resume, "--style-mixing", "0.25", "--ema-rampup", "0",
                     "--ema-kimg", "3", "--z-dim", "64", "--augment", "none"]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert ("changed on resume: {'style_mixing_prob': 0.25, 'ema_kimg': 3.0, 'ema_rampup': None, 'augment': ()}"
            in log), log
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["config"]["z_dim"] == 32 and state["config"]["ema_rampup"] is None and state["config"]["augment"] == []
    with pytest.raises(SystemExit, match="--augment takes 'none' or policies"):
        cli_main(["train-demo", "--out", "run3", *small, "--augment", "color,rotate"])
    with pytest.raises(SystemExit) as refused:  # refused by the parser, before any work (one line, exit 2)
        cli_main(["train-demo", "--out", "run3", *small, "--ema-rampup", "-1"])
    assert refused.value.code == 2 and not (tmp_path / "run3").exists()


@pytest.mark.numerics  # the losses after 30 Adam steps depend on the kernels' rounding (measured below)
def test_distillation_lowers_its_loss_and_resumes_from_its_state(tmp_path):
    # stage 1 of the demo recipe (pti.train.distill): G regresses DCGAN(z) for the same z
    from pti.train.distill import DistillConfig, Distiller, distill
    from pti.stylegan2.checkpoints import load

    torch.set_num_threads(1)
    cfg = DistillConfig(resolution=16, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, batch=4,
                        lr=0.01, mapping_lr_scale=100.0)
    trainer = Distiller(cfg)
    first = [trainer.step()["l1"] for _ in range(3)]
    later = [trainer.step()["l1"] for _ in range(27)][-3:]
    # 30 steps of 4 images, seeds 0-2 (2026-11-29, 1 thread): mean l1 of the last 3 steps / the first 3 =
    # 0.69, 0.60, 0.62; with lr 0 (a G that does not learn) 1.10. The bound sits between the two. Seed 0 as run
    # here (issue 14): 0.692 with the default kernels, 0.700 with ATEN_CPU_CAPABILITY=default + ONEDNN_MAX_CPU_ISA=SSE41
    assert sum(later) / 3 < 0.85 * sum(first) / 3
    out = tmp_path / "run"
    distill(cfg, out, kimg=1, export=tmp_path / "g.safetensors", max_steps=2)
    again = distill(cfg, out, kimg=1, export=tmp_path / "g.safetensors", max_steps=1)  # resumes from state.pt
    assert again.nimg == 3 * cfg.batch and again.step_count == 3
    assert "resumed at 0.01 kimg" in (out / "log.txt").read_text()
    G = load(tmp_path / "g.safetensors")
    assert G.z_dim == 100 and G.img_resolution == 16 and list((out / "samples").glob("*.png"))


def test_distillation_stops_at_its_time_budget_saves_and_resumes(tmp_path):
    # --max-seconds (used by tools/device_check.sh's training stage): stop cleanly at a wall-time budget
    from pti.stylegan2.checkpoints import load
    from pti.train.distill import DistillConfig, distill, main

    torch.set_num_threads(1)
    cfg = DistillConfig(resolution=16, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, batch=4)
    out, export, budget = tmp_path / "run", tmp_path / "g.safetensors", 1.5
    t = distill(cfg, out, kimg=1, export=export, max_seconds=budget)  # 1 kimg = 250 steps: far more than 1.5 s
    assert 0 < t.nimg < 1000 and t.step_count == t.nimg // cfg.batch
    # The budget is checked before each step, so training ends within one step after it. Measured (2026-11-30,
    # 1 thread, 2-core machine shared, 3 runs): 2-3 steps, train_seconds 1.82-2.00 s, mean step 0.66-0.91 s
    # (the perceptual network dominates). Slack: 4 mean steps; ignoring the budget would run 250 steps.
    assert t.train_seconds < budget + 4 * t.train_seconds / t.step_count
    log = (out / "log.txt").read_text()
    assert f"stopped at the time budget ({budget:g} s) after {t.step_count} steps" in log
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["nimg"] == t.nimg and export.is_file()
    G = load(export)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), t.G_ema.state_dict().values()))
    again = distill(cfg, out, kimg=1, export=export, max_steps=1)  # resumes where the budget stopped it
    assert again.nimg == t.nimg + cfg.batch and f"resumed at {t.nimg / 1000:.2f} kimg" in (out / "log.txt").read_text()
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        distill(cfg, tmp_path / "r2", kimg=1, max_seconds=0)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "r3"), "--kimg", "1", "--max-seconds", "-1"])
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


@needs_dcgan
def test_stage_two_starts_from_a_generator_file_and_warms_up_d_alone(tmp_path: Path):
    """`pti train-demo --init G.safetensors` (stage 2 of the recipe): G and G_ema start as the file,
    the architecture comes from it, D trains alone during the warm-up, then G moves."""
    from pti.stylegan2.checkpoints import save
    from pti.train.demo import build_generator, config_for_init

    torch.manual_seed(11)
    source = build_generator(tiny_config(z_dim=24, w_dim=32))
    save(source, tmp_path / "g.safetensors")
    cfg = config_for_init(tiny_config(z_dim=32, d_warmup_kimg=0.004), tmp_path / "g.safetensors")
    assert cfg.z_dim == 24 and cfg.init == str(tmp_path / "g.safetensors")
    trainer = DemoTrainer(cfg)
    for module in (trainer.G, trainer.G_ema):
        assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), source.state_dict().values()))
    d_before = {k: v.clone() for k, v in trainer.D.trainable_state_dict().items()}
    for _ in range(2):  # 2 steps x batch 2 = the 4-image warm-up
        stats = trainer.step()
        assert "loss_G" not in stats
    assert all(torch.equal(a, b) for a, b in zip(trainer.G.state_dict().values(), source.state_dict().values()))
    assert any(not torch.equal(v, d_before[k]) for k, v in trainer.D.trainable_state_dict().items())
    assert "loss_G" in trainer.step()
    assert any(not torch.equal(a, b) for a, b in zip(trainer.G.state_dict().values(), source.state_dict().values()))
    from conftest import make_tiny_generator

    save(make_tiny_generator(c_dim=3), tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="unconditional RGB 'skip' generators"):
        config_for_init(tiny_config(), tmp_path / "c.safetensors")
