"""Notebook 04's edit explorer in JupyterLab, driven by headless Chromium (issue 17).

Runs ``tools/browser_check_nb04.py`` (see its docstring for every check): Run All on the demo
generator with tiny step counts, then the strength slider and the direction drop-down must
change the picture, the self-check cell must leave the user's slider alone, and no "Error
displaying widget" may appear, live or after save and reload. Needs Debian's ``chromium`` and
the ``playwright`` package (``.ci/run`` installs both); skipped with the reason otherwise.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _load_check():
    spec = importlib.util.spec_from_file_location("browser_check_nb04", ROOT / "tools" / "browser_check_nb04.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
