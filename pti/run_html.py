"""Deprecated path: this module moved to :mod:`pti.jobs.summary_html` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.run_html moved to pti.jobs.summary_html; import from pti.jobs.summary_html (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.summary_html import *  # noqa: E402,F401,F403
from pti.jobs.summary_html import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    THUMB_DIR, edit_label, edit_rows, html_page, make_thumbnails)
