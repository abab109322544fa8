"""``pti run``: align, invert and pivotal-tune photos (one image or a folder)."""
from __future__ import annotations

import argparse

HELP = "align, invert and pivotal-tune photos (one image or a folder)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.commands._pti_jobs import add_edit_argument, add_job_arguments, add_multi_id_arguments

    add_job_arguments(parser)
    add_edit_argument(parser)
    add_multi_id_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pti.commands._pti_jobs import run_job

    return run_job(args, "run")
