"""``pti compare`` (issue 32): every method on the same aligned photos, per-photo results resumable like
``pti run``, the summary's statistics, and notebook 07 on the run.

The end-to-end test runs the command on the two bundled photos (and one photo without a face) with the
demo generator and its encoder at tiny settings (5 inversion and 5 tuning steps, LPIPS on a random
SqueezeNet: the cheapest distance with LPIPS's code path, named "random backbone") and then the report
notebook on that run folder.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pti.cli import main
from pti.jobs.compare import METHODS, expand_edit_lists, parse_methods
from pti.jobs.compare_summary import build_compare_summary, stats

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--inv-steps", "5", "--tune-steps", "5", "--inv-w-avg-samples", "500", "--metric-net", "random-squeeze",
        "--inv-perceptual-net", "random-squeeze", "--tune-perceptual-net", "random-squeeze",
        "--threads", "1", "--quiet"]


def test_parse_methods_and_edit_lists():
    assert parse_methods("pti,w") == ("w", "pti")            # the paper's order
    assert parse_methods("W+, e4e,pti-e4e") == ("w+", "e4e", "pti-e4e")
    with pytest.raises(ValueError, match="unknown pix2pix"):
        parse_methods("w,pix2pix")
    assert expand_edit_lists(["smile,yaw:-3,3", "sefa:2:-2,2", "age", "smile,yaw"]) == \
        ["smile:-3,3", "yaw:-3,3", "sefa:2:-2,2", "age", "smile", "yaw"]


def test_stats_are_sample_statistics():
    s = stats([1.0, 2.0, 4.0, float("nan"), None])
    assert s["n"] == 3 and s["median"] == 2.0 and math.isclose(s["mean"], 7 / 3)
    assert math.isclose(s["sd"], float(np.std([1.0, 2.0, 4.0], ddof=1)))
    assert stats([3.0])["sd"] is None and stats([])["n"] == 0


def test_bad_methods_is_a_usage_error(tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    assert main(["compare", str(tmp_path), "--methods", "w,gan", "-o", str(tmp_path / "run")]) == 2
    assert "--methods" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_styleclip_edit_is_refused_before_any_photo(tmp_path, capsys):
    """pti compare scores W-space directions; a StyleCLIP edit stops at set-up with one line (it raised a
    ValueError from deep inside the first photo before)."""
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    code = main(["compare", str(tmp_path), "--methods", "w", "--edit", "text:a smiling face", "--no-align",
                 "-o", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "StyleCLIP edits run with pti edit" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "a").exists()


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    import matplotlib.cbook
    import skimage.data

    root = tmp_path_factory.mktemp("compare")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(photos / "astronaut.png")
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), photos / "grace_hopper.jpg")
    Image.new("RGB", (128, 128), (128, 128, 128)).save(photos / "wall.png")   # no face: fails alone
    run = root / "run"
    args = ["compare", str(photos), "-o", str(run), "--methods", ",".join(METHODS), "--edit", "smile:-3,0,3",
            *TINY]
    status = main(args)
    first = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in run.iterdir() if (p / "metrics.json").exists()}
    again = main(args)                                                       # resumed: nothing redone
    return {"root": root, "run": run, "status": status, "again": again, "first": first, "args": args}


@pytest.mark.slow
def test_compare_writes_every_method_and_a_summary(compared):
    run = compared["run"]
    assert compared["status"] == 1                                   # wall.png failed; the others are done
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"] == {"photos": 3, "done": 2, "failed": 1, "missing": 0,
                                 "this_run": {"done": 0, "skipped": 2, "failed": 1}}
    assert [f["name"] for f in summary["failures"]] == ["wall"] and "NoFaceFound" in summary["failures"][0]["error"]
    assert summary["methods"] == list(METHODS)
    assert summary["perceptual_name"].startswith("lpips-squeeze (random backbone")
    for m in METHODS:
        for key in ("mse", "psnr", "ms_ssim", "perceptual", "identity", "seconds"):
            s = summary["reconstruction"][m][key]
            assert s["n"] == 2 and all(math.isfinite(s[k]) for k in ("mean", "sd", "median")), (m, key, s)
    for name in ("astronaut", "grace_hopper"):
        data = json.loads((run / name / "metrics.json").read_text())
        assert data["stage"] == "compare" and data["pivots"]["e4e"]["origin"] == "e4e"
        assert data["pivots"]["e4e"]["steps"] == 0 and data["pivots"]["w"]["space"] == "w"
        for m, fname in (("w", "w"), ("w+", "w_plus"), ("e4e", "e4e"), ("pti", "pti"), ("pti-e4e", "pti-e4e")):
            assert (run / name / "recon" / f"{fname}.png").is_file()
            row = data["methods"][m]
            assert 0 <= row["mse"] <= 1 and -1 <= row["identity"] <= 1
        # tuning lowers the error of the pivot it starts from (5 steps, 2026-12-07: MSE of the W pivot
        # 0.1324 -> 0.0927 astronaut, 0.1001 -> 0.0790 grace_hopper; e4e pivot 0.0682 -> 0.0453, 0.0715 -> 0.0494)
        assert data["methods"]["pti"]["mse"] < data["methods"]["w"]["mse"]
        assert data["methods"]["pti-e4e"]["mse"] < data["methods"]["e4e"]["mse"]
        for m in METHODS:
            smile = data["edits"][m]["smile"]
            assert smile["attribute"] == "smile" and smile["strengths"] == [-3.0, 0.0, 3.0]
            assert all(math.isfinite(v) for v in smile["identity"])
            # strength 0 renders the reconstruction itself; the smile edit widens the mouth (shipped boundary,
            # held-out accuracy 0.941; measured over the 5 methods and 2 photos: -0.087..-0.169 at -3,
            # +0.106..+0.240 at +3)
            assert smile["score_change"][1] == 0.0 and smile["identity"][1] == data["methods"][m]["identity"]
            assert smile["score_change"][0] < 0 < smile["score_change"][2], (name, m, smile)
    md = (run / "summary.md").read_text()
    assert "perceptual: lpips-squeeze (random backbone" in md and "| PTI (e4e pivot) | 2 |" in md
    assert "**wall**" in md and "## Editing" in md


@pytest.mark.slow
def test_compare_resumes_and_redoes_on_another_plan(compared):
    run = compared["run"]
    assert compared["again"] == 1
    for name, mtime in compared["first"].items():                   # the second run skipped them
        assert (run / name / "metrics.json").stat().st_mtime_ns == mtime
    assert not list(run.glob(".*.partial"))
    # a truncated result file makes the photo unfinished; the summary then counts it missing
    recon = run / "astronaut" / "recon" / "w.png"
    recon.write_bytes(recon.read_bytes()[:100])
    summary = build_compare_summary(sorted((compared["root"] / "photos").iterdir()), run)
    assert summary["counts"]["done"] == 1 and summary["missing"] == ["astronaut"]
    # another plan (fewer methods) redoes the photos
    args = list(compared["args"])
    args[args.index("--methods") + 1] = "w"
    args[1] = str(compared["root"] / "photos" / "astronaut.png")
    assert main(args) == 0
    data = json.loads((run / "astronaut" / "metrics.json").read_text())
    assert set(data["methods"]) == {"w"} and not (run / "astronaut" / "recon" / "pti.png").exists()


@pytest.mark.slow
def test_report_notebook_07_on_the_run(compared, tmp_path):
    from pti.apps.report import run_report

    runs = run_report(["07"], reports=tmp_path / "reports", figures=tmp_path / "figures", threads=1,
                      parameters={"run": str(compared["run"])}, progress=False, log=lambda *_: None)
    assert len(runs) == 1 and runs[0].ok, runs[0].error
    data = json.loads((tmp_path / "figures" / "07_metrics.json").read_text())
    assert data["run"] == str(compared["run"].resolve()) and data["counts"]["done"] >= 1
    for figure in data["figures"]:
        png = tmp_path / "figures" / figure
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000
    assert set(data["scatter"]) <= set(METHODS) and all(len(v) >= 1 for v in data["scatter"].values())
    html = runs[0].html.read_text()
    assert "random backbone" in html and "PTI" in html


@pytest.mark.slow
def test_two_torchrun_ranks_share_the_photos(tmp_path):
    """Rank r of 2 takes photos r, r+2, ... (pti.jobs.distributed.shard); rank 0's summary covers all of them."""
    import os
    import subprocess
    import sys

    import torch

    from conftest import make_tiny_generator, write_generated_photos
    from pti.stylegan2.checkpoints import save

    G = make_tiny_generator(resolution=16, seed=2)
    save(G, tmp_path / "g.safetensors")
    write_generated_photos(G, tmp_path / "photos", "abc", seed=9)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pti",
            "compare", str(tmp_path / "photos"), "-o", str(tmp_path / "run"), "-g", str(tmp_path / "g.safetensors"),
            "--methods", "w,pti", "--no-align", "--device", "cpu", "--inv-steps", "2", "--tune-steps", "2",
            "--inv-w-avg-samples", "100", "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net",
            "effnet-lite0", "--quiet"]
    proc = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["counts"]["done"] == 3
    ranks = {n: json.loads((tmp_path / "run" / n / "metrics.json").read_text())["worker"]["rank"] for n in "abc"}
    assert ranks == {"a": 0, "b": 1, "c": 0}
    assert summary["reconstruction"]["pti"]["psnr"]["n"] == 3
