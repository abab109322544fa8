"""One module per ``pti`` sub-command (see :mod:`pti.cli`).

Command modules must not import torch at module level: ``pti --help`` imports them all.
"""
