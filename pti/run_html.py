"""The visual summary of a run folder: thumbnails in ``RUN/.thumbs/`` and paged ``summary.html``.

One row per photo of the job: original (``aligned.png``) | W inversion (``inversion.png``) | PTI
(``reconstruction.png``) | edits (``edits/grid.png``, with ``pti run --edit``), then its metrics, or its
error for a failed photo. Each picture is a JPEG thumbnail of at most :data:`THUMB_SIZE` px a side,
linked to the full image, so that a page stays light for 1,000 photos; :data:`PAGE_SIZE` rows per page
(``summary.html``, ``summary_2.html``, ...; every page links to all the others). Links are relative
(the folder can be moved or served as is), file names are URL-quoted and HTML-escaped; no script.

A thumbnail is made when missing or older than its image (a redone photo gets new ones), so a
resumed run refreshes only what changed. Everything is written atomically, by rank 0 only
(:func:`pti.run_summary.write_summary`).
"""
from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

#: thumbnails live here inside the run folder: ``.thumbs/<photo>/<file>.jpg``
THUMB_DIR = ".thumbs"
#: largest side of a thumbnail, in pixels
THUMB_SIZE = 128
#: photos per HTML page
PAGE_SIZE = 50
#: the picture columns: (heading, file in the photo folder)
COLUMNS = (("original", "aligned.png"), ("W inversion", "inversion.png"), ("PTI", "reconstruction.png"),
           ("edits", "edits/grid.png"))


def thumbnail_path(name: str, file: str) -> str:
    """Where the thumbnail of ``RUN/<name>/<file>`` goes, relative to the run folder."""
    return f"{THUMB_DIR}/{name}/{Path(file).with_suffix('').as_posix().replace('/', '_')}.jpg"


def make_thumbnails(run_dir: Path, names: Sequence[str], size: int = THUMB_SIZE,
                    progress: bool = False) -> dict[str, dict[str, str]]:
    """Thumbnails (at most ``size`` px a side, JPEG) of each photo's :data:`COLUMNS` images that exist.

    Returns ``{name: {file: thumbnail path relative to run_dir}}``. An unreadable image gets no
    thumbnail (the page then shows a plain link).
    """
    from PIL import Image

    from pti.images import save_pil
    from pti.progress import progress_bar

    run_dir = Path(run_dir)
    found: dict[str, dict[str, str]] = {}
    for name in progress_bar(names, desc="thumbnails", disable=not progress or len(names) < 2):
        for _, file in COLUMNS:
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


def _picture(entry: dict[str, Any], file: str, thumbs: dict[str, dict[str, str]]) -> str:
    name = entry["name"]
    thumb = thumbs.get(name, {}).get(file)
    if thumb is None:
        return "<td></td>"
    alt = html.escape(f"{name}: {file}", quote=True)
    return (f'<td><a href="{_href(f"{name}/{file}")}"><img src="{_href(thumb)}" alt="{alt}" loading="lazy">'
            f"</a></td>")


def _details(entry: dict[str, Any]) -> str:
    if entry["status"] == "failed":
        return f'<td class="failed"><b>failed</b><pre>{html.escape(entry.get("error", ""))}</pre></td>'
    if entry["status"] != "done":
        return f"<td>{html.escape(entry['status'])}: not finished yet (run the command again)</td>"
    inv, tun = entry.get("inversion", {}), entry.get("tuning", {})
    parts = [f"W: PSNR {_num(inv.get('psnr'))} dB, perceptual {_num(inv.get('perceptual'), 4)}"]
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
          ".failed{background:#fee}")


def html_page(summary: dict[str, Any], entries: Sequence[dict[str, Any]], thumbs: dict[str, dict[str, str]],
              index: int, pages: int, first: int) -> str:
    """One page of ``summary.html``: the run's counts, then a row per entry (``first``: its 0-based
    position in the job)."""
    c = summary["counts"]
    title = html.escape(f"PTI run: {summary['run_dir']}")
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["written"]))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("#", "photo", *(h for h, _ in COLUMNS), "metrics"))
    rows = []
    for i, e in enumerate(entries):
        pictures = "".join(_picture(e, file, thumbs) for _, file in COLUMNS)
        rows.append(f'<tr id="{html.escape(e["name"], quote=True)}"><td>{first + i + 1}</td>'
                    f"<td>{html.escape(e['name'])}</td>{pictures}{_details(e)}</tr>")
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


def markdown_pictures(name: str, thumbs: dict[str, dict[str, str]]) -> str:
    """The picture cells of a photo's row in ``summary.md``: linked thumbnails, ``-`` where none."""
    cells = []
    for heading, file in COLUMNS:
        thumb = thumbs.get(name, {}).get(file)
        cells.append(f"[![{heading}]({quote(thumb)})]({quote(f'{name}/{file}')})" if thumb else "-")
    return " | ".join(cells)
