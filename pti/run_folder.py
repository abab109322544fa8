"""Deprecated path: this module moved to :mod:`pti.jobs.folder` (kept for one round; import from there)."""
import warnings

warnings.warn("pti.run_folder moved to pti.jobs.folder; import from pti.jobs.folder (the old path goes away next round)",
              DeprecationWarning, stacklevel=2)

from pti.jobs.folder import *  # noqa: E402,F401,F403
from pti.jobs.folder import (  # noqa: E402,F401  the names README, notebooks and tests used from the old path
    NOT_RECORDED, ImageOutcome, Stage, check_unique_names, failure_path, is_finished, list_images, manifest,
    output_name, read_failure, read_metrics, record_failure, stale_dir, stale_note, staging_dir)
