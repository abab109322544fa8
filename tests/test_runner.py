"""The per-image runner: resumable run folders, corrupt/half-written outputs, pivot reuse, failures, `pti run`.

Everything runs on a tiny random StyleGAN2 (16 px) with 2 inversion and 2 tuning steps, and the
offline EfficientNet-Lite0 perceptual distance (no download), on one CPU thread.
"""
from __future__ import annotations

import copy

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator, write_generated_photos
from pti.core.config import InversionConfig, TuningConfig, config_to_dict
from pti.jobs.runner import (RunOptions, check_unique_names, failure_path, is_finished, list_images, process_images,
                             run_one, staging_dir)
from pti.core.pivot import Pivot
from pti.stylegan2.checkpoints import weights_fingerprint

INV = InversionConfig(steps=2, w_avg_samples=100, perceptual_net="effnet-lite0")
TUNE = TuningConfig(steps=2, perceptual_net="effnet-lite0", lpips_threshold=None)
OPTS = RunOptions(align=False, progress=False)


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    """Tiny convolutions run far faster on one thread than on two contended ones."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return make_tiny_generator(resolution=16, seed=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory, G) -> list[Path]:
    """Three 16x16 PNGs rendered by G (read-only for the tests)."""
    return write_generated_photos(G, tmp_path_factory.mktemp("images"), ["img0", "img1", "img2"], seed=4)


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_list_images_sorted_hidden_skipped_and_name_clashes(tmp_path):
    for name in ["b.png", "a.jpg", "._a.jpg", "c.txt", "d.PNG"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png", "d.PNG"]
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="a.jpg and a.png"):
        check_unique_names(list_images(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file"):
        list_images(tmp_path / "nothing")


def test_finished_image_is_skipped(G, images, tmp_path):
    run = tmp_path / "run"
    first = process_images(G, images[:2], run, INV, TUNE, OPTS)
    assert [o.status for o in first] == ["done", "done"]
    assert all(is_finished(run / p.stem, "tune") for p in images[:2])
    stamps = [mtime(run / p.stem / "metrics.json") for p in images[:2]]
    again = process_images(G, images[:2], run, INV, TUNE, OPTS)
    assert [o.status for o in again] == ["skipped", "skipped"]
    assert [mtime(run / p.stem / "metrics.json") for p in images[:2]] == stamps
    redo = process_images(G, images[:1], run, INV, TUNE, dataclasses.replace(OPTS, skip_finished=False))
    assert redo[0].status == "done" and mtime(run / images[0].stem / "metrics.json") != stamps[0]
    assert redo[0].redone == ()  # --redo: asked for, not a change to report


def _finished_run(G, image: Path, run: Path) -> Path:
    assert process_images(G, [image], run, INV, TUNE, OPTS)[0].status == "done"
    return run / image.stem


@pytest.mark.parametrize("damage", ["killed_in_staging", "metrics_missing", "metrics_corrupt", "file_truncated"])
def test_half_written_outputs_are_redone(G, images, tmp_path, damage):
    run = tmp_path / "run"
    final = run / images[0].stem
    if damage == "killed_in_staging":  # what a kill during processing leaves
        staging = staging_dir(final)
        staging.mkdir(parents=True)
        (staging / "aligned.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        (staging / "pivot.pt").write_bytes(b"PK\x03\x04 truncated")
        (staging / ".inversion.png.abc.tmp").write_bytes(b"")
    else:
        _finished_run(G, images[0], run)
        if damage == "metrics_missing":
            (final / "metrics.json").unlink()
        elif damage == "metrics_corrupt":
            text = (final / "metrics.json").read_text()
            (final / "metrics.json").write_text(text[: len(text) // 2])
        else:
            data = (final / "reconstruction.png").read_bytes()
            (final / "reconstruction.png").write_bytes(data[: len(data) // 2])
    assert not is_finished(final, "tune")
    outcome = process_images(G, images[:1], run, INV, TUNE, OPTS)[0]
    assert outcome.status == "done", outcome.error
    assert is_finished(final, "tune") and not staging_dir(final).exists()
    metrics = json.loads((final / "metrics.json").read_text())
    if damage == "killed_in_staging":
        assert metrics["inversion"]["reused_pivot"] is False  # the truncated pivot was not trusted
    assert set(metrics["files"]) == {"aligned.png", "pivot.pt", "inversion.png", "reconstruction.png"}
    assert Pivot.load(final / "pivot.pt").w.shape == (1, G.num_ws, G.w_dim)


def test_complete_staging_folder_is_moved_into_place(G, images, tmp_path):
    """A kill between a finished staging folder and its rename: the result is kept, not recomputed."""
    run = tmp_path / "run"
    final = _finished_run(G, images[0], run)
    stamp = mtime(final / "metrics.json")
    final.rename(staging_dir(final))
    outcome = process_images(G, images[:1], run, INV, TUNE, OPTS)[0]
    assert outcome.status == "skipped"
    assert is_finished(final, "tune") and mtime(final / "metrics.json") == stamp
    assert not staging_dir(final).exists()


def test_each_pass_reads_a_photo_s_metrics_json_once(G, images, tmp_path, monkeypatch):
    """A skipped photo and a redone one (other tuning settings) each parse their metrics.json once per pass: the
    finished test, the record and the pivot checks share one read (issue 33; they used to read it 2-3 times)."""
    run = tmp_path / "run"
    final = _finished_run(G, images[0], run)
    reads: list[Path] = []
    read_text = Path.read_text

    def counting(self, *args, **kwargs):
        if self.name == "metrics.json":
            reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    skipped = process_images(G, images[:1], run, INV, TUNE, OPTS)[0]
    assert skipped.status == "skipped" and reads == [final / "metrics.json"]
    assert skipped.metrics == json.loads(read_text(final / "metrics.json"))
    reads.clear()
    redone = process_images(G, images[:1], run, INV, dataclasses.replace(TUNE, steps=1), OPTS)[0]
    assert redone.status == "done" and redone.redone == ("tuning settings changed",)
    assert reads == [final / "metrics.json"]


def test_reuse_pivot_and_redo_corrupt_or_foreign_pivot(G, images, tmp_path):
    run = tmp_path / "run"
    invert_only = RunOptions(stage="invert", align=False, progress=False)
    assert [o.status for o in process_images(G, images, run, INV, TUNE, invert_only)] == ["done"] * 3
    pivots = [Pivot.load(run / p.stem / "pivot.pt") for p in images]
    assert not (run / images[0].stem / "reconstruction.png").exists()

    (run / images[1].stem / "pivot.pt").write_bytes(b"garbage, not a torch file")
    nan = Pivot(**{**pivots[2].__dict__, "w": torch.full_like(pivots[2].w, float("nan"))})
    nan.save(run / images[2].stem / "pivot.pt")
    outcomes = process_images(G, images, run, INV, TUNE, OPTS)
    assert [o.status for o in outcomes] == ["done"] * 3, [o.error for o in outcomes]
    reused = [o.metrics["inversion"]["reused_pivot"] for o in outcomes]
    assert reused == [True, False, False]
    assert torch.equal(Pivot.load(run / images[0].stem / "pivot.pt").w, pivots[0].w)
    for p in images[1:]:
        assert torch.isfinite(Pivot.load(run / p.stem / "pivot.pt").w).all()

    # a pivot made with other inversion settings is not reused by `pti run`, but is by `pti tune`
    other_inv = dataclasses.replace(INV, steps=3)
    redo = RunOptions(align=False, progress=False, skip_finished=False)
    assert process_images(G, images[:1], run, other_inv, TUNE, redo)[0].metrics["inversion"]["reused_pivot"] is False
    tune_only = RunOptions(align=False, progress=False, skip_finished=False, require_pivot=True)
    assert process_images(G, images[:1], run, INV, TUNE, tune_only)[0].metrics["inversion"]["reused_pivot"] is True


def test_pivot_of_another_generator_is_not_reused(G, images, tmp_path):
    run = tmp_path / "run"
    invert_only = RunOptions(stage="invert", align=False, progress=False)
    process_images(G, images[:1], run, INV, TUNE, invert_only)
    other = make_tiny_generator(resolution=G.img_resolution, seed=99)  # same shapes, other weights
    assert Pivot.load(run / images[0].stem / "pivot.pt").generator == weights_fingerprint(G) != weights_fingerprint(other)
    tune_only = RunOptions(align=False, progress=False, skip_finished=False, require_pivot=True)
    outcome = process_images(other, images[:1], run, INV, TUNE, tune_only)[0]
    assert outcome.status == "failed" and "this generator" in outcome.error
    again = process_images(G, images[:1], run, INV, TUNE, tune_only)[0]
    assert again.status == "done" and again.metrics["inversion"]["reused_pivot"] is True


def test_pivot_check_fits_names_the_mismatch(G):
    pivot = Pivot(w=torch.zeros(1, G.num_ws + 1, G.w_dim))
    with pytest.raises(ValueError, match="num_ws, w_dim"):
        pivot.check_fits(G)
    Pivot(w=torch.zeros(1, G.num_ws, G.w_dim)).check_fits(G)
    with pytest.raises(ValueError, match="noise"):
        Pivot(w=torch.zeros(1, G.num_ws, G.w_dim), noise=[torch.zeros(1, 1, 3, 3)]).check_fits(G)


def test_pivot_noise_maps_are_none_when_none_were_optimised(G):
    """0 steps or an encoder's code leave ``noise`` empty: G must then render with its own noise_const,
    not with an empty list (G.synthesis raises on a wrong count)."""
    w = torch.zeros(1, G.num_ws, G.w_dim)
    assert Pivot(w=w).noise_maps() is None and Pivot(w=w).noise_maps("cpu") is None
    maps = [torch.randn(1, 1, layer.resolution, layer.resolution) for layer in G.synthesis.noise_layers()]
    got = Pivot(w=w, noise=maps).noise_maps("cpu")
    assert len(got) == len(maps) and all(torch.equal(a, b) for a, b in zip(got, maps))
    G = copy.deepcopy(G)
    for layer in G.synthesis.noise_layers():  # a fresh G's noise strengths are 0
        layer.noise_strength.data.fill_(0.5)
    with torch.no_grad():  # None renders G's own noise_const; the optimised maps render another image
        own = G.synthesis(w, noise_mode="const", noise=Pivot(w=w).noise_maps())
        const = G.synthesis(w, noise_mode="const")
        theirs = G.synthesis(w, noise_mode="const", noise=Pivot(w=w, noise=maps).noise_maps())
    assert torch.equal(own, const) and not torch.equal(own, theirs)


def test_tune_without_pivot_fails_with_a_clear_error(G, images, tmp_path):
    run = tmp_path / "run"
    outcome = process_images(G, images[:1], run, INV, TUNE, RunOptions(align=False, progress=False,
                                                                       require_pivot=True))[0]
    assert outcome.status == "failed" and "pti invert" in outcome.error and images[0].name in outcome.error
    assert not (run / images[0].stem).exists() and not staging_dir(run / images[0].stem).exists()


def test_non_finite_loss_aborts_only_that_image(G, images, tmp_path):
    run = tmp_path / "run"
    # a diverging pivot (finite but enormous) left in the staging folder of image 1 by a killed run
    huge = Pivot(w=torch.full((1, G.num_ws, G.w_dim), 1e30), space="w", config=config_to_dict(INV))
    huge.save(staging_dir(run / images[1].stem) / "pivot.pt")
    outcomes = process_images(G, images, run, INV, TUNE, OPTS)
    assert [o.status for o in outcomes] == ["done", "failed", "done"]
    assert "NonFiniteLossError" in outcomes[1].error
    assert not (run / images[1].stem).exists() and not staging_dir(run / images[1].stem).exists()
    record = json.loads(failure_path(run, images[1].stem).read_text())
    assert "NonFiniteLossError" in record["error"] and record["file"] == str(images[1])
    # the next run retries it (the bad pivot is gone) and clears the failure record
    assert [o.status for o in process_images(G, images, run, INV, TUNE, OPTS)] == ["skipped", "done", "skipped"]
    assert not failure_path(run, images[1].stem).exists()


def test_diverging_learning_rate_writes_nothing_and_keeps_older_result(G, images, tmp_path):
    run = tmp_path / "run"
    invert_only = RunOptions(stage="invert", align=False, progress=False)
    process_images(G, images[:1], run, INV, TUNE, invert_only)
    before = (run / images[0].stem / "metrics.json").read_text()
    # a finite learning rate at which tuning diverges (inf itself is refused by the config: tests/test_config_ranges.py)
    bad = TuningConfig(steps=2, lr=1e30, perceptual_net="effnet-lite0", lpips_threshold=None)
    with pytest.raises(RuntimeError, match="tuning loss became"):
        run_one(G, images[0], run / images[0].stem, INV, bad, OPTS)
    assert (run / images[0].stem / "metrics.json").read_text() == before  # the invert result is untouched
    outcomes = process_images(G, images, run, INV, bad, OPTS)
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert sorted(os.listdir(run)) == [".failures", images[0].stem]
    assert sorted(os.listdir(run / ".failures")) == sorted(f"{p.stem}.json" for p in images)


def test_pti_run_cli_reports_unreadable_image(G, images, tmp_path, capsys):
    from pti.cli import main
    from pti.stylegan2.checkpoints import save

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in images:
        shutil.copy(p, folder / p.name)
    (folder / "broken.png").write_bytes(b"this is not an image")
    save(G, tmp_path / "g.safetensors")
    run = tmp_path / "run"
    argv = ["run", "--input", str(folder), "--output", str(run), "--generator", str(tmp_path / "g.safetensors"),
            "--device", "cpu", "--no-align", "--quiet", "--inv-steps", "2", "--tune-steps", "2",
            "--inv-w-avg-samples", "100", "--inv-perceptual-net", "effnet-lite0",
            "--tune-perceptual-net", "effnet-lite0"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "FAILED broken" in err and "broken.png" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"] == {"images": 4, "done": 3, "failed": 1, "missing": 0}
    assert [f["name"] for f in summary["failures"]] == ["broken"]
    assert "cannot read" in summary["failures"][0]["error"]
    assert summary["this_run"]["processed"] == 3 and summary["this_run"]["images_per_minute"] > 0
    assert {e["name"]: e["status"] for e in summary["images"]} == {"broken": "failed", "img0": "done",
                                                                    "img1": "done", "img2": "done"}
    md = (run / "summary.md").read_text()
    assert "**broken**" in md and "images/min" in md and "| img2 | done |" in md

    # the user replaces the bad file: the next run does only that image and succeeds
    shutil.copy(images[0], folder / "broken.png")
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["done"] == 4 and summary["failures"] == []
    assert (summary["this_run"]["processed"], summary["this_run"]["skipped_finished"]) == (1, 3)
    assert not failure_path(run, "broken").exists()
    # a run with nothing left says so (it printed "0.00 images/min")
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing left to do" in out and "images/min" not in out


def test_summary_markdown_cells_show_names_as_written():
    """A photo named like HTML shows as written in summary.md (summary.html escaped it; the markdown did not)."""
    from pti.jobs.summary import _cell

    assert _cell("<b>me</b> | you\nthen") == "&lt;b&gt;me&lt;/b&gt; \\| you then"


# --- issue 29, item 1: a finished result is reused only when what it was made from is unchanged ---------------

def _metrics(run: Path, name: str) -> dict:
    return json.loads((run / name / "metrics.json").read_text())


def test_finished_result_records_what_it_was_made_from(G, images, tmp_path):
    run = tmp_path / "run"
    process_images(G, images[:1], run, INV, TUNE, OPTS)
    made = _metrics(run, images[0].stem)["made_from"]
    assert made["generator"] == weights_fingerprint(G)
    assert made["photo_sha256"] == hashlib.sha256(images[0].read_bytes()).hexdigest()
    assert (made["align"], made["face_index"], made["class_index"], made["init"]) == (False, None, None, "mean")


@pytest.mark.parametrize("change", ["generator", "tuning", "inversion", "photo", "old_metrics"])
def test_finished_result_is_redone_when_what_it_was_made_from_changed(G, images, tmp_path, change):
    """The report: `pti run photos/`, then the same with `-g other.safetensors` said '0 done, 2 already
    finished'. Every input of a result counts: the generator's weights, the settings, the photo's bytes."""
    from pti.jobs.folder import NOT_RECORDED
    from pti.jobs.runner import redone_message

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in images[:2]:
        shutil.copy(p, folder / p.name)
    photos = sorted(folder.glob("*.png"))
    run = tmp_path / "run"
    assert [o.status for o in process_images(G, photos, run, INV, TUNE, OPTS)] == ["done", "done"]
    assert [o.status for o in process_images(G, photos, run, INV, TUNE, OPTS)] == ["skipped", "skipped"]
    g, inv, tune, names = G, INV, TUNE, [p.stem for p in photos]
    if change == "generator":
        g, reason = make_tiny_generator(resolution=G.img_resolution, seed=99), "generator changed"
    elif change == "tuning":
        tune, reason = dataclasses.replace(TUNE, steps=3), "tuning settings changed"
    elif change == "inversion":
        inv, reason = dataclasses.replace(INV, steps=3), "inversion settings changed"
    elif change == "photo":
        shutil.copy(images[2], photos[0])  # same name, other content
        reason, names = "photo changed", names[:1]
    else:  # a result of an older pti: no record of its inputs
        for name in names:
            data = _metrics(run, name)
            del data["made_from"]
            (run / name / "metrics.json").write_text(json.dumps(data))
        reason = NOT_RECORDED
    outcomes = process_images(g, photos, run, inv, tune, OPTS)
    assert {o.name: o.status for o in outcomes} == {p.stem: "done" if p.stem in names else "skipped" for p in photos}
    assert [o.redone for o in outcomes if o.status == "done"] == [(reason,)] * len(names)
    assert redone_message(outcomes) == f"{len(names)} finished image(s) redone: {reason}"
    for o in outcomes:
        data = _metrics(run, o.name)
        assert data["made_from"]["generator"] == weights_fingerprint(g)
        assert data["made_from"]["photo_sha256"] == hashlib.sha256((folder / f"{o.name}.png").read_bytes()).hexdigest()
        assert data["config"]["tuning"] == config_to_dict(tune) and data["config"]["inversion"] == config_to_dict(inv)
        assert Pivot.load(run / o.name / "pivot.pt").generator == weights_fingerprint(g)
    # the pivot is reused only when it still fits: same generator, inversion settings and photo
    reused = outcomes[0].metrics["inversion"]["reused_pivot"]
    assert reused is (change == "tuning"), (change, reused)
    # and the redone results are finished: the next run skips them
    assert {o.status for o in process_images(g, photos, run, inv, tune, OPTS)} == {"skipped"}


def test_another_class_redoes_a_conditional_result(images, tmp_path):
    G = make_tiny_generator(resolution=16, seed=3, c_dim=2)
    run = tmp_path / "run"
    first = process_images(G, images[:1], run, INV, TUNE, dataclasses.replace(OPTS, class_index=0))[0]
    assert first.status == "done", first.error
    again = process_images(G, images[:1], run, INV, TUNE, dataclasses.replace(OPTS, class_index=1))[0]
    assert again.status == "done" and again.redone == ("class changed",)
    assert again.metrics["made_from"]["class_index"] == 1 and again.metrics["inversion"]["reused_pivot"] is False


def test_invert_and_tune_compare_only_what_their_stage_uses(G, images, tmp_path):
    """`pti invert` ignores the tuning settings; `pti tune` takes the pivot as found (any inversion settings)
    but not for a photo that changed since the pivot was made."""
    run = tmp_path / "run"
    process_images(G, images[:1], run, INV, TUNE, OPTS)
    invert_only = RunOptions(stage="invert", align=False, progress=False)
    assert process_images(G, images[:1], run, INV, dataclasses.replace(TUNE, steps=3), invert_only)[0].status == "skipped"
    tune_only = RunOptions(align=False, progress=False, require_pivot=True)
    assert process_images(G, images[:1], run, dataclasses.replace(INV, steps=3), TUNE, tune_only)[0].status == "skipped"
    tuned = process_images(G, images[:1], run, INV, dataclasses.replace(TUNE, steps=3), tune_only)[0]
    assert tuned.status == "done" and tuned.redone == ("tuning settings changed",)
    assert tuned.metrics["inversion"]["reused_pivot"] is True

    photo = tmp_path / images[0].name
    shutil.copy(images[1], photo)  # another photo under the name of the one the pivot was made from
    outcome = process_images(G, [photo], run, INV, TUNE, tune_only)[0]
    assert outcome.status == "failed" and "photo changed" in outcome.error and "pti invert" in outcome.error
    assert process_images(G, [photo], run, INV, TUNE, OPTS)[0].metrics["inversion"]["reused_pivot"] is False


def test_save_generator_on_a_result_without_it_redoes_it(G, images, tmp_path):
    """`pti edit` tells users to rerun with --save-generator: that must not say 'already finished'."""
    run = tmp_path / "run"
    process_images(G, images[:1], run, INV, TUNE, OPTS)
    keep = dataclasses.replace(OPTS, save_generator=True)
    outcome = process_images(G, images[:1], run, INV, TUNE, keep)[0]
    assert outcome.status == "done" and "tuned.safetensors" in outcome.metrics["files"]
    assert outcome.metrics["inversion"]["reused_pivot"] is True
    assert process_images(G, images[:1], run, INV, TUNE, OPTS)[0].status == "skipped"  # a superset: kept


def _two_photos_two_generators(G, images, tmp_path) -> tuple[Path, list[str]]:
    """Two photos in tmp_path/photos, G saved as g.safetensors and another generator as other.safetensors:
    the run folder and the `pti run` arguments (tiny settings; add -g)."""
    from pti.stylegan2.checkpoints import save

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in images[:2]:
        shutil.copy(p, folder / p.name)
    save(G, tmp_path / "g.safetensors")
    save(make_tiny_generator(resolution=G.img_resolution, seed=99), tmp_path / "other.safetensors")
    run = tmp_path / "run"
    argv = ["run", str(folder), "-o", str(run), "--device", "cpu", "--no-align", "--quiet", "--inv-steps", "2",
            "--tune-steps", "2", "--inv-w-avg-samples", "100", "--inv-perceptual-net", "effnet-lite0",
            "--tune-perceptual-net", "effnet-lite0"]
    return run, argv


def test_pti_run_with_another_generator_redoes_and_says_so(G, images, tmp_path, capsys):
    """The report, through the command line: the second run redoes both photos and says why in one line."""
    from pti.cli import main

    run, argv = _two_photos_two_generators(G, images, tmp_path)
    assert main([*argv, "-g", str(tmp_path / "g.safetensors")]) == 0
    capsys.readouterr()
    assert main([*argv, "-g", str(tmp_path / "other.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "2 done, 0 already finished" in out and "2 finished image(s) redone: generator changed" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["generator"] == str(tmp_path / "other.safetensors")
    fingerprint = weights_fingerprint(make_tiny_generator(resolution=G.img_resolution, seed=99))
    assert all(_metrics(run, p.stem)["made_from"]["generator"] == fingerprint for p in images[:2])


# --- issue 29, item 10: what a result's last bits depend on is recorded --------------------------------------

def test_metrics_record_thread_count_and_kernel_isa(G, images, tmp_path):
    run = tmp_path / "run"
    process_images(G, images[:1], run, INV, TUNE, OPTS, worker={"rank": 0, "world_size": 1})
    worker = _metrics(run, images[0].stem)["worker"]
    assert worker["threads"] == torch.get_num_threads() == 1  # the autouse fixture's one thread
    assert worker["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert worker["rank"] == 0 and "isa_env" in worker and worker["cuda_device"] is None


# --- issue 29, item 9: reconstruction.png is what the kept generator renders ---------------------------------

def _find_cell(grid: "np.ndarray", cell: "np.ndarray") -> list[tuple[int, int]]:
    """Every (y, x) where ``cell`` [h, w, 3] sits in ``grid`` [H, W, 3] with all its bytes equal."""
    h, w = cell.shape[:2]
    return [(y, x) for y in range(grid.shape[0] - h + 1) for x in range(grid.shape[1] - w + 1)
            if np.array_equal(grid[y:y + h, x:x + w], cell)]


@pytest.mark.parametrize("noise", ["const", "pivot"])
def test_pti_edit_at_strength_0_gives_reconstruction_png_exactly(G, images, tmp_path, noise):
    """The report: `pti edit RUN/PHOTO --strengths 0` differed from reconstruction.png by one 8-bit level on
    ~2 % of pixels (reconstruction.png from the float32 weights, tuned.safetensors in float16). With
    --save-generator the run renders (and measures) the kept fp16 weights, so the two are equal, byte for
    byte. Checked on the real `pti edit` output: its grid's strength-0 cell is found in it unchanged."""
    from PIL import Image

    from pti.cli import main

    run = tmp_path / "run"
    tune = dataclasses.replace(TUNE, steps=20, lr=3e-3, use_pivot_noise=noise == "pivot")  # moved well off G
    outcome = process_images(G, images[:1], run, INV, tune, dataclasses.replace(OPTS, save_generator=True))[0]
    assert outcome.status == "done" and outcome.metrics["tuning"]["weights"] == "float16"
    photo = run / images[0].stem
    direction = tmp_path / "d.pt"
    torch.save(torch.randn(G.w_dim, generator=torch.Generator().manual_seed(0)), direction)
    (run / "summary.json").write_text(json.dumps({"generator": ""}))  # directions: none to compute
    out = tmp_path / "edit.png"
    assert main(["edit", str(photo), "--direction", str(direction), "--strengths", "0", "--out", str(out),
                 "--device", "cpu"]) == 0
    reconstruction = np.asarray(Image.open(photo / "reconstruction.png").convert("RGB"))
    assert len(_find_cell(np.asarray(Image.open(out).convert("RGB")), reconstruction)) == 1


# --- review of issue 29: a failed redo never leaves a stale result counted as finished -----------------------

def test_failed_redo_sets_the_stale_result_aside_and_the_run_fails(G, images, tmp_path, capsys):
    """The report: a run with `-g other` and a diverging learning rate printed 'redone: generator changed' and
    'FAILED' for both photos, then '2 of 2 image(s) finished, 0 failed', exit 0, and kept the results made
    with the first generator (which `pti edit RUN/PHOTO` then used)."""
    from pti.cli import main
    from pti.jobs.folder import stale_dir, stale_note

    run, argv = _two_photos_two_generators(G, images, tmp_path)
    argv.append("--save-generator")
    assert main([*argv, "-g", str(tmp_path / "g.safetensors")]) == 0
    capsys.readouterr()
    assert main([*argv, "-g", str(tmp_path / "other.safetensors"), "--tune-lr", "1e30"]) == 1
    captured = capsys.readouterr()
    assert "redone" not in captured.out  # nothing was redone
    assert captured.err.count("FAILED") == 2 and "generator changed" in captured.err
    assert "0 of 2 image(s) finished, 2 failed" in captured.out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"] == {"images": 2, "done": 0, "failed": 2, "missing": 0}
    assert all("stale" in f["error"] and "generator changed" in f["error"] for f in summary["failures"])
    for p in images[:2]:
        assert not (run / p.stem).exists()  # `pti edit RUN/PHOTO` finds no result to take for this run's
        kept = stale_dir(run / p.stem)
        assert json.loads((kept / "metrics.json").read_text())["made_from"]["generator"] == weights_fingerprint(G)
        assert "generator changed" in json.loads((kept / "stale.json").read_text())["reasons"]
        assert "stale" in stale_note(run / p.stem) and "tuning loss became" in stale_note(run / p.stem)
    assert "stale" in (run / "summary.md").read_text()
    # the same inputs again: the stale pivot is offered (and fits), the photos finish, the stale copies go
    assert main([*argv, "-g", str(tmp_path / "g.safetensors")]) == 0
    assert json.loads((run / "summary.json").read_text())["counts"]["done"] == 2
    assert not (run / ".stale" / images[0].stem).exists() and stale_note(run / images[0].stem) is None
    assert _metrics(run, images[0].stem)["inversion"]["reused_pivot"] is True


def test_pti_tune_with_another_generator_fails_and_sets_its_result_aside(G, images, tmp_path):
    """`pti tune -g other` on a run made with another generator: failed, counted failed, the pivot kept aside
    for a `pti tune` with the right generator."""
    from pti.jobs.folder import stale_dir

    run = tmp_path / "run"
    process_images(G, images[:1], run, INV, TUNE, OPTS)
    tune_only = RunOptions(align=False, progress=False, require_pivot=True)
    other = make_tiny_generator(resolution=G.img_resolution, seed=99)
    outcome = process_images(other, images[:1], run, INV, TUNE, tune_only)[0]
    assert outcome.status == "failed" and "no pivot.pt in the run folder fits this generator" in outcome.error
    assert "stale" in outcome.error and not is_finished(run / images[0].stem, "tune")
    assert (stale_dir(run / images[0].stem) / "pivot.pt").is_file()
    again = process_images(G, images[:1], run, INV, dataclasses.replace(TUNE, steps=3), tune_only)[0]
    assert again.status == "done" and again.metrics["inversion"]["reused_pivot"] is True


def test_output_that_is_a_file_is_refused_before_any_work(images, tmp_path, capsys):
    """The report: `pti run -o afile` said "[Errno 20] Not a directory: 'afile/.failures'"."""
    from pti.cli import main

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(["run", str(images[0]), "-o", str(afile), "--device", "cpu", "-g", "no-such-generator"]) == 2
    err = capsys.readouterr().err
    assert err == f"pti run: --output {afile} is a file, not a folder; give a run folder\n", err
    assert afile.read_text() == "not a folder"


def test_positional_input_and_input_option_together_are_refused(images, tmp_path, capsys):
    """New-user test: `pti run --input a.jpg b.png -o runs/x` processed a.jpg only and dropped b.png silently."""
    from pti.cli import main

    run = tmp_path / "run"
    argv = ["run", "--input", str(images[0]), str(images[1]), "-o", str(run), "--device", "cpu", "-g", "nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"pti run: give one input, as INPUT ({images[1]}) or as --input ({images[0]}), not both; for "
                   f"several photos give a folder\n"), err
    assert not run.exists()


def test_summary_gives_execution_per_image_and_this_run_s_apart(G, images, tmp_path):
    """The report: summary.json's config.execution showed this run's execution settings over results made with
    others (they are not compared for reuse, so a second run with other ones skips the photos)."""
    from pti.cli import main
    from pti.stylegan2.checkpoints import save

    save(G, tmp_path / "g.safetensors")
    run = tmp_path / "run"
    argv = ["run", str(images[0]), "-o", str(run), "-g", str(tmp_path / "g.safetensors"), "--device", "cpu",
            "--no-align", "--quiet", "--inv-steps", "2", "--tune-steps", "2", "--inv-w-avg-samples", "100",
            "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net", "effnet-lite0"]
    assert main(argv) == 0
    assert main([*argv, "--exec-sync-every", "7"]) == 0  # skipped: made with sync_every 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["this_run"]["skipped_finished"] == 1
    assert "execution" not in summary["config"] and summary["this_run"]["execution"]["sync_every"] == 7
    assert summary["images"][0]["execution"]["sync_every"] == 1
    assert _metrics(run, images[0].stem)["config"]["execution"]["sync_every"] == 1
