"""Deprecated path: this module moved to :mod:`pti.jobs.compare` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.compare moved to pti.jobs.compare; import from pti.jobs.compare (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.compare import *  # noqa: E402,F401,F403
from pti.jobs.compare import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    LABELS, METHODS, CompareOptions, compare_photos, expand_edit_lists, method_file, parse_methods, render)
