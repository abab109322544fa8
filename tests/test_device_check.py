"""tools/device_check.sh and tools/device_check.py: the one prepared call on a lent GPU machine.

The pure parts (which bench path the bench recommends, the full PTI run's ``pti run`` flags, the
limits on what comes back) are tested directly; the whole script runs in its dry-run mode (CPU, tiny
configs) in a ``slow`` test: about 5 minutes on this project's 2-core machine, mostly the
start-up of one Python process per stage.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_driver():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "tools" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dc = _load_driver()


def _result(name: str, ipm: float, mse: float, perceptual: float, batch: int = 1) -> dict:
    return {"name": name, "images_per_minute": ipm, "mse": mse, "perceptual": perceptual, "batch": batch}


def test_pti_run_accepts_every_flag_the_driver_emits(monkeypatch: pytest.MonkeyPatch) -> None:
    # the driver runs $PYTHON (the device script sets it); `make test` exports PYTHON=python3 (the Makefile's
    # interpreter for the venv), which has no pti: use this test's interpreter
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.delenv("DEVICE_CHECK_RUN_ARGS", raising=False)
    known = dc._help_options("run")
    assert "--no-align" in known, "could not read `pti run --help`"
    for dry in (True, False):
        flags, nets = dc.run_flags(dry)
        kept, dropped = dc._keep_known(flags, known)
        assert not dropped, f"`pti run` no longer takes {dropped}"
        assert flags[0] == "--fast" and set(nets) <= set(flags) and ("--inv-w-avg-samples" in flags) == dry
    monkeypatch.setenv("DEVICE_CHECK_RUN_ARGS", "--exec-precision bf16")  # a custom run replaces --fast
    assert dc.run_flags(False)[0][:2] == ["--exec-precision", "bf16"]
    assert {"--inv-steps", "--tune-steps", "--tune-lpips-threshold", "--generator", "--output"} <= known


def test_keep_known_drops_unknown_options_with_their_values() -> None:
    kept, dropped = dc._keep_known(["--a", "1", "--b", "--c", "x", "--d"], {"--a", "--b", "--d"})
    assert kept == ["--a", "1", "--b", "--d"] and dropped == ["--c", "x"]


def test_choose_path_takes_the_fastest_at_equal_quality() -> None:
    bench = {"results": [
        _result("baseline", 1.0, 0.010, 0.30),
        _result("bf16", 3.0, 0.0104, 0.31),            # within 5%: safe
        _result("fast", 9.0, 0.0120, 0.30, batch=8),   # MSE 20% worse: not safe
        _result("compile", 20.0, 0.010, 0.30),         # compile is left out (its warm-up)
        _result("fp16-layers", 2.0, 0.0100, 0.30),
    ]}
    assert dc.choose_path(bench)[0] == "bf16"
    assert dc.choose_path({"results": [_result("baseline", 1.0, 0.01, 0.3)]})[0] == "baseline"
    assert dc.choose_path(None)[0] == "fp16-layers"


def test_finish_keeps_out_within_the_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    monkeypatch.setenv("DEVICE_CHECK_WORK", str(work))
    monkeypatch.setenv("OUT", str(out))
    (work / "stages.tsv").write_text("0-setup\t0\t3\t60\t\n2-bench\t124\t180\t180\t\n4-train\t124\t99\t99\t\n")
    (work / "step_setup.json").write_text(json.dumps({"environment": {"python": "3.12.3", "gpu": "H200"}}))
    (work / "bench.json").write_text("{}")
    (out / "log.txt").write_bytes(b"x" * (dc.MAX_BYTES + 1000))         # cut, not dropped
    with open(out / "big.bin", "wb") as f:                               # over 16 MiB: dropped
        f.truncate(dc.MAX_BYTES + 1)
    (out / "bad name.txt").write_text("x")                              # a name that does not come back
    (out / "a" / "b" / "c").mkdir(parents=True)
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")                # three folders down
    for i in range(8):
        (out / f"extra{i}.txt").write_text("x")                         # over 8 files: the last dropped
    results = dc.step_finish(work, out, dry=False)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= dc.MAX_FILES
    assert all(p.stat().st_size <= dc.MAX_BYTES for p in files)
    assert all(dc.NAME_OK.match(part) for p in files for part in p.relative_to(out).parts)
    assert {"summary.md", "results.json", "log.txt", "bench.json"} <= {p.name for p in files}
    dropped = " ".join(results["files_dropped"])
    assert "big.bin" in dropped and "bad name.txt" in dropped and "deep.txt" in dropped and "extra" in dropped
    statuses = {s["stage"]: s["status"] for s in results["stages"]}
    assert statuses == {"0-setup": "ok", "2-bench": "timed out", "4-train": "stopped at its cap (as planned)"}
    summary = (out / "summary.md").read_text()
    assert "H200" in summary and "| 2-bench | timed out (rc 124) | 180 | 180 |" in summary


def test_train_stage_runs_the_distillation_within_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTI_DEVICE_TRAIN_CMD", raising=False)
    monkeypatch.delenv("DEVICE_CHECK_TRAIN_INIT", raising=False)
    monkeypatch.setenv("DEVICE_CHECK_STAGE_CAP", "200")
    monkeypatch.setenv("DEVICE_CHECK_TRAIN_ARGS", "--batch 64")
    cmd, env = dc.train_command(tmp_path, dry=False)
    assert cmd[1:3] == ["-m", "pti.train.distill"] and env["TRAIN_DIR"] == str(tmp_path / "train")
    opts = dict(zip(cmd[3::2], cmd[4::2]))  # every option of the default command takes a value
    assert opts["--max-seconds"] == str(200 - dc.TRAIN_MARGIN_S) and opts["--device"] == "cuda"
    assert opts["--init"] == str(dc.TRAIN_INIT) and dc.TRAIN_INIT.is_file()
    assert opts["--export"] == str(tmp_path / "train" / "G.safetensors") and opts["--batch"] == "64"
    help_text = subprocess.run([sys.executable, "-m", "pti.train.distill", "--help"], capture_output=True,
                               text=True, cwd=ROOT, check=True).stdout
    assert set(opts) <= set(re.findall(r"--[a-z][a-z-]*", help_text)), "pti.train.distill no longer takes them"
    assert dc.train_seconds(20, dry=False) == 5 and dc.train_seconds(500, dry=True) == 10
    # a distillation state.pt is resumed exactly: copied into the run folder, no warm start
    (tmp_path / "s.pt").write_bytes(b"state")
    monkeypatch.setenv("DEVICE_CHECK_TRAIN_INIT", str(tmp_path / "s.pt"))
    cmd, _ = dc.train_command(tmp_path, dry=True)
    assert "--init" not in cmd and (tmp_path / "train" / "state.pt").read_bytes() == b"state"
    # the figures read back from the trainer's log (the format of pti.train.distill's log lines)
    log = ("2026-11-30 00:15:08 kimg 52.80 l1 0.2249 loss 3.9404 perceptual 3.7156 sec/kimg 129.6\n"
           "2026-11-30 00:16:00 stopped at the time budget (155 s) after 3 steps, 48 images in 160.0 s\n"
           "2026-11-30 00:16:01 saved at 52.85 kimg (1.20 h)\n")
    assert dc._train_log_figures(log) == {"last_kimg": 52.85, "l1": 0.2249, "perceptual": 3.7156, "img_per_s": 7.7,
                                          "img_per_s_overall": 0.3, "stopped_at_budget": True}
    # today's format (pti.train.loop.run_steps: the step count, 4 significant digits) reads the same
    new = log.replace("kimg 52.80 l1", "kimg 52.800 step 3300 l1").replace("0.2249", "2.249e-01")
    assert dc._train_log_figures(new) == dc._train_log_figures(log)


def test_finish_brings_back_the_trained_generator_its_log_and_samples(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "train" / "samples").mkdir(parents=True)
    out.mkdir()
    (work / "train" / "G.safetensors").write_bytes(b"g" * 1000)
    (work / "train" / "state.pt").write_bytes(b"s" * 1000)  # stays behind (33 MB in a real run)
    (work / "train" / "log.txt").write_text("kimg 1.00 l1 0.3 loss 1 perceptual 0.7 sec/kimg 2.0\n")
    (work / "train" / "samples" / "grid_00001kimg.png").write_bytes(b"png")
    results = dc.step_finish(work, out, dry=True)
    assert {"distill_G_ema.safetensors", "train_log.txt", "train_samples.png"} <= set(results["files"])
    assert (out / "distill_G_ema.safetensors").read_bytes() == b"g" * 1000 and not (out / "state.pt").exists()
    # at most MAX_FILES, in OUT_ORDER's order of value: with a GPU's profile, bench and headline files the
    # training's last files are the ones left behind
    assert set(results["files"]) <= set(dc.OUT_ORDER) and len(results["files"]) <= dc.MAX_FILES
    assert dc.OUT_ORDER.index("gpu_headline.json") < dc.OUT_ORDER.index("distill_G_ema.safetensors")


def test_finish_names_a_custom_training_checkpoint_for_what_it_is(tmp_path: Path, monkeypatch) -> None:
    """$PTI_DEVICE_TRAIN_CMD (e.g. the demo encoder's training) does not come back named as a distilled G."""
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "train").mkdir(parents=True)
    out.mkdir()
    (work / "train" / "demo_encoder.safetensors").write_bytes(b"e" * 100)
    monkeypatch.setenv("PTI_DEVICE_TRAIN_CMD", "true")
    results = dc.step_finish(work, out, dry=True)
    assert "train_checkpoint.safetensors" in results["files"] and not (out / "distill_G_ema.safetensors").exists()
    assert (out / "train_checkpoint.safetensors").read_bytes() == b"e" * 100


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OUT": str(out), "DEVICE_CHECK_WORK": str(work), "DEVICE_CHECK_DRY_RUN": "1",
           "PYTHON": sys.executable, "DEVICE_CHECK_WHEELS": str(tmp_path / "no_wheels")}
    proc = subprocess.run(["bash", "tools/device_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) <= dc.MAX_FILES and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
    assert all((out / f).stat().st_size <= dc.MAX_BYTES for f in files)
    results = json.loads((out / "results.json").read_text())
    stages = {s["stage"]: s for s in results["stages"]}
    assert list(stages) == ["0-setup", "1-build", "2a-profile", "2b-bench", "2c-official", "3-pti-run",
                            "4-gpu-tests", "5-train"]
    if not (ROOT / ".peers" / "PTI").is_dir():  # the official trees are not carried here (tools/README.md)
        assert "not carried" in results["official"]["error"]
        stages.pop("2c-official")
    failed = {k: (s["status"], s["rc"]) for k, s in stages.items() if s["status"] != "ok"}
    assert not failed, (failed, (out / "log.txt").read_text()[-3000:])
    assert not [v for v in results["setup"]["packages"].values() if v.startswith("MISSING")]
    assert results["gpu-tests"]["counts"].get("skipped", 0) > 0  # collected, skipped without a GPU
    bench = json.loads((out / "bench.json").read_text())
    assert [r["name"] for r in bench["results"]] == ["baseline", "nosync"] and not bench["failures"]
    run = results["pti-run"]
    assert run["rc"] == 0 and run["end_to_end_seconds"] > 0 and run["summary"]["counts"]["done"] == 1
    assert run["path"] == "--fast" and "--fast" in run["command"]
    profile = results["profile"]
    assert profile["inversion"]["kernels_per_step"] > 0 and profile["tuning"]["top"]
    assert "| inversion |" in (out / "profile.md").read_text()
    if "2c-official" in stages:  # the harness ran on the carried trees: demo64 on the CPU, 2 + 2 steps
        assert results["official"]["inv_s_per_step"] > 0 and results["official"]["config"] == "demo64"
    assert results["headline"] is None  # no GPU: nothing for figures/gpu_headline.json
    train = results["train"]
    assert train["checkpoints"] == ["G.safetensors"] and train["stopped_at_budget"] and train["last_kimg"] > 0
    assert train["img_per_s_overall"] > 0
    assert {"profile.md", "distill_G_ema.safetensors", "train_log.txt"} <= set(files)  # samples: over 8 files
    assert (out / "distill_G_ema.safetensors").stat().st_size > 1_000_000  # the 64 px generator: 8.3 MB


def test_headline_from_the_stages(tmp_path: Path) -> None:
    """figures/gpu_headline.json's fields: only with a GPU and a successful end-to-end run; the ratio is the
    official code's seconds per photo over pti's."""
    def put(step: str, data: dict) -> None:
        (tmp_path / f"step_{step}.json").write_text(json.dumps(data))

    put("setup", {"environment": {"torch": "2.11", "cuda": "13.0"}})
    put("pti-run", {"rc": 0, "end_to_end_seconds": 20.0, "command": "run --fast"})
    assert dc.headline(tmp_path) is None  # no GPU
    put("setup", {"environment": {"gpu": "NVIDIA H200, 140 GiB", "torch": "2.11", "cuda": "13.0"}})
    put("official", {"s_per_image_at_paper_steps": 100.0})
    put("bench", {"paths": {"baseline": {"mse": 0.01, "perceptual": 1.0, "img_per_min": 1.2},
                            "fast": {"mse": 0.011, "perceptual": 0.9, "img_per_min": 3.0}}})
    h = dc.headline(tmp_path)
    assert h["gpu"].startswith("NVIDIA H200") and h["photos_per_minute_ratio"] == 5.0
    assert h["quality_deltas_fast_vs_core"] == {"mse": 0.1, "perceptual": -0.1}
    assert h["bench_photos_per_minute_ratio"] == {"baseline": 2.0, "fast": 5.0}
    put("pti-run", {"rc": 1, "end_to_end_seconds": 3.0})
    assert dc.headline(tmp_path) is None  # a failed run has no headline
    assert dc.OFFICIAL_LINE.search("official-pti demo64 cpu: inv 0.136 s/step, pti 0.127 s/step, 1.8 min/image "
                                   "(450+350), mse 0.3200").groups()[2:] == ("0.136", "0.127", "1.8")


def test_profile_of_the_core_on_cpu() -> None:
    """The profile stage's code path (tiny generator, one profiled step of each phase)."""
    from pti.bench.profile import format_markdown, profile_core

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    result = profile_core("tiny", "cpu", warmup=1, active=1, perceptual="random")
    assert "random backbone" in result["perceptual"]["inversion"]
    for phase in ("inversion", "tuning"):
        r = result[phase]
        assert r["kernels_per_step"] > 100 and r["wall_ms_per_step"] > 0 and r["busy_fraction"] is None
        assert any("conv" in t["name"] for t in r["top"])
    assert "| tuning |" in format_markdown(result)
