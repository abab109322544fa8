"""A run's ``summary.html`` in a real browser: headless Chromium opens the page as a user does (issue 29, items 13, 14).

Checked, on the first page of the run folder given:

* every ``<img>`` loaded (scrolled into view first: the page lazy-loads its thumbnails), with
  ``naturalWidth > 0``, and every picture links to an image file that exists;
* every edit thumbnail has a visible caption naming its direction and strength (``smile s=-3``),
  and each photo's edits cell links to its edit grid;
* the pivot column's heading (and the metrics' first line) name the pivot as ``expected_pivot`` says
  (e.g. ``e4e W+ + 25 steps``), and the page shows no "W inversion" unless that was expected.

The page is opened from disk (``file://``), as a user double-clicking it would. Nothing downloads a
browser: Playwright drives the Chromium at ``--chromium`` (Debian's ``/usr/bin/chromium``). Usage::

    python tools/browser_check_summary.py RUN [--expect-pivot "e4e W+ + 25 steps"] [--screenshot page.png]

prints the measurements as JSON and exits 0 when every check passed, 1 otherwise (the failed checks
are listed), 2 when Chromium or Playwright is missing. ``tests/test_browser.py`` runs :func:`run`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

DEFAULT_CHROMIUM = "/usr/bin/chromium"

# what the page shows, read in the page after every image has been scrolled into view and has settled
JS_PAGE = """() => {
  const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const imgs = [...document.querySelectorAll('img')].map(img => ({src: img.getAttribute('src'),
    complete: img.complete, naturalWidth: img.naturalWidth, width: img.getBoundingClientRect().width,
    link: img.closest('a') ? img.closest('a').href : null}));
  const figures = [...document.querySelectorAll('td.edits figure')].map(f => {
    const cap = f.querySelector('figcaption'); const img = f.querySelector('img');
    return {caption: cap ? cap.innerText.trim() : '', caption_visible: cap ? visible(cap) : false,
            caption_below_image: !!(cap && img &&
                                    cap.getBoundingClientRect().top >= img.getBoundingClientRect().bottom - 1),
            img_loaded: !!(img && img.complete && img.naturalWidth > 0), link: f.querySelector('a').href};
  });
  const grids = [...document.querySelectorAll('td.edits > a')].map(a => ({text: a.innerText, href: a.href}));
  const headings = [...document.querySelectorAll('th')].map(th => th.innerText.trim());
  const metrics = [...document.querySelectorAll('tr[id]')].map(tr => tr.lastElementChild.innerText.split('\\n')[0]);
  return {imgs, figures, grids, headings, metrics, text: document.body.innerText};
}"""


def _file(url: str | None) -> Path | None:
    return Path(unquote(urlparse(url).path)) if url and url.startswith("file:") else None


def run(run_dir: Path, chromium: str = DEFAULT_CHROMIUM, expect_pivot: str | None = None,
        screenshot: Path | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Open ``run_dir/summary.html`` in headless Chromium and check it (see the module docstring).

    Returns ``{"failures": [...], "images", "loaded", "edit_thumbnails", "captions", "headings",
    "metrics", "grids"}``; with ``screenshot`` a full-page PNG is written there.
    """
    from playwright.sync_api import sync_playwright

    page_path = Path(run_dir).resolve() / "summary.html"
    result: dict[str, Any] = {"failures": []}
    fail = result["failures"].append
    if not page_path.is_file():
        fail(f"{page_path} does not exist")
        return result
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            for img in page.locator("img").all():   # lazy thumbnails load when they come into view
                img.scroll_into_view_if_needed()
            page.wait_for_function("() => [...document.images].every(i => i.complete)")
            data = page.evaluate(JS_PAGE)
            if screenshot is not None:
                page.evaluate("() => window.scrollTo(0, 0)")
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    imgs, figures = data["imgs"], data["figures"]
    result.update(images=len(imgs), loaded=sum(i["naturalWidth"] > 0 for i in imgs), edit_thumbnails=len(figures),
                  captions=[f["caption"] for f in figures], headings=data["headings"], metrics=data["metrics"],
                  grids=[g["text"] for g in data["grids"]])
    if not imgs:
        fail("the page shows no image")
    for img in imgs:
        if not (img["complete"] and img["naturalWidth"] > 0):
            fail(f"image {img['src']} did not load (naturalWidth {img['naturalWidth']})")
        target = _file(img["link"])
        if target is None or not target.is_file():
            fail(f"image {img['src']} links to {img['link']}, which is not a file")
    for fig in figures:
        if not (fig["img_loaded"] and fig["caption_visible"] and fig["caption_below_image"]):
            fail(f"edit thumbnail {fig['link']}: loaded {fig['img_loaded']}, caption {fig['caption']!r} "
                 f"visible {fig['caption_visible']}, below the image {fig['caption_below_image']}")
        if " s=" not in fig["caption"]:
            fail(f"edit thumbnail {fig['link']}: caption {fig['caption']!r} names no strength")
    for grid in data["grids"]:
        target = _file(grid["href"])
        if target is None or not target.is_file():
            fail(f"edit grid link {grid['href']} is not a file")
    if expect_pivot is not None:
        if expect_pivot not in data["headings"]:
            fail(f"no column headed {expect_pivot!r}: headings {data['headings']}")
        if not all(m.startswith(f"{expect_pivot}:") for m in data["metrics"]):
            fail(f"metrics do not name the pivot {expect_pivot!r}: {data['metrics']}")
        if "W inversion" not in expect_pivot and "W inversion" in data["text"]:
            fail("the page says 'W inversion' but the pivot is not a projector's W code")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder of `pti run` (holds summary.html)")
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM, help="the Chromium binary (nothing is downloaded)")
    parser.add_argument("--expect-pivot", default=None, help="the pivot's name the page must show, e.g. 'e4e W+'")
    parser.add_argument("--screenshot", type=Path, default=None, help="write a full-page PNG here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from browser_check_nb04 import browser_missing

    missing = browser_missing(args.chromium)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    result = run(args.run, args.chromium, args.expect_pivot, args.screenshot)
    print(json.dumps(result, indent=1))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
