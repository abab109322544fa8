"""Notebook 04 in a kernel without ipywidgets (issue 29, item 8; first-order-model #509: widgets silently
missing in Colab).

``pti report 04`` used to stop at the slider cell with an ImportError and write no ``04_metrics.json``.
Here notebook 04 runs through :func:`pti.apps.report.run_report` (papermill, the code path of ``make report``)
at the tiny settings of tests/test_notebooks.py, in a kernel whose ``PYTHONPATH`` starts with a stub
``ipywidgets`` package that raises ``ModuleNotFoundError`` on import, as an environment without the
package does. The notebook must finish, print the one line in place of the sliders, write its metrics
(the self-check renders without widgets) and leave no widget output.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from conftest import make_tiny_generator
from pti.editing.widgets import NO_WIDGETS

# notebook 04 alone, tiny settings, one thread: measured 25-34 s on the shared 2-core machine (2026-12-07)
pytestmark = pytest.mark.slow

TINY_04 = {"device": "cpu", "inversion_steps": 15, "tuning_steps": 15, "w_avg_samples": 500,
           "perceptual_net": "random-squeeze", "inversion_perceptual_net": "random-squeeze",
           "strengths": [-2.0, 0.0, 2.0]}


def test_notebook_04_without_ipywidgets_finishes_and_says_so(tmp_path, monkeypatch):
    from pti.apps.report import run_report
    from pti.stylegan2.checkpoints import save

    stub = tmp_path / "no_ipywidgets" / "ipywidgets"
    stub.mkdir(parents=True)
    blocked = "raise ModuleNotFoundError(\"No module named 'ipywidgets'\", name='ipywidgets')\n"
    (stub / "__init__.py").write_text(blocked)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep))
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))
    generator = tmp_path / "tiny64.safetensors"
    save(make_tiny_generator(64), generator)

    runs = run_report(["04"], reports=tmp_path / "reports", figures=tmp_path / "figures", threads=1,
                      parameters={**TINY_04, "generator": str(generator)}, progress=False, log=lambda *_: None)

    assert len(runs) == 1 and runs[0].ok, runs[0].error
    nb = nbformat.read(str(runs[0].ipynb), as_version=4)
    text = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "stream"]
    slider_cell = next(c for c in nb.cells if c.cell_type == "code" and "explorer.widgets()" in c.source)
    printed = "".join(o.get("text", "") for o in slider_cell.outputs)
    assert printed == NO_WIDGETS + "\n", printed    # one line, nothing else: the kernel could not import ipywidgets
    assert sum(NO_WIDGETS in t for t in text) == 1
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not views
    metrics = json.loads((tmp_path / "figures" / "04_metrics.json").read_text())
    assert metrics["notebook"] == "04_editing"
    # the self-check fell back to rendering without widgets and still saw the edit change the picture
    assert metrics["widget"]["image_changed"] is True and metrics["widget"]["renders"] == 2
    assert {f"04_edits_{n}.png" for n in ("grace_hopper", "astronaut")} <= set(metrics["figures"])
