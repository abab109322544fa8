"""Exceptions raised while reading or writing generator checkpoints."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, of an unknown kind or of an unsupported layout.

    The message names the file, the format that was expected and what to do.
    """


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks for code to be run (a refused pickle global or payload); nothing was executed."""
