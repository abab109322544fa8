"""Progress bars outside a terminal (issue 14): a log gets a few whole lines per stage, not one per redraw.

`make demo > log 2>&1` used to write ~3,600 carriage-return redraws into the log. Here a short
`pti run` (tiny generator, one photo, 20 steps per stage) runs with stdout and stderr on a pipe.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import torch

from conftest import make_tiny_generator
from pti.progress import PLAIN_INTERVAL_S, LineStream, progress_bar


def test_bar_on_a_pipe_prints_whole_lines_at_most_every_interval():
    out = io.StringIO()  # not a terminal
    t0 = time.perf_counter()
    bar = progress_bar(range(2000), desc="stage", file=out)
    for i in bar:
        bar.set_postfix(loss=i)  # would redraw at every step in tqdm's default
    elapsed = time.perf_counter() - t0
    lines = out.getvalue().split("\n")
    assert "\r" not in out.getvalue() and lines[-1] == ""
    assert len(lines) - 1 <= 2 + elapsed / PLAIN_INTERVAL_S  # the first line, the timed ones, the last
    assert re.match(r"stage: 100%\|#+\| 2000/2000 .*loss=1999\]$", lines[-2]), lines[-2]


def test_line_stream_drops_redraw_controls():
    out = io.StringIO()
    stream = LineStream(out)
    for text in ["\r", "\rstep 1     ", "\n", "\rinner 2", "\x1b[A", "", "\r   \r"]:
        stream.write(text)
    assert out.getvalue() == "step 1\ninner 2\n"


def test_disabled_bar_prints_nothing():
    out = io.StringIO()
    for _ in progress_bar(range(10), desc="quiet", file=out, disable=True):
        pass
    assert out.getvalue() == ""


def test_pti_run_on_a_pipe_writes_few_progress_lines(tmp_path):
    from pti.images import write_image
    from pti.stylegan2.checkpoints import save

    G = make_tiny_generator(resolution=16, seed=2)
    with torch.no_grad():
        image = G.synthesis(G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)), None),
                            noise_mode="const")
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(image[0], photos / "photo.png")
    save(G, tmp_path / "g.safetensors")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pti", "run", str(photos), "--output", str(tmp_path / "run"),
                           "--generator", str(tmp_path / "g.safetensors"), "--device", "cpu", "--no-align",
                           "--inv-steps", "20", "--tune-steps", "20", "--inv-w-avg-samples", "100",
                           "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net", "effnet-lite0"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout
    log = proc.stdout
    assert "\r" not in log  # no in-place redraws
    progress = [line for line in log.split("\n") if re.search(r"\d+/\d+ \[", line)]
    # two bars (invert, tune), each: its first line, its last, and one per PLAIN_INTERVAL_S at most.
    # tqdm redraws at each step here (set_postfix refreshes): 20 steps per stage gave 20-40 lines per stage.
    assert len(progress) <= 2 * 2 + elapsed / PLAIN_INTERVAL_S, log
    # ... and each stage still ends with a summary line
    assert any(re.match(r"invert \(w\): 100%.* 20/20 ", line) for line in progress), log
    assert any(re.match(r"tune \(1 image\): 100%.* 20/20 ", line) for line in progress), log
