"""Deprecated path: this module moved to :mod:`pti.jobs.summary` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.run_summary moved to pti.jobs.summary; import from pti.jobs.summary (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.summary import *  # noqa: E402,F401,F403
from pti.jobs.summary import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    build_summary, session_record, write_summary)
