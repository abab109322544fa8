"""``pti report``: execute the numbered notebooks through papermill into reports/ (+ HTML)."""
from __future__ import annotations

import argparse
import json

from pti.commands._config_args import bounded

HELP = "run notebooks/0N_*.ipynb with papermill into reports/ (.ipynb + .html), refreshing figures/"


def _parameter(text: str) -> tuple[str, object]:
    """``NAME=VALUE``; VALUE is read as JSON when it parses (numbers, lists, null), else kept as text."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. tuning_steps=100), got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="which notebooks (e.g. 01 03_locality); default: all five")
    parser.add_argument("--quick", action="store_true",
                        help="short optimisations (100 inversion and tuning steps) instead of the paper's settings")
    parser.add_argument("--reports", default="reports", help="folder for the executed notebooks (default: reports)")
    parser.add_argument("--figures", default="figures",
                        help="folder for the figures and NN_metrics.json (the notebooks' output_dir; default: figures)")
    parser.add_argument("--generator", "-g", default=None, help="checkpoint or zoo name (notebook default: demo)")
    parser.add_argument("--images", default=None, help="a photo or folder of photos (default: the bundled photos)")
    parser.add_argument("--device", default=None, help="'auto', 'cpu', 'cuda' (notebook default: auto)")
    parser.add_argument("-p", "--parameter", action="append", default=[], type=_parameter, metavar="NAME=VALUE",
                        help="any other notebook parameter, repeatable (e.g. -p tuning_steps=200 -p identity=false)")
    parser.add_argument("--threads", type=bounded(int, ge=1), default=None,
                        help="CPU threads per notebook kernel (OMP_NUM_THREADS); 1 is fastest on a busy shared machine")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export")
    parser.add_argument("--notebooks-dir", default=None, help="where the notebooks are (default: <repo>/notebooks)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys

    from pti.apps.report import ReportError, run_report

    parameters: dict[str, object] = {}
    for key in ("generator", "images", "device"):
        if getattr(args, key) is not None:
            parameters[key] = getattr(args, key)
    parameters.update(dict(args.parameter))
    try:
        runs = run_report(args.notebooks, reports=args.reports, figures=args.figures, parameters=parameters,
                          html=not args.no_html, notebooks=args.notebooks_dir, progress=not args.quiet,
                          quick=args.quick, threads=args.threads)
    except ReportError as exc:
        print(f"pti report: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in runs if not r.ok]
    print(f"pti report: {len(runs) - len(failed)}/{len(runs)} notebooks ran; executed notebooks and HTML in "
          f"{args.reports}/, figures in {args.figures}/")
    for r in failed:
        print(f"pti report: {r.name} failed: {r.error} (see {r.ipynb})")
    return 1 if failed else 0
