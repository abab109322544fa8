"""Pages a user opens, in headless Chromium: notebook 04's edit explorer in JupyterLab (issue 17) and a
run's ``summary.html`` (issue 29, items 13 and 14).

Notebook 04: ``tools/browser_check_nb04.py`` (see its docstring for every check): Run All on the demo
generator with tiny step counts, then the strength slider and the direction drop-down must
change the picture, the self-check cell must leave the user's slider alone, and no "Error
displaying widget" may appear, live or after save and reload. Needs Debian's ``chromium`` and
the ``playwright`` package (``.ci/run`` installs both); skipped with the reason otherwise.

summary.html: ``tools/browser_check_summary.py`` opens the page of an e4e run with edits
(:func:`test_run_html.make_e4e_run`, the command of the report) from disk: every thumbnail loads,
each edit's caption (direction and strength) is visible under it, the links lead to files, and the
pivot is named "e4e W+ + 25 steps", never "W inversion".
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.browser]


def _load_check(name: str = "browser_check_nb04"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_edit_explorer_responds_in_jupyterlab(tmp_path):
    check = _load_check()
    if not Path(check.DEFAULT_CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {check.DEFAULT_CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("playwright", reason="pip install -c constraints.txt playwright (.ci/run installs it)")
    pytest.importorskip("jupyterlab", reason="needs the notebooks extra: pip install -e '.[notebooks]'")

    result = check.run(tmp_path, timeout_s=300)

    assert not result["failures"], result
    assert result["default_direction"] == "yaw" and {"yaw", "smile", "mouth_open"} <= set(result["directions"])
    assert result["saved_widget_view_cells"] and result["widget_errors_after_reload"] == 0


# measured 27 s on the shared 2-core machine at load 4.7 (the run 12-20 s, Chromium 4 s)
@pytest.mark.slow
def test_summary_html_shows_captioned_edit_thumbnails_in_chromium(tmp_path, _few_threads):
    import torch

    check = _load_check("browser_check_summary")
    if not Path(check.DEFAULT_CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {check.DEFAULT_CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("playwright", reason="pip install -c constraints.txt playwright (.ci/run installs it)")
    from test_run_html import E4E_PIVOT, make_e4e_run

    torch.set_num_threads(1)
    run = make_e4e_run(tmp_path)
    shot = tmp_path / "summary.png"

    result = check.run(run, check.DEFAULT_CHROMIUM, expect_pivot=E4E_PIVOT, screenshot=shot)

    assert not result["failures"], result
    assert result["images"] == result["loaded"] == 3 + 5        # original, pivot, PTI and five edits
    assert result["captions"] == ["sefa_0 s=-2", "sefa_0 s=2", "smile s=-3", "smile s=0", "smile s=3"]
    assert result["grids"] == ["edit grid"] and E4E_PIVOT in result["headings"]
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG"
