"""The summary of a ``pti compare`` run folder: ``summary.json`` and ``summary.md``.

Read from the run folder itself (every ``<photo>/metrics.json`` of stage 'compare' and every failure
record), so a restarted or sharded comparison summarises all its photos. Per method and metric:
mean, sample standard deviation (n - 1), median and the number of photos with a finite value; per
method, edit and strength: the same for the identity similarity after editing and the change of the
edit's dlib attribute score. The perceptual column is headed with the network's name
(:attr:`pti.core.perceptual.PerceptualDistance.name`), so an offline EfficientNet-Lite0 run reads as
such; photos scored with different networks are flagged.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from pti.jobs.compare import LABELS, METHODS, METRIC_KEYS, STAGE, finite
from pti.jobs.folder import finished_metrics, output_name, read_failure

SUMMARY_FORMAT = "pti-compare-summary-v1"
#: how each metric is shown: (header, digits, better)
COLUMNS = {"mse": ("MSE", 4, "↓"), "psnr": ("PSNR (dB)", 2, "↑"), "ms_ssim": ("MS-SSIM", 4, "↑"),
           "perceptual": ("perceptual", 4, "↓"), "identity": ("identity", 3, "↑")}


def stats(values: Sequence[Any]) -> dict[str, Any]:
    """``{n, mean, sd, median}`` of the finite values (sd: sample, n - 1; None below 2 values; all None for 0)."""
    xs = finite(values)
    if not xs:
        return {"n": 0, "mean": None, "sd": None, "median": None}
    return {"n": len(xs), "mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else None,
            "median": statistics.median(xs)}


def build_compare_summary(paths: Sequence[Path], run_dir: Path, outcomes: Sequence[dict[str, Any]] = (),
                          info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The comparison over ``paths`` (every rank's photos) as read from ``run_dir``.

    ``outcomes``: this run's :meth:`pti.jobs.folder.ImageOutcome.brief` records (all ranks), for the
    counts of this run; ``info``: header fields (generator, configs).
    """
    run_dir = Path(run_dir)
    done: dict[str, dict[str, Any]] = {}
    failures, missing = [], []
    for path in paths:
        name = output_name(path)
        metrics = finished_metrics(run_dir / name, STAGE)  # type: ignore[arg-type]
        if metrics is not None:
            done[name] = metrics
            continue
        record = read_failure(run_dir, name)
        if record is not None:
            failures.append({"name": name, "file": str(path), "rank": record.get("worker", {}).get("rank"),
                             "error": record.get("error", "")})
        else:
            missing.append(name)
    methods = [m for m in METHODS if any(m in d.get("methods", {}) for d in done.values())]
    names = sorted({d.get("perceptual_name", "?") for d in done.values()})
    reconstruction = {m: {key: stats([d["methods"][m].get(key) for d in done.values() if m in d["methods"]])
                          for key in (*METRIC_KEYS, "seconds")} for m in methods}
    editing: dict[str, dict[str, Any]] = {}
    for m in methods:
        for d in done.values():
            for key, rec in (d.get("edits", {}).get(m) or {}).items():
                slot = editing.setdefault(m, {}).setdefault(key, {"attribute": rec.get("attribute"), "by_strength": {}})
                for i, s in enumerate(rec["strengths"]):
                    cell = slot["by_strength"].setdefault(f"{s:g}", {"identity": [], "score_change": []})
                    cell["identity"].append(rec["identity"][i])
                    if rec.get("score_change") is not None:
                        cell["score_change"].append(rec["score_change"][i])
    for per_edit in editing.values():
        for slot in per_edit.values():
            slot["by_strength"] = {s: {k: stats(v) for k, v in cell.items()} for s, cell in slot["by_strength"].items()}
    per_photo = {name: {m: {k: d["methods"][m].get(k) for k in (*METRIC_KEYS, "seconds")} for m in d["methods"]}
                 for name, d in done.items()}
    return {
        "format": SUMMARY_FORMAT, "run_dir": str(run_dir), "written": time.time(), **(info or {}),
        "perceptual_name": names[0] if len(names) == 1 else names,
        "identity_model": "dlib ResNet face descriptors, cosine similarity to the photo (pti.metrics)",
        "counts": {"photos": len(paths), "done": len(done), "failed": len(failures), "missing": len(missing),
                   "this_run": {k: sum(o.get("status") == k for o in outcomes) for k in ("done", "skipped", "failed")}},
        "seconds_per_photo": stats([d.get("seconds") for d in done.values()]),
        "methods": methods, "reconstruction": reconstruction, "editing": editing,
        "failures": failures, "missing": missing, "photos": per_photo,
    }


def _fmt(value: Any, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(s: dict[str, Any], digits: int) -> str:
    if not s["n"]:
        return "–"
    sd = f" ± {_fmt(s['sd'], digits)}" if s["sd"] is not None else ""
    return f"{_fmt(s['mean'], digits)}{sd} (med. {_fmt(s['median'], digits)})"


def perceptual_header(summary: dict[str, Any]) -> str:
    """The perceptual column's header: it names the network (several names: all, flagged as mixed)."""
    name = summary["perceptual_name"]
    return f"perceptual: {name}" if isinstance(name, str) else f"perceptual: MIXED {', '.join(name)}"


def reconstruction_table(summary: dict[str, Any]) -> list[str]:
    """The paper's reconstruction table (a row per method, a column per metric; mean ± sd (median) over photos)
    as Markdown lines."""
    header = [f"{COLUMNS[k][0]} {COLUMNS[k][2]}" if k != "perceptual" else f"{perceptual_header(summary)} ↓"
              for k in METRIC_KEYS]
    lines = ["| method | photos | " + " | ".join(header) + " | seconds / photo |", "|---" * (len(header) + 3) + "|"]
    for m in summary["methods"]:
        r = summary["reconstruction"][m]
        cells = [_cell(r[k], COLUMNS[k][1]) for k in METRIC_KEYS]
        lines.append(f"| {LABELS[m]} | {r['psnr']['n']} | " + " | ".join(cells) + f" | {_cell(r['seconds'], 1)} |")
    return lines


def editing_table(summary: dict[str, Any]) -> list[str]:
    """The editing table (a row per method, edit and strength: identity after editing, attribute score change)
    as Markdown lines."""
    lines = ["| method | edit | strength | identity ↑ | score change |", "|---|---|---|---|---|"]
    for m in summary["methods"]:
        for key, slot in summary["editing"].get(m, {}).items():
            attr = f" ({slot['attribute']})" if slot["attribute"] else ""
            for s, cell in slot["by_strength"].items():
                lines.append(f"| {LABELS[m]} | {key}{attr} | {s} | {_cell(cell['identity'], 3)} | "
                             f"{_cell(cell['score_change'], 3)} |")
    return lines


def compare_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the reconstruction table in the paper's layout (a row per method), the editing table,
    the failures and a per-photo PSNR table."""
    c = summary["counts"]
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["written"]))
    lines = [f"# PTI comparison: `{summary['run_dir']}`", "",
             f"{c['done']} of {c['photos']} photo(s) compared, {c['failed']} failed, {c['missing']} missing "
             f"(this run: {c['this_run']['done']} done, {c['this_run']['skipped']} already finished, "
             f"{c['this_run']['failed']} failed). Written {written}.",
             ""]
    for key in ("input", "generator", "encoder", "steps"):
        if summary.get(key) is not None:
            lines.append(f"- {key}: `{summary[key]}`")
    lines += [f"- perceptual distance: **{summary['perceptual_name']}**", f"- identity: {summary['identity_model']}",
              f"- seconds per photo (all methods): {_cell(summary['seconds_per_photo'], 1)}", "",
              "## Reconstruction", "", "Mean ± sd (median) over photos; MSE and PSNR on the [0, 1] range.", ""]
    lines += reconstruction_table(summary)
    if summary["editing"]:
        lines += ["", "## Editing", "",
                  "Identity similarity of the edited image to the photo, and the change of the edit's dlib landmark "
                  "score from the method's unedited image (mean ± sd over photos). W, W+ and e4e are rendered by the "
                  "original generator, PTI by the tuned one.", ""] + editing_table(summary)
    lines += ["", f"## Failures ({len(summary['failures'])})", ""]
    lines += [f"- **{f['name']}** (`{f['file']}`): {f['error'].splitlines()[0] if f['error'] else ''}"
              for f in summary["failures"]] or ["None."]
    if summary["photos"]:
        methods = summary["methods"]
        lines += ["", "## Photos (PSNR, dB)", "", "| photo | " + " | ".join(LABELS[m] for m in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for name, per in summary["photos"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt((per.get(m) or {}).get("psnr"), 2) for m in methods) + " |")
    return "\n".join(lines) + "\n"


def write_compare_summary(summary: dict[str, Any], run_dir: Path) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``run_dir`` atomically; returns their paths."""
    from pti.io_utils import atomic_write_json, atomic_write_text

    run_dir = Path(run_dir)
    atomic_write_json(summary, run_dir / "summary.json")
    atomic_write_text(compare_markdown(summary), run_dir / "summary.md")
    return run_dir / "summary.json", run_dir / "summary.md"
