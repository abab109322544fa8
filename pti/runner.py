"""Deprecated path: this module moved to :mod:`pti.jobs.runner` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.runner moved to pti.jobs.runner; import from pti.jobs.runner (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.runner import *  # noqa: E402,F401,F403
from pti.jobs.runner import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    RunOptions, check_unique_names, failure_path, is_finished, list_images, load_target, process_images,
    recover_staged, redone_message, run_one, staging_dir)
