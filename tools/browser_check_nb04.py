"""Notebook 04's edit explorer in a real browser: JupyterLab driven by headless Chromium (issue 17).

What a newcomer does, automated: open ``notebooks/04_editing.ipynb`` in JupyterLab, Run All,
move the strength slider, pick another direction, save, reload the page. Checked on the way:

* every code cell ran without an error, and the set-up cell printed no download chatter;
* the drop-down starts on ``yaw`` (demo generator) and lists every shipped boundary;
* dragging the strength slider and changing the direction each change the picture (the PNG
  bytes of the ``<img>``, fetched in the page), and how long each re-render took in the page;
* re-running the self-check cell leaves the user's slider and picture as they are;
* no "Error displaying widget" in the page, live or after save and reload, and the saved file
  holds a widget view only in the explorer's cell (no progress-bar widgets);
* after the reload the explorer shows the same picture again (restored from the live kernel).

Nothing downloads a browser: Playwright drives the Chromium at ``--chromium`` (Debian's
``/usr/bin/chromium``). JupyterLab runs on a free local port without a token, with its config,
data, runtime, settings and workspace folders in a temporary folder holding a copy of the
notebook, its parameters injected by papermill (``prepare_only``: nothing executed) with tiny
step counts. ``OMP_NUM_THREADS`` etc. are passed on to the kernel. Usage::

    python tools/browser_check_nb04.py [--chromium /usr/bin/chromium] [--work DIR] [--timeout 300]

prints the measurements as JSON and exits 0 when every check passed, 1 otherwise (the failed
checks are listed), 2 when Chromium or Playwright is missing. ``tests/test_browser.py`` runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_editing.ipynb"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_ERROR = "Error displaying widget"
# tiny step counts and one photo (prepare() adds it): the explorer needs pivots and a tuned generator, not good ones
PARAMETERS = {"generator": "demo", "device": "cpu", "inversion_steps": 5, "tuning_steps": 5, "w_avg_samples": 500,
              "perceptual_net": "random-squeeze", "inversion_perceptual_net": "random-squeeze",
              "identity": False, "align": False, "strengths": [-3.0, 0.0, 3.0]}

# JupyterLab settings for the run: no news/update pop-up over the page, every cell kept in the DOM
SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                 "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                             "recordTiming": True}}

# --- JavaScript run in the page (window.jupyterapp: JupyterLab started with expose_app_in_browser) ---
JS_NOTEBOOK = """() => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path && w.context.path.endsWith('%s') && w.content && w.content.model) return true;
  }
  return null;
}""" % NOTEBOOK
PANEL = """const panel = [...window.jupyterapp.shell.widgets('main')].find(
    w => w.context && w.context.path && w.context.path.endsWith('%s'));""" % NOTEBOOK
JS_KERNEL_READY = "async () => { %s await panel.sessionContext.ready; const k = panel.sessionContext.session?.kernel;" \
                  " return k ? k.status : null; }" % PANEL
JS_STATE = """() => { %s
  const cells = panel.content.model.cells; const out = {total: 0, done: 0, errors: [], busy: false};
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i); if (c.type !== 'code') continue;
    out.total++; if (c.executionCount) out.done++;
    for (const o of c.outputs.toJSON()) if (o.output_type === 'error') out.errors.push(o.ename + ': ' + o.evalue);
  }
  out.status = panel.sessionContext.session?.kernel?.status; out.dirty = panel.context.model.dirty;
  return out; }""" % PANEL
JS_RUN_CELL = """async (needle) => { %s
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) if (cells.get(i).sharedModel.getSource().includes(needle)) {
    panel.content.activeCellIndex = i; await window.jupyterapp.commands.execute('notebook:run-cell'); return i; }
  return -1; }""" % PANEL
JS_IMAGE_BYTES = """async (img) => { const r = await fetch(img.src); const b = new Uint8Array(await r.arrayBuffer());
  let s = ''; for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]); return btoa(s); }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_settings(work: Path) -> None:
    """:data:`SETTINGS` into ``work/lab-settings`` (JupyterLab's settings folder for the run)."""
    for name, value in SETTINGS.items():
        path = work / "lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def prepare(work: Path) -> Path:
    """Copy notebook 04 into ``work/notebooks`` with :data:`PARAMETERS` injected (not executed)."""
    import matplotlib.cbook
    import papermill

    (work / "notebooks").mkdir(parents=True, exist_ok=True)
    (work / "figures").mkdir(exist_ok=True)
    target = work / "notebooks" / NOTEBOOK
    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)   # one of the bundled photos
    papermill.execute_notebook(str(ROOT / "notebooks" / NOTEBOOK), str(target),
                               parameters={**PARAMETERS, "images": str(photo)},
                               prepare_only=True, kernel_name="python3", progress_bar=False, log_output=False)
    return target


def start_lab(work: Path, port: int, log: Path) -> subprocess.Popen:
    """Start JupyterLab on 127.0.0.1:``port``, root ``work``, no token, all its state under ``work``."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "jupyter-config"), "JUPYTER_DATA_DIR": str(work / "jupyter-data"),
           "JUPYTER_RUNTIME_DIR": str(work / "jupyter-runtime"), "JUPYTERLAB_SETTINGS_DIR": str(work / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "lab-workspaces")}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
           # a throw-away server on 127.0.0.1: no XSRF cookie dance for wait_for_lab's POST, no terminals,
           # no language-server scan
           "--ServerApp.disable_check_xsrf=True", "--ServerApp.terminals_enabled=False",
           "--ServerApp.jpserver_extensions={'jupyter_lsp': False}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as stream:
        return subprocess.Popen(cmd, cwd=str(work), env=env, stdout=stream, stderr=subprocess.STDOUT)


def wait_for_lab(proc: subprocess.Popen, port: int, log: Path, timeout_s: float = 90.0) -> None:
    """Wait until the server answers, then start the notebook's kernel (it boots while the page loads)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {proc.returncode}; its log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer on port {port} within {timeout_s:.0f} s; "
                                   f"its log: {log}") from None
            time.sleep(0.5)
    session = {"path": f"notebooks/{NOTEBOOK}", "type": "notebook", "name": NOTEBOOK, "kernel": {"name": "python3"}}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/sessions", data=json.dumps(session).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60):
        pass


def stop(proc: subprocess.Popen) -> None:
    """End the JupyterLab server we started (it shuts its kernels down on SIGTERM)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def saved_notebook_checks(path: Path) -> dict[str, Any]:
    """What the saved file holds: which cells have widget views, errors, download chatter."""
    nb = json.loads(path.read_text())
    views, errors, text, seconds = [], [], [], {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        timing = cell.get("metadata", {}).get("execution", {})   # JupyterLab's recordTiming
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            seconds[source.splitlines()[0][:50] if source else ""] = round((end - start).total_seconds(), 2)
        for o in cell.get("outputs", []):
            if WIDGET_VIEW in o.get("data", {}):
                views.append("explorer.widgets()" if "explorer.widgets()" in source else source[:60])
            if o["output_type"] == "error":
                errors.append(f"{o['ename']}: {o['evalue']}")
            text.append("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")))
    return {"widget_view_cells": views, "errors": errors, "text": "\n".join(text), "cell_seconds": seconds}


def run(work: Path, chromium: str = DEFAULT_CHROMIUM, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run every check; returns ``{'failures': [...], 'timings_s': {...}, ...}`` (no failures: passed)."""
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    result: dict[str, Any] = {"failures": [], "timings_s": {}}
    fail, timings = result["failures"].append, result["timings_s"]

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.monotonic() - since, 2)
        return time.monotonic()

    port, log = free_port(), work / "jupyterlab.log"
    write_settings(work)
    lab = start_lab(work, port, log)
    try:
        notebook = prepare(work)   # while the server starts
        t = lap("prepare", t0)
        wait_for_lab(lab, port, log)
        t = lap("start_jupyterlab", t)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/{NOTEBOOK}")
            page.wait_for_function(JS_NOTEBOOK, timeout=90_000)
            t = lap("open_notebook", t)
            status = page.evaluate(JS_KERNEL_READY)
            t = lap("kernel_ready", t)
            result["kernel_status_at_open"] = status

            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            state = wait_for_run(page, timeout_s - (time.monotonic() - t0))
            t = lap("run_all", t)
            result["cells"] = state
            if state["errors"] or state["done"] < state["total"]:
                fail(f"Run All: {state['done']}/{state['total']} code cells ran; errors: {state['errors']}")
                return result
            explorer_checks(page, result, fail, timings)
            t = lap("explorer_checks", t)

            page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
            page.wait_for_function("() => { %s return !panel.context.model.dirty; }" % PANEL)
            saved = saved_notebook_checks(notebook)
            result["saved_widget_view_cells"] = saved["widget_view_cells"]
            result["cell_seconds"] = saved["cell_seconds"]
            if saved["widget_view_cells"] != ["explorer.widgets()"]:
                fail(f"saved notebook: widget views in cells {saved['widget_view_cells']} (want only the explorer's)")
            if saved["errors"]:
                fail(f"saved notebook: error outputs {saved['errors']}")
            if "Downloading" in saved["text"]:
                fail("an output prints download chatter ('Downloading ...')")
            shown = result.pop("_last_png", None)
            t = lap("save", t)
            page.reload()
            page.wait_for_function(JS_NOTEBOOK, timeout=90_000)
            t = lap("reload_notebook", t)
            image = page.locator(".widget-image").first
            image.wait_for(state="visible", timeout=60_000)
            page.wait_for_function("(img) => img.src && img.src.length > 0", arg=image.element_handle())
            page.wait_for_timeout(2000)   # let the widget manager finish restoring every output
            if page.evaluate(JS_IMAGE_BYTES, image.element_handle()) != shown:
                fail("after save and reload the explorer does not show the picture it showed before")
            errors = page.get_by_text(WIDGET_ERROR).count()
            result["widget_errors_after_reload"] = errors
            if errors:
                fail(f"after save and reload: {errors} x '{WIDGET_ERROR}'")
            lap("reload_check", t)
            browser.close()
    finally:
        stop(lab)
    timings["total"] = round(time.monotonic() - t0, 2)
    return result


def wait_for_run(page: Any, budget_s: float) -> dict[str, Any]:
    """Poll the notebook model until every code cell has run (or one failed), the kernel is idle."""
    deadline = time.monotonic() + max(budget_s, 10.0)
    while True:
        state = page.evaluate(JS_STATE)
        if state["errors"] or (state["done"] == state["total"] and state["status"] == "idle"):
            return state
        if time.monotonic() > deadline:
            return state
        page.wait_for_timeout(1000)


def explorer_checks(page: Any, result: dict[str, Any], fail: Any, timings: dict[str, float]) -> None:
    """Slider, drop-down and self-check cell on the live explorer; records what it saw."""
    if page.get_by_text(WIDGET_ERROR).count():
        fail(f"live, after Run All: '{WIDGET_ERROR}' in the page")
    dropdown = page.locator(".widget-dropdown select").first
    image = page.locator(".widget-image").first
    slider = page.locator(".widget-slider").first            # strength (the layer range is the second)
    options = dropdown.locator("option").all_inner_texts()
    result["directions"], result["default_direction"] = options, dropdown.input_value()
    if result["default_direction"] != "yaw":
        fail(f"the drop-down starts on {result['default_direction']!r}, not 'yaw'")
    missing = {"yaw", "smile", "mouth_open"} - set(options)
    if missing:
        fail(f"shipped directions missing from the drop-down: {sorted(missing)}")

    def picture() -> str:
        return page.evaluate(JS_IMAGE_BYTES, image.element_handle())

    def changed_after(action: Any, name: str) -> str:
        before_src, before = image.get_attribute("src"), picture()
        start = time.monotonic()
        action()
        try:
            page.wait_for_function("([img, src]) => img.src !== src", arg=[image.element_handle(), before_src],
                                   timeout=30_000)
        except Exception:  # noqa: BLE001 - a timeout is the failure reported below
            pass
        timings[f"rerender_{name}"] = round(time.monotonic() - start, 3)
        after = picture()
        if after == before:
            fail(f"{name}: the picture did not change")
        return after

    readout = slider.locator(".widget-readout")
    start_value = readout.inner_text()
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target, .slider").first
    handle.scroll_into_view_if_needed()

    def drag() -> None:
        h, box = handle.bounding_box(), track.bounding_box()
        page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.85, h["y"] + h["height"] / 2, steps=8)
        page.mouse.up()

    changed_after(drag, "strength_slider")
    result["strength"] = {"before": start_value, "after": readout.inner_text()}
    if start_value == result["strength"]["after"]:
        fail(f"the strength readout stayed at {start_value} after the drag")
    other = next((o for o in options if o != result["default_direction"]), None)
    shown = changed_after(lambda: dropdown.select_option(label=other), "direction_dropdown") if other else picture()

    # the self-check cell again: the user's slider and picture must stay as they are
    strength = readout.inner_text()
    index = page.evaluate(JS_RUN_CELL, "explorer.check(")
    wait_for_run(page, 60)
    page.wait_for_timeout(1000)
    if index < 0:
        fail("no cell calls explorer.check(")
    if readout.inner_text() != strength or picture() != shown:
        fail(f"re-running the self-check cell moved the user's slider ({strength} -> {readout.inner_text()}) "
             "or changed the picture")
    result["_last_png"] = shown


def browser_missing(chromium: str) -> str | None:
    """Why the browser checks cannot run (no Chromium at ``chromium``, no Playwright), or None when they can."""
    if not Path(chromium).is_file():
        return f"no Chromium at {chromium} (Debian: apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -c constraints.txt playwright)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM, help="the Chromium binary (nothing is downloaded)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for Run All")
    args = parser.parse_args(argv)
    missing = browser_missing(args.chromium)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="pti-browser-"))
    try:
        result = run(work, args.chromium, args.timeout)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
