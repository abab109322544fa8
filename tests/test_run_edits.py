"""Edits rendered during a run (`pti run --edit`), `pti edit RUN/PHOTO`, the fp16 tuned generator and the
visual run summary (`summary.html`, thumbnails, paging).

A tiny random StyleGAN2 (16 px) with 2 inversion and 2 tuning steps and the offline EfficientNet-Lite0
perceptual distance, on one CPU thread, as in tests/test_runner.py. Directions: SeFa component 0 of the
generator and a random InterFaceGAN-format file.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_generator
from pti.core.config import InversionConfig, TuningConfig
from pti.editing.run_edits import edit_key, parse_edit, resolve_run_edits
from pti.images import write_image
from pti.jobs.runner import RunOptions, process_images

INV = InversionConfig(steps=2, w_avg_samples=100, perceptual_net="effnet-lite0")
TUNE = TuningConfig(steps=2, perceptual_net="effnet-lite0", lpips_threshold=None)
STEP_ARGS = ["--device", "cpu", "--no-align", "--quiet", "--inv-steps", "2", "--tune-steps", "2",
             "--inv-w-avg-samples", "100", "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net",
             "effnet-lite0"]


@pytest.fixture(autouse=True)
def _one_thread(_few_threads, monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "pti-cache"))


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return make_tiny_generator(resolution=16, seed=1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, G) -> Path:
    """A folder of three 16x16 PNGs rendered by G, a generator file and a direction file (read-only)."""
    from pti.editing.direction import Direction
    from pti.editing.loaders import save_interfacegan
    from pti.stylegan2.checkpoints import save

    root = tmp_path_factory.mktemp("inputs")
    (root / "photos").mkdir()
    with torch.no_grad():
        x = G.synthesis(G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(4)), None),
                        noise_mode="const")
    for i in range(3):
        write_image(x[i], root / "photos" / f"img {i}.png")  # a space: file names must be quoted in links
    save(G, root / "g.safetensors")
    vector = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(7))
    save_interfacegan(Direction(vector, name="tilt", scale=2.0), root / "tilt.pt")
    return root


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _parsed(text: str) -> tuple[str, tuple[float, ...]]:
    spec = parse_edit(text)
    assert not spec.combined, text
    return spec.terms[0][0], spec.strengths or spec.default_strengths


def test_parse_edit_and_keys():
    assert _parsed("smile") == ("smile", (-3.0, 0.0, 3.0))
    assert _parsed("yaw:-3,0,3") == ("yaw", (-3.0, 0.0, 3.0))
    assert _parsed("sefa:2") == ("sefa:2", (-3.0, 0.0, 3.0))  # a component, not a strength
    assert _parsed("sefa:2:-1.5,2") == ("sefa:2", (-1.5, 2.0))
    assert _parsed("dir/x.pt#smile:1") == ("dir/x.pt#smile", (1.0,))
    assert _parsed("yaw@-1,1") == ("yaw", (-1.0, 1.0))
    with pytest.raises(ValueError, match="strengths"):
        parse_edit("yaw:big")
    assert [edit_key(s) for s in ("smile", "sefa:2", "a/b/age.pt", "pca.npz#3")] == ["smile", "sefa_2", "age",
                                                                                      "pca_3"]


def test_windows_paths_and_colons_in_paths_are_directions(tmp_path, monkeypatch):
    """Issue 29 item 6 (cookcli #335, strix #1285): `--edit 'C:\\d\\age.pt'` read direction `C` with strengths
    `\\d\\age.pt`. A drive letter and a colon inside an existing file's path belong to the path; only a
    trailing `:NUMBERS` is strengths."""
    for path in ("C:\\d\\age.pt", "C:/d/age.pt", "d:\\boundaries\\pose.npy"):
        assert _parsed(path) == (path, (-3.0, 0.0, 3.0))
        assert _parsed(path + ":-2,2") == (path, (-2.0, 2.0))
        assert _parsed(path + "#smile:1")[1] == (1.0,)
    assert edit_key("C:\\d\\age.pt") == "age" and edit_key("D:\\x\\pcs.npz#3") == "pcs_3"
    assert _parsed("runs:3/age.pt") == ("runs:3/age.pt", (-3.0, 0.0, 3.0))  # a path-like rest: not strengths
    monkeypatch.chdir(tmp_path)
    odd = tmp_path / "t:1" / "age:2.pt"  # colons (and a number after one) inside an existing path
    odd.parent.mkdir()
    odd.write_bytes(b"")
    assert _parsed("t:1/age:2.pt") == ("t:1/age:2.pt", (-3.0, 0.0, 3.0))
    assert _parsed("t:1/age:2.pt:0.5") == ("t:1/age:2.pt", (0.5,))
    plus = tmp_path / "a+b@2.pt"  # '+' and '@' in an existing file's name are part of it
    plus.write_bytes(b"")
    assert _parsed("a+b@2.pt") == ("a+b@2.pt", (-3.0, 0.0, 3.0))


def test_windows_path_error_names_the_path_and_says_edit_once(photos, tmp_path, capsys):
    from pti.cli import main

    rc = main(["run", str(photos / "photos"), "--output", str(tmp_path / "r"), "--generator",
               str(photos / "g.safetensors"), "--edit", "C:\\d\\age.pt", *STEP_ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and "C:\\d\\age.pt: no such direction file" in err and err.count("--edit") == 1, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("*/metrics.json"))
    rc = main(["run", str(photos / "photos"), "--output", str(tmp_path / "r"), "--generator",
               str(photos / "g.safetensors"), "--edit", "yaw:big", *STEP_ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("--edit") == 1 and "'yaw:big'" in err, err
    # review of issue 29 item 5: `--edit smile:nan` wrote edits/smile_nan.png
    for value in ("smile:nan", "smile:1e400", "smile:1+yaw:2@inf"):
        rc = main(["run", str(photos / "photos"), "--output", str(tmp_path / "r"), "--generator",
                   str(photos / "g.safetensors"), "--edit", value, *STEP_ARGS])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "finite" in err, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("*/metrics.json"))


def test_combined_edit_syntax():
    """Issue 29 item 16 (e4e #15, STIT #26: "age + pose + 0.2 smile"): one value, several directions."""
    spec = parse_edit("smile:1+yaw:2")
    assert spec.combined and spec.terms == (("smile", 1.0), ("yaw", 2.0)) and spec.strengths is None
    assert spec.default_strengths == (1.0,) and spec.key == "smile1+yaw2" and spec.label == "smile 1 + yaw 2"
    spec = parse_edit("age+yaw:-1+smile:0.2@-1,0,1")
    assert spec.terms == (("age", 1.0), ("yaw", -1.0), ("smile", 0.2)) and spec.strengths == (-1.0, 0.0, 1.0)
    assert spec.key == "age1+yaw-1+smile0.2" and spec.label == "age 1 + yaw -1 + smile 0.2"
    assert parse_edit("sefa:2+C:\\d\\age.pt:+3").terms == (("sefa:2", 1.0), ("C:\\d\\age.pt", 3.0))
    for bad, why in (("smile:1,2+yaw", "one weight"), ("smile++yaw", "empty term")):
        with pytest.raises(ValueError, match=why):
            parse_edit(bad)


def test_run_edits_files_strength0_and_resume(G, photos, tmp_path):
    edits = resolve_run_edits(["sefa:0:-2,0,2", f"{photos / 'tilt.pt'}:0,1", "sefa:0:1+tilt_pt:-1@0,2"
                               .replace("tilt_pt", str(photos / "tilt.pt"))], G)
    assert edits[2].key == "sefa_0_1+tilt-1" and edits[2].label == "sefa_0 1 + tilt -1"
    with pytest.raises(ValueError, match="more than once"):
        resolve_run_edits(["sefa:0", "sefa:0:1"], G)
    options = RunOptions(align=False, progress=False, edits=edits)
    run = tmp_path / "run"
    images = sorted((photos / "photos").glob("*.png"))[:2]
    assert [o.status for o in process_images(G, images, run, INV, TUNE, options)] == ["done", "done"]
    photo = run / "img 0"
    expected = {"edits/sefa_0_-2.png", "edits/sefa_0_0.png", "edits/sefa_0_2.png", "edits/tilt_0.png",
                "edits/tilt_1.png", "edits/sefa_0_1+tilt-1_0.png", "edits/sefa_0_1+tilt-1_2.png", "edits/grid.png"}
    files = json.loads((photo / "metrics.json").read_text())["files"]
    assert expected <= set(files) and all((photo / f).stat().st_size == files[f] for f in expected)
    # grid: title, column labels and 6 rows (W and PTI per direction) of 128 px cells
    assert Image.open(photo / "edits" / "grid.png").height > 6 * 128
    # strength 0 is the reconstruction: same code, noise and noise mode. Measured on the float images
    # (before PNG rounding) with this generator: max |difference| 0 alone, 2.1e-6 in a batch of 3 or 9
    # (batched convolutions round differently); the PNGs are identical.
    recon = read_png(photo / "reconstruction.png")
    assert np.array_equal(read_png(photo / "edits" / "sefa_0_0.png"), recon)
    assert np.array_equal(read_png(photo / "edits" / "tilt_0.png"), recon)
    assert not np.array_equal(read_png(photo / "edits" / "sefa_0_2.png"), recon)  # the edit does something
    assert np.array_equal(read_png(photo / "edits" / "sefa_0_1+tilt-1_0.png"), recon)  # a combination at 0
    combined = read_png(photo / "edits" / "sefa_0_1+tilt-1_2.png")
    assert not np.array_equal(combined, recon) and not np.array_equal(combined, read_png(photo / "edits" /
                                                                                         "sefa_0_2.png"))

    # resume: finished photos are not redone, nor their edits
    stamps = {f: (photo / f).stat().st_mtime_ns for f in expected}
    assert [o.status for o in process_images(G, images, run, INV, TUNE, options)] == ["skipped", "skipped"]
    assert {f: (photo / f).stat().st_mtime_ns for f in expected} == stamps
    # a new edit on finished photos: not rendered, and the warning says what is needed
    more = RunOptions(align=False, progress=False, edits=resolve_run_edits(["sefa:1"], G))
    with pytest.warns(RuntimeWarning, match=r"2 finished photo\(s\) lack.*--save-generator"):
        process_images(G, images, run, INV, TUNE, more)
    assert not (photo / "edits" / "sefa_1_3.png").exists()


def _run_cli(photos: Path, run: Path, *extra: str, folder: Path | None = None) -> int:
    from pti.cli import main

    return main(["run", str(folder or photos / "photos"), "--output", str(run), "--generator",
                 str(photos / "g.safetensors"), "--edit", "sefa:0:-2,0,2", *STEP_ARGS, *extra])


def test_pti_edit_on_a_run_folder(G, photos, tmp_path, capsys):
    from pti.cli import main
    from pti.stylegan2.checkpoints import load

    run = tmp_path / "kept"
    assert _run_cli(photos, run, "--save-generator") == 0
    photo = run / "img 1"
    tuned_file = photo / "tuned.safetensors"
    # fp16 on disk: half the float32 size (G's state in float32 is 239,168 bytes with its header); measured 122,252
    # bytes, 0.523 of the float32 payload (a size check, not a rounding tolerance)
    assert tuned_file.stat().st_size < 0.55 * sum(t.numel() * 4 for t in G.state_dict().values())
    tuned = load(tuned_file)
    assert {p.dtype for p in tuned.parameters()} == {torch.float32}
    from pti.core.pivot import Pivot

    pivot = Pivot.load(photo / "pivot.pt")
    with torch.no_grad():
        again = tuned.synthesis(pivot.w, noise_mode="const")
    # float16 weights change the image by at most 4.9e-3 of the [-1, 1] range with this generator (measured:
    # fp16 vs float32 tuned copy, same pivot), under one 8-bit level (7.8e-3): the PNGs differ by <= 1 level
    assert np.abs(read_png(photo / "reconstruction.png") - (again[0].permute(1, 2, 0).clamp(-1, 1) + 1).mul(127.5)
                  .round().numpy()).max() <= 1

    capsys.readouterr()
    out = tmp_path / "e.png"
    assert main(["edit", str(photo), "--direction", "sefa:0", "--strengths=-2,0,2", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    # the old explicit form still works
    assert main(["edit", "--generator", str(tuned_file), "--pivot", str(photo / "pivot.pt"), "--direction",
                 str(photos / "tilt.pt"), "--out", str(tmp_path / "e2.png"), "--device", "cpu"]) == 0

    # a run without --save-generator: a clear error (exit 2, no traceback) that says how to get the weights
    lost = tmp_path / "lost"
    shutil.copytree(run, lost)
    for f in lost.glob("*/tuned.safetensors"):
        f.unlink()
    capsys.readouterr()
    assert main(["edit", str(lost / "img 1"), "--direction", "sefa:0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--save-generator" in err and "Traceback" not in err


def test_summary_html_rows_thumbnails_and_pages(photos, tmp_path):
    from pti.jobs.summary import write_summary
    from pti.jobs.summary_html import THUMB_DIR

    folder = shutil.copytree(photos / "photos", tmp_path / "photos")
    (folder / "broken.png").write_bytes(b"not an image")
    run = tmp_path / "run"
    assert _run_cli(photos, run, folder=folder) == 1  # one failure
    page = (run / "summary.html").read_text()
    assert len(re.findall(r"<tr id=", page)) == 4 and not (run / "summary_2.html").exists()
    assert 'href="img%200/edits/grid.png"' in page
    assert re.search(r'<tr id="broken">.*class="failed".*cannot read', page, re.S)
    thumbs = sorted((run / THUMB_DIR).rglob("*.jpg"))
    assert len(thumbs) == 3 * 6  # original, pivot, PTI and the edits at -2, 0, 2 per photo (the grid is a link)
    assert all(max(Image.open(t).size) <= 128 for t in thumbs)
    assert "](.thumbs/img%200/reconstruction.jpg)" in (run / "summary.md").read_text()

    summary = json.loads((run / "summary.json").read_text())
    write_summary(summary, run, page_size=2)
    first, second = (run / "summary.html").read_text(), (run / "summary_2.html").read_text()
    assert len(re.findall(r"<tr id=", first)) == 2 and len(re.findall(r"<tr id=", second)) == 2
    assert 'href="summary_2.html"' in first and 'href="summary.html"' in second
    write_summary(summary, run, page_size=50)  # fewer pages: the stale one goes
    assert not (run / "summary_2.html").exists()


def test_pti_edit_default_strengths_are_the_runs():
    from pti.commands import edit
    from pti.editing import run_edits

    assert edit.DEFAULT_STRENGTHS == run_edits.DEFAULT_STRENGTHS


def test_edit_values_review_of_issue_29():
    """Review of issue 29 items 5-8: non-finite strengths were accepted (edits/smile_nan.png); spaces around '+'
    gave "unknown direction ' yaw'"; a trailing '@' blamed "after the last ':'"; two files with one stem were
    "given more than once"; "1 were run without"."""
    from pti.editing.run_edits import missing_edits_message, parse_strengths

    for bad in ("nan", "inf", "1e400", "-3,nan,3", "-inf"):
        with pytest.raises(ValueError, match="finite"):
            parse_strengths(bad)
        with pytest.raises(ValueError, match="finite"):
            parse_edit(f"smile:{bad}")
        with pytest.raises(ValueError, match="finite"):
            parse_edit(f"smile:1+yaw:2@{bad}")
    for text in ("smile:1 + yaw:2", "smile:1 +yaw:2", " smile:1+ yaw:2 ", "smile:1 + yaw:2 @ 1"):
        spec = parse_edit(text)
        assert spec.terms == (("smile", 1.0), ("yaw", 2.0)) and spec.key == "smile1+yaw2", text
    assert parse_edit("age + yaw:-1 + smile:0.2@-1,1").terms == (("age", 1.0), ("yaw", -1.0), ("smile", 0.2))
    with pytest.raises(ValueError, match=r"'@' is followed by the strengths"):
        parse_edit("smile:1+yaw:2@")
    with pytest.raises(ValueError, match=r"'@' is followed by the strengths"):
        parse_edit("smile@big")


def test_two_direction_files_with_one_name_and_the_missing_edits_wording(G, photos, tmp_path, monkeypatch):
    from pti.editing.direction import Direction
    from pti.editing.loaders import save_interfacegan
    from pti.editing.run_edits import missing_edits_message

    monkeypatch.chdir(tmp_path)
    for i, folder in enumerate(("dirs", "dirs2")):
        (tmp_path / folder).mkdir()
        save_interfacegan(Direction(torch.randn(G.w_dim, generator=torch.Generator().manual_seed(i)), name="row"),
                          tmp_path / folder / "row.pt")
    with pytest.raises(ValueError) as err:
        resolve_run_edits(["dirs/row.pt:1", "dirs2/row.pt:1", "sefa:1"], G)
    text = str(err.value)
    assert "'dirs/row.pt:1' and 'dirs2/row.pt:1'" in text and "same name 'row'" in text and "rename" in text, text
    assert "more than once" not in text and "sefa" not in text
    with pytest.raises(ValueError, match=r"dirs/row.pt:1 given more than once.*e\.g\. dirs/row.pt:-3,0,3"):
        resolve_run_edits(["dirs/row.pt:1", str(tmp_path / "dirs" / "row.pt") + ":2"], G)  # one file, two spellings
    run = tmp_path / "run"
    for name in ("a", "b"):
        (run / name).mkdir(parents=True)
    edits = resolve_run_edits(["sefa:1"], G)
    assert "1 was run without --save-generator" in missing_edits_message(run, ["a"], edits)
    assert "2 were run without --save-generator" in missing_edits_message(run, ["a", "b"], edits)


def _spy_grids(monkeypatch) -> list[dict]:
    """Record what `pti edit` passes to pti.images.render_grid: its rows (float images) and title."""
    import pti.images

    grids, real = [], pti.images.render_grid

    def spy(rows, **kwargs):
        grids.append({"rows": rows, **kwargs})
        return real(rows, **kwargs)

    monkeypatch.setattr(pti.images, "render_grid", spy)
    return grids


def _as_png_levels(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).clamp(-1, 1) + 1).mul(127.5).round().to(torch.int16).numpy()


def test_pti_edit_explicit_form_renders_like_the_run(photos, tmp_path, capsys, monkeypatch):
    """Review of issue 29 items 1, 4, 9: `pti edit --generator RUN/PHOTO/tuned.safetensors --pivot RUN/PHOTO/pivot.pt`
    (documented as equivalent to `pti edit RUN/PHOTO`) rendered with the pivot's noise maps and resolved directions
    on the tuned generator: up to 76 levels from reconstruction.png at strength 0. Both forms now share one path:
    the run's noise settings and its original generator for directions. The grid is titled like the run's."""
    from pti.cli import main
    from pti.labels import metrics_pivot

    run = tmp_path / "kept"
    assert _run_cli(photos, run, "--save-generator") == 0
    photo = run / "img 1"
    grids = _spy_grids(monkeypatch)
    args = ["--direction", "sefa:0", "--strengths=-2,0,2", "--device", "cpu"]
    assert main(["edit", str(photo), *args, "--out", str(tmp_path / "a.png")]) == 0
    assert main(["edit", "--generator", str(photo / "tuned.safetensors"), "--pivot", str(photo / "pivot.pt"), *args,
                 "--out", str(tmp_path / "b.png")]) == 0
    folder_form, explicit = (g["rows"][0] for g in grids)
    assert all(torch.equal(a, b) for a, b in zip(folder_form, explicit))
    # strength 0 is reconstruction.png: the same fp16 weights and constant noise. A batch of 3 rounds differently
    # from one image by up to 2.1e-6 (test_run_edits_files_strength0_and_resume), which moves a value lying at a
    # level boundary by one level: measured 1 of 768 values, by 1 level (before the fix: other noise and another
    # direction, many levels)
    diff = np.abs(_as_png_levels(explicit[1]) - read_png(photo / "reconstruction.png"))
    assert diff.max() <= 1 and (diff > 0).sum() <= 4, (diff.max(), (diff > 0).sum())
    label = metrics_pivot(json.loads((photo / "metrics.json").read_text()))["label"]
    assert grids[0]["title"] == grids[1]["title"] == f"edits of the {label} pivot on tuned.safetensors"

    # the run's original generator, given explicitly, renders as inversion.png (the pivot's noise maps)
    assert main(["edit", "--generator", str(photos / "g.safetensors"), "--pivot", str(photo / "pivot.pt"), *args,
                 "--out", str(tmp_path / "c.png")]) == 0
    assert np.array_equal(_as_png_levels(grids[2]["rows"][0][1]), read_png(photo / "inversion.png"))

    # a run tuned with random noise: said, since every render draws new noise
    metrics = json.loads((photo / "metrics.json").read_text())
    metrics["config"]["tuning"]["noise_mode"] = "random"
    (photo / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    assert main(["edit", str(photo), *args, "--out", str(tmp_path / "d.png")]) == 0
    assert "random noise" in capsys.readouterr().err

    # a folder that does not exist is said to be missing (was "with a pivot file, --generator is needed")
    assert main(["edit", str(run / "nonexist" / "astronaut"), "--direction", "sefa:0"]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "--generator is needed" not in err


def test_pti_edit_finds_the_generator_of_a_multi_id_run(photos, tmp_path, capsys, monkeypatch):
    """Review of issue 29 item 3: `pti edit RUN/PHOTO` of a `--multi-id` run (one RUN/tuned.safetensors) said
    "this run did not keep the tuned weights"."""
    from pti.cli import main

    run = tmp_path / "multi"
    folder = tmp_path / "two"
    folder.mkdir()
    for f in sorted((photos / "photos").glob("*.png"))[:2]:
        shutil.copy(f, folder / f.name)
    assert _run_cli(photos, run, "--multi-id", folder=folder) == 0
    photo = run / "img 0"
    assert (run / "tuned.safetensors").is_file() and not (photo / "tuned.safetensors").exists()
    grids = _spy_grids(monkeypatch)
    capsys.readouterr()
    assert main(["edit", str(photo), "--direction", "sefa:0", "--strengths=0", "--device", "cpu"]) == 0, \
        capsys.readouterr().err
    # one image (no batch): the reconstruction's rendering exactly
    assert np.array_equal(_as_png_levels(grids[0]["rows"][0][0]), read_png(photo / "reconstruction.png"))


def test_missing_edits_hint_names_the_missing_edit(G, tmp_path):
    """New-user test: a run with sefa:1 asked again with sefa:1 and sefa:2 hinted `--direction sefa:1` (present)
    instead of sefa:2 (missing)."""
    import json

    from pti.editing.run_edits import missing_edits_message

    edits = resolve_run_edits(["sefa:1", "sefa:2:-3,0,3"], G)
    run = tmp_path / "run"
    (run / "a").mkdir(parents=True)
    (run / "a" / "tuned.safetensors").write_bytes(b"")
    (run / "a" / "metrics.json").write_text(json.dumps({"status": "done", "files": {
        f: {} for f in edits[0].files() + ["edits/grid.png"]}}))
    text = missing_edits_message(run, ["a"], edits)
    assert "--direction sefa:2:-3,0,3`" in text and "--direction sefa:1 " not in text, text
    (run / "a" / "metrics.json").write_text(json.dumps({"status": "done", "files": {}}))  # lacks both
    assert "--direction sefa:1 --direction sefa:2:-3,0,3`" in missing_edits_message(run, ["a"], edits)


def test_comma_separated_edits_get_a_hint(G):
    """New-user test: `pti run --edit smile,yaw` said only "unknown direction 'smile,yaw'"."""
    hint = "repeat --edit for several edits (--edit smile --edit yaw), or give strengths after a colon (yaw:-3,0,3)"
    for text in ("smile,yaw", "smile,yaw:-3,3", "smile, yaw"):
        with pytest.raises(ValueError) as err:
            resolve_run_edits([text], G)
        assert str(err.value).endswith("; " + hint), str(err.value)
    with pytest.raises(ValueError) as err:  # no comma before the colon: no hint
        resolve_run_edits(["nosuchdirection:-3,3"], G)
    assert "unknown direction" in str(err.value) and "repeat --edit" not in str(err.value)
