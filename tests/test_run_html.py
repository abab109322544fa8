"""What a run's summary shows (issue 29): the pivot named by its origin and space (item 13) and every edit
as its own captioned thumbnail (item 14).

The report, rebuilt: ``pti run photos/ --init e4e --inv-steps 25 --edit smile`` showed an e4e W+ pivot as
"W inversion" in summary.html and as "W: smile" in the edit grid, and each edit cell of summary.html was
the whole grid shrunk to ~100 px. :func:`make_e4e_run` runs that command on the shipped demo generator and
encoder (one 64 px photo rendered by the generator, no alignment, 2 tuning steps, the offline
EfficientNet-Lite0 distance); tests/test_browser.py opens the same kind of run in Chromium.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from pti.jobs.summary_html import THUMB_DIR, edit_label, edit_rows, html_page
from pti.labels import metrics_pivot, pivot_label

E4E_PIVOT = "e4e W+ + 25 steps"


@pytest.fixture(autouse=True)
def _one_thread(_few_threads, monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "pti-cache"))


def make_e4e_run(root: Path, grid_labels: list | None = None) -> Path:
    """``pti run photos --init e4e --inv-steps 25 --edit smile --edit sefa:0:-2,2`` into ``root/run``
    (demo generator and its shipped encoder); returns the run folder. ``grid_labels``: when a list, the
    edit grids' row labels are appended to it (the grid is still written)."""
    from pti import images
    from pti.cli import main
    from pti.stylegan2.checkpoints import load

    G = load("demo").eval()
    photos = root / "photos"
    photos.mkdir(parents=True)
    with torch.no_grad():
        x = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)), None),
                        noise_mode="const")
    images.write_image(x[0], photos / "face 0.png")   # a space: links must be quoted
    save_grid = images.save_grid

    def recording_save_grid(rows, path, row_labels=None, **kwargs):
        if grid_labels is not None:
            grid_labels.extend(row_labels or [])
        return save_grid(rows, path, row_labels=row_labels, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images, "save_grid", recording_save_grid)
        code = main(["run", str(photos), "--output", str(root / "run"), "--generator", "demo", "--device", "cpu",
                     "--no-align", "--quiet", "--init", "e4e", "--inv-steps", "25", "--tune-steps", "2",
                     "--inv-w-avg-samples", "100", "--inv-perceptual-net", "effnet-lite0", "--tune-perceptual-net",
                     "effnet-lite0", "--edit", "smile", "--edit", "sefa:0:-2,2"])
    assert code == 0
    return root / "run"


def test_pivot_label_names_origin_space_and_steps():
    assert pivot_label("projector", "w") == "W inversion"
    assert pivot_label("projector", "w+", 450) == "W+ inversion"       # the projector's steps are not its name
    assert pivot_label("e4e", "w+") == "e4e W+" and pivot_label("e4e", "w+", 0) == "e4e W+"
    assert pivot_label("e4e", "w+", 25) == E4E_PIVOT and pivot_label("e4e", "w+", 1) == "e4e W+ + 1 step"
    assert pivot_label("w_init", "w+", 10) == "given W+ + 10 steps"
    assert pivot_label("file", "w+") == "W+ from a file"               # pti edit --pivot projected_w.npz
    assert pivot_label(None, None) == "W inversion"                    # a pivot written before origins were kept
    assert pivot_label("restyle", "w+") == "restyle W+"                # unknown: as stored
    old = {"space": "w", "inversion": {"steps": 450}}                  # metrics.json without inversion.origin
    assert metrics_pivot(old) == {"origin": "projector", "space": "w", "steps": 450, "label": "W inversion"}


def test_edit_file_names_read_back_as_direction_and_strength():
    from pti.editing.direction import Direction
    from pti.editing.run_edits import RunEdit

    d = Direction(torch.ones(4), name="d")
    files = RunEdit("sefa_2", d, (3.0, -3.0, 1.5)).files() + RunEdit("smile", d, (0.0,)).files()
    assert edit_label(files[0]) == ("sefa_2", "3")     # the last '_' part is the strength
    assert edit_rows(files) == [("sefa_2", [("-3", "edits/sefa_2_-3.png"), ("1.5", "edits/sefa_2_1.5.png"),
                                            ("3", "edits/sefa_2_3.png")]), ("smile", [("0", "edits/smile_0.png")])]
    assert edit_label("edits/odd.png") == ("odd", None)  # no strength: shown whole


def test_combined_edit_captions_show_the_label_not_the_file_key(tmp_path):
    """Review of issue 29 item 6: summary.html captioned `smile:1+yaw:2` as "smile1+yaw2 s=1"; it is labelled
    "smile 1 + yaw 2" as in the edit grid (EditSpec.label)."""
    from pti.editing.direction import Direction
    from pti.editing.run_edits import RunEdit, parse_edit

    d = Direction(torch.ones(4), name="d")
    texts = ("smile:1+yaw:2", "sefa:0:1+sefa:1:-0.5@0,2", "age+yaw:-1+smile:0.2")
    specs = [parse_edit(t) for t in texts]
    files = [f for spec in specs for f in RunEdit(spec.key, d, spec.strengths or spec.default_strengths).files()]
    assert [label for label, _ in edit_rows(files)] == sorted(spec.label for spec in specs)
    from pti.jobs.summary_html import _edits

    cell = _edits({"name": "p", "edits": files}, {})
    assert "smile 1 + yaw 2 s=1" in cell and "smile1+yaw2 s=1" not in cell


def test_e4e_run_is_labelled_as_e4e_everywhere_and_shows_each_edit(tmp_path):
    labels: list[str] = []
    run = make_e4e_run(tmp_path, labels)
    photo = run / "face 0"

    # the grid's rows name the pivot that was edited on the original generator (was "W: smile")
    assert labels == [f"{E4E_PIVOT} (orig. G): smile", "PTI: smile", f"{E4E_PIVOT} (orig. G): sefa_0", "PTI: sefa_0"]

    # summary.json: the pivot's origin, space and steps, and the edit files of the manifest
    entry = json.loads((run / "summary.json").read_text())["images"][0]
    assert entry["pivot"] == {"origin": "e4e", "space": "w+", "steps": 25, "label": E4E_PIVOT}
    assert entry["edits"] == ["edits/sefa_0_-2.png", "edits/sefa_0_2.png", "edits/smile_-3.png", "edits/smile_0.png",
                              "edits/smile_3.png"]
    assert entry["edit_grid"] == "edits/grid.png"

    page = (run / "summary.html").read_text()
    assert f"<th>{E4E_PIVOT}</th>" in page and f"{E4E_PIVOT}: PSNR" in page
    assert "W inversion" not in page and "W:" not in page
    # one figure per edit: linked thumbnail and a caption naming direction and strength; the grid is a link
    figures = re.findall(r'<figure><a href="([^"]+)"><img src="([^"]+)" alt="([^"]+)"[^>]*></a>'
                         r'<figcaption><a href="([^"]+)">([^<]+)</a></figcaption></figure>', page)
    assert [f[4] for f in figures] == ["sefa_0 s=-2", "sefa_0 s=2", "smile s=-3", "smile s=0", "smile s=3"]
    for href, src, alt, caption_href, caption in figures:
        assert href == caption_href and href.startswith("face%200/edits/") and alt == caption
        assert (run / "face 0" / href.split("/", 1)[1]).is_file()
        thumb = run / src.replace("%20", " ")
        assert thumb.is_file() and max(Image.open(thumb).size) <= 128
    assert '<a href="face%200/edits/grid.png">edit grid</a>' in page
    assert 'src=".thumbs/face%200/edits_grid.jpg"' not in page       # the shrunk grid is gone
    # thumbnails: original, pivot, PTI and the five edits
    assert sorted(p.name for p in (run / THUMB_DIR / "face 0").iterdir()) == sorted(
        ["aligned.jpg", "inversion.jpg", "reconstruction.jpg", "edits_sefa_0_-2.jpg", "edits_sefa_0_2.jpg",
         "edits_smile_-3.jpg", "edits_smile_0.jpg", "edits_smile_3.jpg"])

    md = (run / "summary.md").read_text()
    assert f"| face 0 | done | 0 | {E4E_PIVOT} |" in md and "W inversion" not in md
    assert "**smile** -3: [![smile s=-3](.thumbs/face%200/edits_smile_-3.jpg)](face%200/edits/smile_-3.png)" in md
    assert "[edit grid](face%200/edits/grid.png)" in md
    assert json.loads((photo / "metrics.json").read_text())["inversion"]["origin"] == "e4e"


def test_pages_with_pivots_of_several_origins_label_each_row():
    def entry(name, origin, space, steps):
        return {"name": name, "status": "done", "inversion": {"psnr": 20.0}, "tuning": {"psnr": 30.0},
                "pivot": {"origin": origin, "space": space, "steps": steps,
                          "label": pivot_label(origin, space, steps)}, "edits": [], "edit_grid": None}

    summary = {"run_dir": "r", "stage": "tune", "written": 0.0, "counts": {"images": 2, "done": 2, "failed": 0,
                                                                          "missing": 0}, "perceptual_name": "x"}
    entries = [entry("a", "projector", "w", 450), entry("b", "e4e", "w+", 0)]
    thumbs = {n: {"inversion.png": f".thumbs/{n}/inversion.jpg"} for n in ("a", "b")}
    page = html_page(summary, entries, thumbs, 0, 1, 0)
    assert "<th>pivot</th>" in page                                  # no single name for the column
    assert "<small>W inversion</small>" in page and "<small>e4e W+</small>" in page
    assert "W inversion: PSNR 20.00 dB" in page and "e4e W+: PSNR 20.00 dB" in page
    one = html_page(summary, entries[:1], thumbs, 0, 1, 0)           # one kind: the heading names it
    assert "<th>W inversion</th>" in one and "<small>" not in one
