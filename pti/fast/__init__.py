"""Opt-in speed paths over the core (:mod:`pti.core.projector`, :mod:`pti.core.tuning`): the same losses, computed faster.

- :func:`project` / :func:`project_batch`: the projector for one or K photos at once (one batched
  synthesis per step; each photo keeps its own random stream and Adam state);
- :func:`pivotal_tune`: pivotal tuning with autocast, loss scaling, channels_last, compile and
  deferred host syncs (the early stop then decided on the device);
- :func:`tune_batched` / :func:`pivotal_tune_batched`: K photos tuned at once, each with its own
  weights (``torch.func.vmap`` over stacked parameters, masked Adam);
- :class:`ExecutionConfig` says how (precision, channels_last, Adam implementation, compile, sync
  interval, TF32, CUDA graphs); :func:`fast_preset` is what ``pti run --fast`` uses.
- graph-safe steps: with ``cuda_graphs`` (or device-side syncs) each step is one closure that reads fixed
  tensors, keeps its learning rate, masks and checks on the device and draws its random numbers ahead,
  so :class:`pti.fast.graphs.StepGraphs` can capture it once and replay it (eager, with one warning,
  where it cannot).

Each path is tested equal to the core within measured tolerances (tests/test_speed_paths.py) and
timed against it by ``pti bench``.
"""
from __future__ import annotations

from typing import Any

from pti.fast.config import ExecutionConfig, check_execution, fast_preset

__all__ = ["ExecutionConfig", "check_execution", "fast_preset", "pipeline", "project", "project_batch", "pivotal_tune",
           "tune_batched", "pivotal_tune_batched", "BatchedTuningResult"]

_LAZY = {"project": "pti.fast.projector", "project_batch": "pti.fast.projector", "pivotal_tune": "pti.fast.tuning",
         "tune_batched": "pti.fast.batched", "pivotal_tune_batched": "pti.fast.batched",
         "BatchedTuningResult": "pti.fast.batched"}


def __getattr__(name: str) -> Any:  # torch-free import of the package (the CLI reads ExecutionConfig)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pti.fast' has no attribute {name!r}")


def pipeline(execution: ExecutionConfig | None) -> tuple[Any, Any]:
    """``(project, pivotal_tune)`` for ``execution``: the core's functions (:mod:`pti.core.projector`,
    :mod:`pti.core.tuning`) when it is None or the core's own execution, else this layer's with ``execution``
    bound. Both take the core's arguments."""
    import functools

    if execution is None or execution.is_core():
        from pti.core.projector import project as core_project
        from pti.core.tuning import pivotal_tune as core_tune

        return core_project, core_tune
    from pti.fast.projector import project as fast_project
    from pti.fast.tuning import pivotal_tune as fast_tune

    return functools.partial(fast_project, execution=execution), functools.partial(fast_tune, execution=execution)
