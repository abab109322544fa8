"""Execute the numbered notebooks with papermill and export them to HTML (``pti report``).

Each ``notebooks/0N_*.ipynb`` is run in a Jupyter kernel of *this* interpreter (kernel
``python3``, checked by :func:`check_kernel`) with its parameters overridden by
:func:`run_report`'s ``parameters``; the executed notebook goes to ``<reports>/0N_*.ipynb``
and its HTML export to ``<reports>/0N_*.html``, both written under a temporary name and
renamed. The notebooks write their figures and ``0N_metrics.json`` to ``output_dir``
(the repository's ``figures/`` for ``make report``). A failing notebook is still saved
(with its traceback) and reported; the others run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pti.io_utils import atomic_path, atomic_write_json

NOTEBOOKS: tuple[str, ...] = ("01_inversion", "02_pivotal_tuning", "03_locality_regularization", "04_editing",
                              "05_multi_id")
#: notebooks run only when named, never by ``pti report`` alone: 06 needs CLIP's weights to mean anything (offline it
#: edits with a random CLIP), 07 reports on a run folder (parameter ``run``, e.g. ``pti report 07 -p run=runs/cmp``)
ON_REQUEST_NOTEBOOKS: tuple[str, ...] = ("06_styleclip", "07_compare_report")
#: parameters of ``pti report --quick``: the same notebooks with short optimisations (a smoke run, not the paper)
QUICK_PARAMETERS: dict[str, Any] = {"inversion_steps": 100, "tuning_steps": 100, "w_avg_samples": 2000,
                                    "num_drift_samples": 16, "alphas": [30.0]}
KERNEL_NAME = "python3"
REPO_ROOT = Path(__file__).resolve().parents[2]  # pti/apps/report.py -> the checkout


class ReportError(RuntimeError):
    """The notebooks or the Jupyter kernel cannot be found or used (the message says what to do)."""


@dataclass
class NotebookRun:
    """One executed notebook: where its outputs are, how long it took, and the error if it failed."""

    name: str
    ipynb: Path
    html: Path | None = None
    seconds: float = 0.0
    error: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def notebooks_dir(root: str | Path | None = None) -> Path:
    """The folder with the numbered notebooks (``<repo>/notebooks`` by default)."""
    folder = Path(root) if root is not None else REPO_ROOT / "notebooks"
    missing = [n for n in NOTEBOOKS if not (folder / f"{n}.ipynb").is_file()]
    if missing:
        raise ReportError(f"{folder}: notebooks {', '.join(missing)} not found; run `pti report` from a checkout of "
                          "the pti repository (the notebooks are not part of the installed package) or pass "
                          "--notebooks-dir")
    return folder


def select(names: Iterable[str] | None) -> list[str]:
    """Full notebook names from prefixes (``'01'``, ``'03_locality'``, ``'07'``) or all of :data:`NOTEBOOKS` for
    None/empty (:data:`ON_REQUEST_NOTEBOOKS` only by name)."""
    wanted = list(names or [])
    if not wanted:
        return list(NOTEBOOKS)
    chosen = []
    for w in wanted:
        matches = [n for n in NOTEBOOKS + ON_REQUEST_NOTEBOOKS if n.startswith(w) or n == Path(w).stem]
        if len(matches) != 1:
            raise ReportError(f"notebook {w!r}: {'ambiguous' if matches else 'unknown'}; choose from "
                              f"{', '.join(NOTEBOOKS + ON_REQUEST_NOTEBOOKS)} (a number like 03 is enough)")
        chosen.append(matches[0])
    return chosen


def _runs_this_interpreter(argv0: str) -> bool:
    generic = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if argv0 in generic:  # jupyter_client replaces these with sys.executable
        return True
    try:
        return Path(argv0).resolve() == Path(sys.executable).resolve()
    except OSError:
        return False


def check_kernel(kernel_name: str = KERNEL_NAME, install: bool = True) -> str:
    """Make sure the Jupyter kernel ``kernel_name`` runs this interpreter (so notebooks import this pti).

    When the kernel spec is missing and ``install`` is true, it is installed into this
    environment (``python -m ipykernel install --sys-prefix``), which a fresh virtualenv may need.
    Returns the kernel spec's folder. Raises :class:`ReportError` when the spec starts
    another Python.
    """
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError as exc:
        raise ReportError("the notebooks need Jupyter: pip install 'pti[notebooks]' "
                          "(papermill, ipykernel, nbconvert, ipywidgets)") from exc
    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        if not install:
            raise ReportError(f"no Jupyter kernel {kernel_name!r}; run `{sys.executable} -m ipykernel install "
                              f"--sys-prefix`") from None
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", kernel_name],
                       check=True, capture_output=True, text=True)
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    argv0 = spec.argv[0] if spec.argv else ""
    if not _runs_this_interpreter(argv0):
        raise ReportError(f"Jupyter kernel {kernel_name!r} ({spec.resource_dir}) starts {argv0}, not this "
                          f"interpreter ({sys.executable}), so the notebooks would import another pti. Run "
                          f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}` and set "
                          "JUPYTER_PREFER_ENV_PATH=1, or remove that kernel spec.")
    return str(spec.resource_dir)


def absolute_paths(parameters: dict[str, Any]) -> dict[str, Any]:
    """``generator`` / ``images`` / ``output_dir`` / ``run`` values that name existing files or folders,
    made absolute: the kernels run in the notebooks' folder, not in the caller's."""
    out = dict(parameters)
    for key in ("generator", "images", "output_dir", "run"):
        value = out.get(key)
        if isinstance(value, str) and value and Path(value).exists():
            out[key] = str(Path(value).resolve())
        elif isinstance(value, list) and key == "images":
            out[key] = [str(Path(v).resolve()) if isinstance(v, str) and Path(v).exists() else v for v in value]
    return out


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters`` cell: ``{name: default}``."""
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def export_html(ipynb: str | Path, html: str | Path) -> Path:
    """Convert an executed notebook to a standalone HTML page (atomically)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(ipynb), as_version=4))
    html = Path(html)
    with atomic_path(html) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html


def execute_notebook(source: str | Path, output: str | Path, parameters: dict[str, Any],
                     kernel_name: str = KERNEL_NAME, progress: bool = True,
                     timeout_s: float | None = None) -> None:
    """Run ``source`` with papermill (cwd: the notebook's folder) into ``output``, atomically.

    Raises papermill's ``PapermillExecutionError`` when a cell fails; the executed notebook,
    with the traceback, is still written to ``output``.
    """
    import papermill

    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.partial.ipynb")  # papermill wants the .ipynb suffix
    try:
        papermill.execute_notebook(str(source), str(tmp), parameters=parameters, kernel_name=kernel_name,
                                   cwd=str(source.parent), progress_bar=progress, execution_timeout=timeout_s)
    finally:
        if tmp.exists():
            os.replace(tmp, output)


def run_report(names: Sequence[str] | None = None, reports: str | Path = "reports",
               figures: str | Path | None = "figures", parameters: dict[str, Any] | None = None,
               html: bool = True, notebooks: str | Path | None = None, progress: bool = True,
               kernel_name: str = KERNEL_NAME, quick: bool = False, threads: int | None = None,
               log=print) -> list[NotebookRun]:
    """Execute the selected notebooks into ``reports`` (``.ipynb`` + ``.html``).

    ``figures``: the notebooks' ``output_dir`` (absolute path passed to them; None leaves
    each notebook's default). ``parameters``: papermill parameters; each notebook receives
    those its ``parameters`` cell declares, and a name no selected notebook declares raises
    :class:`ReportError` (a typo would otherwise be ignored). ``quick``: start from
    :data:`QUICK_PARAMETERS` (``parameters`` override them). ``threads``: CPU threads of
    each kernel (``OMP_NUM_THREADS``; on a busy shared machine 1 is much faster than
    oversubscribed cores). Returns one :class:`NotebookRun`
    per notebook and writes ``<reports>/summary.json``.
    """
    folder = notebooks_dir(notebooks)
    check_kernel(kernel_name)
    reports = Path(reports).resolve()
    reports.mkdir(parents=True, exist_ok=True)
    common = dict(parameters or {})
    given = set(common)
    if quick:
        common = {**QUICK_PARAMETERS, **common}
    if figures is not None:
        common["output_dir"] = str(Path(figures).resolve())
    common = absolute_paths(common)
    chosen = select(names)
    declared = {name: notebook_parameters(folder / f"{name}.ipynb") for name in chosen}
    unknown = given - set().union(*declared.values())
    if unknown:
        raise ReportError(f"parameter(s) {', '.join(sorted(unknown))} not declared by "
                          f"{'any of ' if len(chosen) > 1 else ''}{', '.join(chosen)}; known: "
                          f"{', '.join(sorted(set().union(*declared.values())))}")
    runs = []
    saved_threads = os.environ.get("OMP_NUM_THREADS")
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(int(threads))   # inherited by the kernels
    try:
        for name in chosen:
            runs.append(_run_one(name, folder, reports, common, declared[name], html, kernel_name, progress, log))
    finally:
        if threads is not None:
            if saved_threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved_threads
    atomic_write_json({"parameters": common, "python": sys.executable,
                       "notebooks": [{"name": r.name, "ok": r.ok, "seconds": round(r.seconds, 1),
                                      "ipynb": str(r.ipynb), "html": str(r.html) if r.html else None,
                                      "error": r.error} for r in runs]}, reports / "summary.json")
    return runs


def _run_one(name: str, folder: Path, reports: Path, common: dict[str, Any], declared: dict[str, Any], html: bool,
             kernel_name: str, progress: bool, log) -> NotebookRun:
    own = {k: v for k, v in common.items() if k in declared}  # each notebook gets the ones it declares
    run = NotebookRun(name=name, ipynb=reports / f"{name}.ipynb", parameters=own)
    log(f"pti report: running {name} ...")
    t0 = time.perf_counter()
    try:
        execute_notebook(folder / f"{name}.ipynb", run.ipynb, own, kernel_name=kernel_name, progress=progress)
    except Exception as exc:  # papermill's execution error carries the cell's traceback summary
        run.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
    run.seconds = time.perf_counter() - t0
    if html and run.ipynb.exists():
        run.html = export_html(run.ipynb, run.ipynb.with_suffix(".html"))
    log(f"pti report: {name} {'done' if run.ok else 'FAILED'} in {run.seconds:.0f} s -> {run.ipynb}"
        + (f" ({run.error})" if run.error else ""))
    return run
