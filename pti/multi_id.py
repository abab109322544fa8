"""Deprecated path: this module moved to :mod:`pti.jobs.multi_id` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.multi_id moved to pti.jobs.multi_id; import from pti.jobs.multi_id (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.multi_id import *  # noqa: E402,F401,F403
from pti.jobs.multi_id import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    STATE_FILE, TuningCheckpoint, process_multi_id)
