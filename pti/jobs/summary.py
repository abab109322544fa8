"""The summary of a run folder: ``summary.json``, ``summary.md`` (per-image metrics, failures, throughput,
thumbnails) and the paged visual ``summary.html`` (:mod:`pti.jobs.summary_html`).

:func:`build_summary` reads the state of every image of the job from the run folder itself
(``<image>/metrics.json`` for finished images, ``.failures/<image>.json`` for failed ones), so the
summary of a restarted job also covers images finished by earlier runs. What happened in *this*
run (which rank did what, how long it took) comes from the per-rank session records that the
ranks send to rank 0 (:func:`session_record`). Every file is written atomically.
"""
from __future__ import annotations

import html

import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from pti.jobs.folder import ImageOutcome, Stage, finished_metrics, output_name, read_failure
from pti.jobs.summary_html import (EDITS_GRID, PAGE_SIZE, edit_images, entry_pivot_label, make_thumbnails,
                                   markdown_pictures, picture_files, write_html_pages)
from pti.labels import metrics_pivot

SUMMARY_FORMAT = "pti-run-summary-v1"
SHARDING = "strided: rank r of W takes images r, r+W, r+2W, ... of the input sorted by file name"


def session_record(worker: dict[str, Any], outcomes: Sequence[ImageOutcome], setup_seconds: float,
                   loop_seconds: float) -> dict[str, Any]:
    """What one rank did in this run (small and picklable, for ``all_gather_object``).

    ``setup_seconds``: loading the generator; ``loop_seconds``: wall time of its image loop.
    """
    return {"worker": dict(worker), "setup_seconds": setup_seconds, "loop_seconds": loop_seconds,
            "outcomes": [o.brief() for o in outcomes]}


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "min": min(values),
            "max": max(values)}


def _image_entry(name: str, file: str, metrics: dict[str, Any]) -> dict[str, Any]:
    inv = metrics.get("inversion", {})
    entry: dict[str, Any] = {
        "name": name, "file": file, "status": "done", "stage": metrics.get("stage"),
        "rank": metrics.get("worker", {}).get("rank"), "seconds": metrics.get("seconds"),
        "inversion": {k: inv.get(k) for k in ("mse", "psnr", "perceptual", "steps", "reused_pivot")},
        # what the pivot is: {"origin", "space", "steps", "label"} (pti.labels)
        "pivot": metrics_pivot(metrics),
        # how its steps ran (pti.fast.ExecutionConfig): not compared for reuse, so maybe not this run's
        "execution": (metrics.get("config") or {}).get("execution"),
    }
    files = metrics.get("files") or {}
    entry["edits"] = edit_images(files)  # edits/<key>_<s>.png of `pti run --edit`
    entry["edit_grid"] = EDITS_GRID if EDITS_GRID in files else None
    if "tuning" in metrics:
        tun = metrics["tuning"]
        entry["tuning"] = {k: tun.get(k) for k in ("mse", "psnr", "perceptual", "steps", "stopped_early")}
    return entry


def build_summary(paths: Sequence[Path], run_dir: Path, stage: Stage, sessions: Sequence[dict[str, Any]],
                  info: dict[str, Any] | None = None, execution: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of the job over ``paths`` (all ranks' images), read from ``run_dir``.

    ``sessions``: one :func:`session_record` per rank of this run. ``info``: extra fields for the
    header (input, generator, configs). ``execution``: this run's execution settings, shown as
    ``this_run.execution`` (images finished by earlier runs may have run otherwise: each image's entry
    has its own ``execution``, from its metrics.json). Image status: ``done`` (a finished result folder),
    ``failed`` (a failure record and no result) or ``missing`` (neither: never run, or killed).
    """
    run_dir = Path(run_dir)
    this_run = {o["name"]: (s["worker"].get("rank"), o) for s in sessions for o in s["outcomes"]}
    images, failures = [], []
    perceptual_name = None
    for path in paths:
        name = output_name(path)
        rank_now, outcome = this_run.get(name, (None, None))
        metrics = finished_metrics(run_dir / name, stage)
        if metrics is not None:
            entry = _image_entry(name, str(path), metrics)
            entry["this_run"] = outcome is not None and outcome["status"] == "done"
            perceptual_name = perceptual_name or metrics.get("perceptual_name")
            images.append(entry)
            continue
        record = read_failure(run_dir, name)
        if record is not None:
            rank = record.get("worker", {}).get("rank", rank_now)
            entry = {"name": name, "file": str(path), "status": "failed", "rank": rank, "error": record.get("error", ""),
                     "this_run": outcome is not None and outcome["status"] == "failed"}
            failures.append({k: entry[k] for k in ("name", "file", "rank", "error")})
        else:
            entry = {"name": name, "file": str(path), "status": "missing", "rank": rank_now, "this_run": False}
        images.append(entry)

    done = [e for e in images if e["status"] == "done"]
    processed = sum(o["status"] == "done" for _, o in this_run.values())
    failed_now = sum(o["status"] == "failed" for _, o in this_run.values())
    skipped = sum(o["status"] == "skipped" for _, o in this_run.values())
    wall = max((s["loop_seconds"] for s in sessions), default=0.0)
    per_image = [o["seconds"] for _, o in this_run.values() if o["status"] == "done"]
    throughput = {
        "processes": len(sessions),
        "processed": processed, "failed": failed_now, "skipped_finished": skipped,
        "wall_seconds": wall,
        "images_per_minute": 60.0 * processed / wall if wall > 0 and processed else 0.0,
        "wall_seconds_per_image": wall / processed if processed else None,
        "process_seconds_per_image": _stats(per_image),
        "setup_seconds": max((s["setup_seconds"] for s in sessions), default=0.0),
    }
    if execution is not None:
        throughput["execution"] = execution
    quality: dict[str, Any] = {}
    for part in ("inversion", "tuning"):
        for key in ("psnr", "perceptual"):
            values = [e[part][key] for e in done if part in e and isinstance(e[part].get(key), (int, float))]
            if values:
                quality[f"{part}_{key}"] = _stats(values)
    return {
        "format": SUMMARY_FORMAT, "run_dir": str(run_dir), "stage": stage, "written": time.time(),
        "world_size": len(sessions), "sharding": SHARDING, "perceptual_name": perceptual_name,
        **(info or {}),
        "counts": {"images": len(images), "done": len(done), "failed": len(failures),
                   "missing": sum(e["status"] == "missing" for e in images)},
        "this_run": throughput, "quality": quality,
        "workers": [{**s["worker"], "setup_seconds": s["setup_seconds"], "loop_seconds": s["loop_seconds"],
                     **{k: sum(o["status"] == k for o in s["outcomes"]) for k in ("done", "skipped", "failed")}}
                    for s in sessions],
        "failures": failures, "images": images,
    }


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and value is not None else "-"


def _cell(text: str) -> str:
    """Text for a markdown table cell or list item: HTML escaped (a photo named ``<b>.png`` shows as written),
    ``|`` escaped, one line."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def summary_markdown(summary: dict[str, Any], thumbs: dict[str, dict[str, str]] | None = None) -> str:
    """A human-readable ``summary.md`` of :func:`build_summary`'s result; with ``thumbs``
    (:func:`pti.jobs.summary_html.make_thumbnails`) each photo's row ends with its linked thumbnails."""
    c, t = summary["counts"], summary["this_run"]
    lines = [f"# PTI run summary: `{summary['run_dir']}`", "",
             f"Stage: {summary['stage']}. Written {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(summary['written']))}"
             f" by {summary['world_size']} process(es); sharding: {summary['sharding']}.", ""]
    for key in ("input", "generator", "perceptual_name"):
        if summary.get(key):
            lines.append(f"- {key}: `{summary[key]}`")
    lines += ["", "| images | done | failed | missing |", "|---|---|---|---|",
              f"| {c['images']} | {c['done']} | {c['failed']} | {c['missing']} |", "",
              "## Throughput (this run)", "",
              f"{t['processed']} image(s) processed, {t['skipped_finished']} already finished, {t['failed']} failed, "
              f"in {_num(t['wall_seconds'], 1)} s of image loop over {t['processes']} process(es): "
              f"**{_num(t['images_per_minute'])} images/min**, {_num(t['wall_seconds_per_image'])} s wall per image; "
              f"per image on one process: mean {_num(t['process_seconds_per_image'].get('mean'))} s, "
              f"max {_num(t['process_seconds_per_image'].get('max'))} s. Generator loading "
              f"(not counted): {_num(t['setup_seconds'], 1)} s.", ""]
    if summary["quality"]:
        lines += ["## Quality (finished images)", "", "| metric | mean | median | min | max |", "|---|---|---|---|---|"]
        for key, s in summary["quality"].items():
            lines.append(f"| {key} | {_num(s['mean'], 4)} | {_num(s['median'], 4)} | {_num(s['min'], 4)} | "
                         f"{_num(s['max'], 4)} |")
        lines.append("")
    lines += [f"## Failures ({len(summary['failures'])})", ""]
    for f in summary["failures"]:
        first, _, rest = f["error"].partition("\n")
        lines.append(f"- **{_cell(f['name'])}** (`{f['file']}`, rank {f['rank']}): {_cell(first)}")
        if rest.strip():
            lines += ["  ```", *("  " + r for r in rest.rstrip().splitlines()), "  ```"]
    if not summary["failures"]:
        lines.append("None.")
    pictures = "" if thumbs is None else " original | pivot | PTI | PTI edits |"
    lines += ["", "## Images", "",
              "| image | status | rank | pivot | pivot PSNR | PTI PSNR | PTI perceptual | seconds |" + pictures,
              "|---|---|---|---|---|---|---|---|" + ("---|" * 4 if thumbs is not None else "")]
    for e in summary["images"]:
        inv, tun = e.get("inversion", {}), e.get("tuning", {})
        pivot = _cell(entry_pivot_label(e)) if e["status"] == "done" else "-"
        lines.append(f"| {_cell(e['name'])} | {e['status']} | {e.get('rank', '-')} | {pivot} | {_num(inv.get('psnr'))} "
                     f"| "
                     f"{_num(tun.get('psnr'))} | {_num(tun.get('perceptual'), 4)} | {_num(e.get('seconds'), 1)} |"
                     + ("" if thumbs is None else f" {markdown_pictures(e, thumbs)} |"))
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], run_dir: Path, page_size: int = PAGE_SIZE,
                  progress: bool = False) -> tuple[Path, Path]:
    """Write ``summary.json``, ``summary.md`` and the ``summary.html`` pages (``page_size`` photos each)
    into ``run_dir`` atomically, after making the missing thumbnails (:mod:`pti.jobs.summary_html`); returns the
    paths of the first two."""
    from pti.io_utils import atomic_write_json, atomic_write_text

    run_dir = Path(run_dir)
    thumbs = make_thumbnails(run_dir, {e["name"]: picture_files(e) for e in summary["images"]}, progress=progress)
    atomic_write_json(summary, run_dir / "summary.json")
    atomic_write_text(summary_markdown(summary, thumbs), run_dir / "summary.md")
    write_html_pages(summary, run_dir, thumbs, page_size)
    return run_dir / "summary.json", run_dir / "summary.md"
