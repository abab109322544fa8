"""Deprecated path: this module moved to :mod:`pti.jobs.compare_summary` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.compare_summary moved to pti.jobs.compare_summary; import from pti.jobs.compare_summary (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.compare_summary import *  # noqa: E402,F401,F403
from pti.jobs.compare_summary import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    build_compare_summary, editing_table, reconstruction_table, stats, write_compare_summary)
