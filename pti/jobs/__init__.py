"""The jobs layer: many photos through the pipeline, each in its own resumable folder.

- :mod:`pti.jobs.runner`: ``pti run`` / ``pti invert`` / ``pti tune`` per photo into ``runs/<run>/<photo>/``
  (staged, atomic, resumable; what a result was made from).
- :mod:`pti.jobs.folder`: a run folder's layout: which photos a job takes, finished / failed / stale results.
- :mod:`pti.jobs.summary` and :mod:`pti.jobs.summary_html`: ``summary.json``, ``summary.md`` and the paged
  ``summary.html`` with thumbnails.
- :mod:`pti.jobs.distributed`: torchrun sharding (rank r takes photos r, r+W, ...), device choice.
- :mod:`pti.jobs.multi_id`: multi-image PTI (``pti run --multi-id``: one generator tuned for all photos).
- :mod:`pti.jobs.compare` and :mod:`pti.jobs.compare_summary`: ``pti compare`` (W, W+, e4e, PTI side by side).

Imports flow downwards only: this layer uses the pipeline, core and stylegan2 layers and ``pti.fast``, and
never ``pti.commands`` or ``pti.cli`` (checked by ``tests/test_layers.py``). This ``__init__`` imports
nothing, so ``import pti.jobs`` does not import torch.
"""
