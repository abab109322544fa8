"""Deprecated path: this module moved to :mod:`pti.jobs.distributed` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.distributed moved to pti.jobs.distributed; import from pti.jobs.distributed (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.distributed import *  # noqa: E402,F401,F403
from pti.jobs.distributed import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    DistContext, launch_env, numerics_record, pick_device, shard)
