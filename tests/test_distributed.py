"""`pti run` under torchrun on the CPU (gloo): sharding, equality with one process, restart after a kill.

Each launch is ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m pti run ...``
(torchrun picks a free port itself) over a folder of 16x16 images rendered by a tiny generator.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_generator, write_generated_photos
from pti.jobs.distributed import launch_env, pick_device, shard
from pti.core.pivot import Pivot

STEPS = ["--inv-steps", "2", "--tune-steps", "2", "--inv-w-avg-samples", "100",
         "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net", "effnet-lite0", "--tune-lpips-threshold",
         "none", "--seed", "3"]


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    torch.set_num_threads(1)  # the same as each torchrun worker (OMP_NUM_THREADS=1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """``g.safetensors`` (tiny generator) and ``photos/``: a.png ... f.png (6 images)."""
    from pti.stylegan2.checkpoints import save

    root = tmp_path_factory.mktemp("dist")
    G = make_tiny_generator(resolution=16, seed=2)
    save(G, root / "g.safetensors")
    write_generated_photos(G, root / "photos", "abcdef", seed=9)
    return root


def job_args(root: Path, photos: Path, run: Path, *extra: str) -> list[str]:
    return ["run", "--input", str(photos), "--output", str(run), "--generator", str(root / "g.safetensors"),
            "--device", "cpu", "--no-align", "--quiet", *STEPS, *extra]


def torchrun(args: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "pti", *args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def finished(run: Path) -> set[str]:
    out = set()
    for m in run.glob("*/metrics.json"):
        try:
            if json.loads(m.read_text()).get("status") == "done":
                out.add(m.parent.name)
        except ValueError:
            pass
    return out


def test_shard_is_disjoint_and_complete():
    items = list(range(11))
    shares = [shard(items, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shares, [])) == items
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def test_launch_env_and_device():
    assert launch_env({}) == (0, 1, 0)
    assert launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        launch_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        launch_env({"WORLD_SIZE": "two"})
    assert pick_device("cpu", local_rank=5) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto", local_rank=1) == torch.device("cpu")
        with pytest.raises(ValueError, match="use --device cpu"):
            pick_device("cuda", local_rank=0)


def test_two_processes_share_the_work_and_match_one_process(workspace, tmp_path):
    from pti.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((workspace / "photos").glob("*.png"))[:5]:
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "c_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # sorted: a b c c_bad d e
    names = ["a", "b", "c", "c_bad", "d", "e"]

    run2 = tmp_path / "run2"
    proc = subprocess.run(torchrun(job_args(workspace, photos, run2)), env=child_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, "a failed image must make the job exit non-zero"
    summary = json.loads((run2 / "summary.json").read_text())
    assert summary["world_size"] == 2, proc.stderr[-3000:]
    assert summary["counts"] == {"images": 6, "done": 5, "failed": 1, "missing": 0}
    assert [f["name"] for f in summary["failures"]] == ["c_bad"] and summary["failures"][0]["rank"] == 1
    assert "c_bad.png" in summary["failures"][0]["error"]
    # strided shares of the sorted names: rank 0 took a, c, d; rank 1 took b, c_bad, e; nobody did twice
    ranks = {e["name"]: e["rank"] for e in summary["images"]}
    assert ranks == {n: i % 2 for i, n in enumerate(names)}
    workers = {w["rank"]: w for w in summary["workers"]}
    assert (workers[0]["done"], workers[0]["failed"], workers[1]["done"], workers[1]["failed"]) == (3, 0, 2, 1)
    assert summary["this_run"]["processed"] == 5
    assert "**c_bad**" in (run2 / "summary.md").read_text()

    run1 = tmp_path / "run1"
    assert main(job_args(workspace, photos, run1)) == 1
    one = json.loads((run1 / "summary.json").read_text())
    assert one["world_size"] == 1 and all(e["rank"] in (0, None) for e in one["images"])
    for name in ["a", "b", "c", "d", "e"]:
        p1, p2 = Pivot.load(run1 / name / "pivot.pt"), Pivot.load(run2 / name / "pivot.pt")
        assert torch.equal(p1.w, p2.w) and all(torch.equal(a, b) for a, b in zip(p1.noise, p2.noise)), name
        m1, m2 = (json.loads((r / name / "metrics.json").read_text()) for r in (run1, run2))
        for part in ("inversion", "tuning"):
            for key in ("mse", "psnr", "perceptual"):
                assert m1[part][key] == m2[part][key], (name, part, key)
        assert m1["files"] == m2["files"]
        # the condition of that equality, recorded in each result (README: same thread count and kernel ISA)
        numerics = ("threads", "cpu_capability", "isa_env")
        assert [m1["worker"][k] for k in numerics] == [m2["worker"][k] for k in numerics], name
        assert m1["worker"]["threads"] == 1 and m2["worker"]["world_size"] == 2


def test_worker_record_names_threads_and_kernel_isa(monkeypatch):
    """stylegan2-ada-pytorch #285: one process with 2 threads and torchrun's 1 thread per process gave
    results up to 29 levels apart; what decides it is recorded with every result."""
    from pti.jobs.distributed import DistContext

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    torch.set_num_threads(1)
    record = DistContext().describe()
    assert record["threads"] == 1 and record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["isa_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"} and record["cuda_device"] is None
    assert record["torch"] == torch.__version__
    json.dumps(record)  # goes into metrics.json and summary.json


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_killed_job_restarts_and_finishes_only_the_rest(workspace, tmp_path):
    photos = workspace / "photos"
    run = tmp_path / "run"
    args = job_args(workspace, photos, run)
    args[args.index("--tune-steps") + 1] = "12"  # long enough per image to be caught midway
    job = subprocess.Popen(torchrun(args), env=child_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not finished(run) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = _children(job.pid)  # torchrun starts each worker in its own session
        for pid in workers:
            os.kill(pid, signal.SIGKILL)  # as a preempted node: no clean-up of any kind
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=60)
        stderr = job.stderr.read()
    done_before = finished(run)
    assert len(workers) == 2, stderr[-3000:]
    assert 1 <= len(done_before) < 6, f"the kill should come midway; finished: {done_before}"
    stamps = {n: (run / n / "metrics.json").stat().st_mtime_ns for n in done_before}

    proc = subprocess.run(torchrun(args), env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"] == {"images": 6, "done": 6, "failed": 0, "missing": 0}
    assert summary["this_run"]["processed"] == 6 - len(done_before)
    assert summary["this_run"]["skipped_finished"] == len(done_before)
    assert {n: (run / n / "metrics.json").stat().st_mtime_ns for n in done_before} == stamps  # not redone
    assert not list(run.glob(".*.partial")) and finished(run) == set("abcdef")
