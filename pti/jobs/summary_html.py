"""The visual summary of a run folder: thumbnails in ``RUN/.thumbs/`` and paged ``summary.html``.

One row per photo of the job: original (``aligned.png``) | the pivot (``inversion.png``, headed with its
origin and space: "W inversion", "e4e W+ + 25 steps", ... :func:`pti.labels.pivot_label`) | PTI
(``reconstruction.png``) | edits (with ``pti run --edit``: every PTI edit ``edits/<key>_<s>.png`` of the
photo's ``metrics.json`` manifest as its own thumbnail, captioned with its direction and strength in
text, one line per direction; the labelled ``edits/grid.png`` as a link), then its metrics, or its
error for a failed photo. Each picture is a JPEG thumbnail of at most :data:`THUMB_SIZE` px a side,
linked to the full image, so that a page stays light for 1,000 photos; :data:`PAGE_SIZE` rows per page
(``summary.html``, ``summary_2.html``, ...; every page links to all the others). Links are relative
(the folder can be moved or served as is), file names are URL-quoted and HTML-escaped; no script.

A thumbnail is made when missing or older than its image (a redone photo gets new ones), so a
resumed run refreshes only what changed. Everything is written atomically, by rank 0 only
(:func:`pti.jobs.summary.write_summary`).
"""
from __future__ import annotations

import html
import math
import time
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence
from urllib.parse import quote

#: thumbnails live here inside the run folder: ``.thumbs/<photo>/<file>.jpg``
THUMB_DIR = ".thumbs"
#: largest side of a thumbnail, in pixels
THUMB_SIZE = 128
#: photos per HTML page
PAGE_SIZE = 50
#: the picture columns before the edits: (heading, file in the photo folder); the page heads the pivot's
#: column with the pivot's name (:func:`pivot_heading`)
COLUMNS = (("original", "aligned.png"), ("pivot", "inversion.png"), ("PTI", "reconstruction.png"))
#: the labelled grid of a photo's edits (linked, not shown as a thumbnail: its labels would be unreadable)
EDITS_GRID = "edits/grid.png"


def thumbnail_path(name: str, file: str) -> str:
    """Where the thumbnail of ``RUN/<name>/<file>`` goes, relative to the run folder."""
    return f"{THUMB_DIR}/{name}/{Path(file).with_suffix('').as_posix().replace('/', '_')}.jpg"


def edit_images(files: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The single edit images among a photo's result files (``metrics.json``'s ``"files"`` manifest):
    ``edits/*.png`` except :data:`EDITS_GRID`, sorted."""
    return sorted(f for f in files if f.startswith("edits/") and f.endswith(".png") and f != EDITS_GRID)


def edit_label(file: str) -> tuple[str, str | None]:
    """``(direction, strength)`` of an edit image named ``edits/<key>_<s>.png``
    (:meth:`pti.editing.run_edits.RunEdit.files`): ``edits/sefa_2_-3.png`` -> ``("sefa_2", "-3")``.
    A name whose last ``_`` part is not a number is shown whole: ``("<stem>", None)``."""
    stem = PurePosixPath(file).stem
    head, sep, tail = stem.rpartition("_")
    try:
        float(tail)
    except ValueError:
        return stem, None
    return (head, tail) if sep and head else (stem, None)


def edit_rows(files: Sequence[str]) -> list[tuple[str, list[tuple[str | None, str]]]]:
    """Edit images grouped by direction, in order of direction, then strength:
    ``[(direction, [(strength, file), ...]), ...]`` (:func:`edit_label`); a combined edit's direction is its
    label (:func:`pti.labels.edit_key_label`: ``smile 1 + yaw 2`` for the files ``edits/smile1+yaw2_<s>.png``)."""
    from pti.labels import edit_key_label

    rows: dict[str, list[tuple[str | None, str]]] = {}
    for file in files:
        direction, strength = edit_label(file)
        rows.setdefault(edit_key_label(direction), []).append((strength, file))
    return [(d, sorted(items, key=lambda item: float(item[0]) if item[0] is not None else math.inf))
            for d, items in sorted(rows.items())]


def picture_files(entry: Mapping[str, Any]) -> list[str]:
    """The files of a summary entry that get a thumbnail: the :data:`COLUMNS` images and its edit images."""
    return [file for _, file in COLUMNS] + list(entry.get("edits") or [])


def make_thumbnails(run_dir: Path, files: Mapping[str, Sequence[str]], size: int = THUMB_SIZE,
                    progress: bool = False) -> dict[str, dict[str, str]]:
    """Thumbnails (at most ``size`` px a side, JPEG) of the images ``{photo name: [file, ...]}`` that exist
    (:func:`picture_files` of each summary entry).

    Returns ``{name: {file: thumbnail path relative to run_dir}}``. An unreadable image gets no
    thumbnail (the page then shows a plain link).
    """
    from PIL import Image

    from pti.images import save_pil
    from pti.progress import progress_bar

    run_dir = Path(run_dir)
    found: dict[str, dict[str, str]] = {}
    for name in progress_bar(list(files), desc="thumbnails", disable=not progress or len(files) < 2):
        for file in files[name]:
            source = run_dir / name / file
            if not source.is_file():
                continue
            rel = thumbnail_path(name, file)
            target = run_dir / rel
            if not target.is_file() or target.stat().st_mtime_ns < source.stat().st_mtime_ns:
                try:
                    with Image.open(source) as img:
                        img.thumbnail((size, size))
                        save_pil(img.convert("RGB"), target)
                except (OSError, ValueError):
                    continue
            found.setdefault(name, {})[file] = rel
    return found


def page_name(index: int) -> str:
    """The file of page ``index`` (0-based): ``summary.html``, ``summary_2.html``, ..."""
    return "summary.html" if index == 0 else f"summary_{index + 1}.html"


def _href(path: str) -> str:
    return html.escape(quote(path), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def entry_pivot_label(entry: Mapping[str, Any]) -> str:
    """The name of a summary entry's pivot (``entry["pivot"]["label"]``; older summaries: "W inversion")."""
    from pti.labels import pivot_label

    pivot = entry.get("pivot") or {}
    return pivot.get("label") or pivot_label(pivot.get("origin"), pivot.get("space"), pivot.get("steps"))


def pivot_heading(entries: Sequence[Mapping[str, Any]]) -> str:
    """The pivot column's heading: the pivots' name when every finished entry's is the same, else "pivot"
    (each cell then says its own)."""
    labels = {entry_pivot_label(e) for e in entries if e.get("status") == "done"}
    return labels.pop() if len(labels) == 1 else "pivot"


def _picture(entry: dict[str, Any], file: str, thumbs: dict[str, dict[str, str]], caption: str = "") -> str:
    name = entry["name"]
    thumb = thumbs.get(name, {}).get(file)
    if thumb is None:
        return "<td></td>"
    alt = html.escape(f"{name}: {caption or file}", quote=True)
    text = f"<br><small>{html.escape(caption)}</small>" if caption else ""
    return (f'<td><a href="{_href(f"{name}/{file}")}"><img src="{_href(thumb)}" alt="{alt}" loading="lazy">'
            f"</a>{text}</td>")


def _edits(entry: dict[str, Any], thumbs: dict[str, dict[str, str]]) -> str:
    """The edits cell: per direction one line of captioned, linked thumbnails; the grid as a link."""
    name = entry["name"]
    lines = []
    for direction, items in edit_rows(entry.get("edits") or []):
        figures = []
        for strength, file in items:
            label = direction if strength is None else f"{direction} s={strength}"
            href, thumb = _href(f"{name}/{file}"), thumbs.get(name, {}).get(file)
            alt = html.escape(label, quote=True)
            picture = f'<img src="{_href(thumb)}" alt="{alt}" loading="lazy">' if thumb else ""
            figures.append(f'<figure><a href="{href}">{picture}</a><figcaption><a href="{href}">'
                           f"{html.escape(label)}</a></figcaption></figure>")
        lines.append(f'<div class="edit">{"".join(figures)}</div>')
    grid = (f'<a href="{_href(f"{name}/{EDITS_GRID}")}">edit grid</a> (the pivot edited on the original '
            f"generator beside PTI)") if entry.get("edit_grid") else ""
    if not lines and not grid:
        return "<td></td>"
    return f'<td class="edits">{"".join(lines)}{grid}</td>'


def _details(entry: dict[str, Any]) -> str:
    if entry["status"] == "failed":
        return f'<td class="failed"><b>failed</b><pre>{html.escape(entry.get("error", ""))}</pre></td>'
    if entry["status"] != "done":
        return f"<td>{html.escape(entry['status'])}: not finished yet (run the command again)</td>"
    inv, tun = entry.get("inversion", {}), entry.get("tuning", {})
    parts = [f"{html.escape(entry_pivot_label(entry))}: PSNR {_num(inv.get('psnr'))} dB, "
             f"perceptual {_num(inv.get('perceptual'), 4)}"]
    if tun:
        parts.append(f"PTI: PSNR {_num(tun.get('psnr'))} dB, perceptual {_num(tun.get('perceptual'), 4)}")
    parts.append(f"{_num(entry.get('seconds'), 1)} s, rank {html.escape(str(entry.get('rank', '-')))}")
    return f"<td>{'<br>'.join(parts)}</td>"


def _nav(index: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = [f"<b>{i + 1}</b>" if i == index else f'<a href="{page_name(i)}">{i + 1}</a>' for i in range(pages)]
    prev = f'<a href="{page_name(index - 1)}">previous</a> ' if index > 0 else ""
    nxt = f' <a href="{page_name(index + 1)}">next</a>' if index + 1 < pages else ""
    return f'<p class="nav">{prev}page {" ".join(links)}{nxt}</p>'


_STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;text-align:left}"
          f"img{{max-width:{THUMB_SIZE}px;max-height:{THUMB_SIZE}px}}pre{{white-space:pre-wrap;max-width:40em}}"
          ".failed{background:#fee}.edit{display:flex;flex-wrap:wrap;gap:4px;margin-bottom:4px}"
          "figure{margin:0;text-align:center}figure img{display:block;margin:auto}figcaption{font-size:small}")


def html_page(summary: dict[str, Any], entries: Sequence[dict[str, Any]], thumbs: dict[str, dict[str, str]],
              index: int, pages: int, first: int) -> str:
    """One page of ``summary.html``: the run's counts, then a row per entry (``first``: its 0-based
    position in the job)."""
    c = summary["counts"]
    title = html.escape(f"PTI run: {summary['run_dir']}")
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["written"]))
    pivot_column = pivot_heading(entries)
    headings = [pivot_column if file == "inversion.png" else h for h, file in COLUMNS]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("#", "photo", *headings, "PTI edits", "metrics"))
    rows = []
    for i, e in enumerate(entries):
        pictures = "".join(_picture(e, file, thumbs, entry_pivot_label(e) if file == "inversion.png"
                                    and pivot_column == "pivot" else "") for _, file in COLUMNS)
        rows.append(f'<tr id="{html.escape(e["name"], quote=True)}"><td>{first + i + 1}</td>'
                    f"<td>{html.escape(e['name'])}</td>{pictures}{_edits(e, thumbs)}{_details(e)}</tr>")
    nav = _nav(index, pages)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
        f"<style>{_STYLE}</style></head><body>", f"<h1>{title}</h1>",
        f"<p>Stage {html.escape(str(summary['stage']))}; {c['images']} photo(s): {c['done']} done, "
        f"{c['failed']} failed, {c['missing']} missing. Written {written}. Numbers and throughput: "
        f'<a href="summary.md">summary.md</a>, <a href="summary.json">summary.json</a>. Pictures link to the '
        f"full images; PSNR on [0, 1], perceptual distance: {html.escape(str(summary.get('perceptual_name')))}.</p>",
        nav, f"<table><tr>{head}</tr>", *rows, "</table>", nav, "</body></html>", ""])


def write_html_pages(summary: dict[str, Any], run_dir: Path, thumbs: dict[str, dict[str, str]],
                     page_size: int = PAGE_SIZE) -> list[Path]:
    """Write ``summary.html`` (and ``summary_2.html``, ... when there are more than ``page_size`` photos)
    atomically; pages left by a larger earlier job are removed. Returns the pages' paths."""
    from pti.io_utils import atomic_write_text

    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    run_dir = Path(run_dir)
    images = summary["images"]
    pages = max(1, math.ceil(len(images) / page_size))
    written = []
    for index in range(pages):
        first = index * page_size
        path = run_dir / page_name(index)
        atomic_write_text(html_page(summary, images[first:first + page_size], thumbs, index, pages, first), path)
        written.append(path)
    for old in run_dir.glob("summary_*.html"):
        suffix = old.stem.rpartition("_")[2]
        if suffix.isdigit() and int(suffix) > pages:
            old.unlink(missing_ok=True)
    return written


def markdown_pictures(entry: Mapping[str, Any], thumbs: dict[str, dict[str, str]]) -> str:
    """The picture cells of a photo's row in ``summary.md``: linked thumbnails, ``-`` where none; the edits
    cell has per direction its name and each strength's linked thumbnail, then a link to the grid."""
    name = entry["name"]
    cells = []
    for heading, file in COLUMNS:
        heading = entry_pivot_label(entry) if file == "inversion.png" else heading
        thumb = thumbs.get(name, {}).get(file)
        cells.append(f"[![{heading}]({quote(thumb)})]({quote(f'{name}/{file}')})" if thumb else "-")
    edits = []
    for direction, items in edit_rows(entry.get("edits") or []):
        parts = [f"**{direction}**"]
        for strength, file in items:
            thumb, label = thumbs.get(name, {}).get(file), f"{direction} s={strength}"
            link = quote(f"{name}/{file}")
            parts.append(f"{strength}: [![{label}]({quote(thumb)})]({link})" if thumb else f"[{label}]({link})")
        edits.append(" ".join(parts))
    if entry.get("edit_grid"):
        edits.append(f"[edit grid]({quote(f'{name}/{EDITS_GRID}')})")
    cells.append("<br>".join(edits) or "-")
    return " | ".join(cells)
