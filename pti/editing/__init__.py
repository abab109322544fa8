"""Latent editing: W-space directions (InterFaceGAN, GANSpace, SeFa) applied to pivots.

- :class:`Direction`, :func:`apply`, :func:`render_edits` (``direction``)
- file formats and command-line names (``loaders``)
- directions from the generator alone: :func:`ganspace_basis` / :func:`ganspace_directions`,
  :func:`sefa_directions` (deterministic, cached per checkpoint in ``cache``)
- InterFaceGAN boundaries from scored samples: :func:`fit_boundary`, :func:`sample_and_score`,
  with dlib-landmark scorers in ``scorers`` (imported on use: it needs dlib)
- edits during ``pti run --edit`` and the W-vs-PTI rendering shared with ``pti demo`` (``run_edits``,
  imported on use)
"""
from pti.editing.direction import Direction, DirectionMismatchError, apply, render_edits
from pti.editing.ganspace import PCABasis, ganspace_basis, ganspace_directions
from pti.editing.interfacegan import (BoundaryFit, fit_boundary, fit_generator_boundaries,
                                      sample_and_score)
from pti.editing.loaders import (load_directions, load_ganspace, load_ganspace_basis, load_interfacegan,
                                 resolve_direction, save_directions, save_ganspace_npz, save_interfacegan)
from pti.editing.sefa import sefa_directions

__all__ = ["Direction", "DirectionMismatchError", "apply", "render_edits", "PCABasis", "ganspace_basis",
           "ganspace_directions", "sefa_directions", "BoundaryFit", "fit_boundary", "fit_generator_boundaries",
           "sample_and_score",
           "load_interfacegan", "save_interfacegan", "load_ganspace", "load_ganspace_basis", "save_ganspace_npz",
           "load_directions", "save_directions", "resolve_direction"]
