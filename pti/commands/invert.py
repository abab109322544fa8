"""``pti invert``: invert photos into W/W+ pivots (runs/<run>/<image>/pivot.pt)."""
from __future__ import annotations

import argparse

HELP = "invert photos into W/W+ pivots (runs/<run>/<image>/pivot.pt)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pti.commands._pti_jobs import add_job_arguments

    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pti.commands._pti_jobs import run_job

    return run_job(args, "invert")
