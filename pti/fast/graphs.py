"""Whole steps captured once as CUDA graphs and replayed (:class:`StepGraphs`).

A PTI step at batch 1 is launch-bound: hundreds of small kernels, each a few microseconds of GPU
work behind a host-side launch. A CUDA graph records a whole step (forward, backward, optimiser,
the noise maps' renormalisation) once and replays it with one launch. That needs a *graph-safe*
step: it reads its inputs only from tensors that stay at the same address (the caller copies each
step's inputs into them before the replay: no host-to-device copies of pageable memory inside),
has no host sync inside (learning rates, early-stop masks and Adam's step counts live on the
device: :class:`~pti.fast.optim.FlatAdam`), draws no random numbers inside (the w noise and the
locality samples are drawn ahead) and keeps its shapes static. Its outputs are the same tensors on
every replay, so a caller that keeps them copies them (:class:`~pti.fast.execution.DeferredHistory`).

Capture follows PyTorch's documented recipe for whole-network capture ("CUDA Graphs" in the
torch.cuda docs): the first ``warmup`` calls of each kind of step run eagerly on a side stream (they
are real steps of the run; they let autograd and the libraries set up their state), then one call
is captured (capture does not execute it) and replayed, and every later call replays. Where capture
is impossible (no CUDA device, or capture raises), every step runs eagerly and one warning says why.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Hashable

import torch

Outputs = Any  # a tensor, or a tuple/list/dict of tensors (or None)


class StepGraphs:
    """Runs ``step(key)`` eagerly or as replays of one CUDA graph per ``key``.

    Args:
        step: the graph-safe step (see the module doc); ``step(key)`` returns its outputs.
        device: where the step runs; graphs are used only for a CUDA device.
        enabled: False: always eager (the same code path, so the same results as the graph's on a GPU).
        warmup: eager calls of each key before its capture (PyTorch's examples use 3; they are real steps).
    Attributes: ``fallback`` (None, or why steps run eagerly), ``captured`` (keys replayed from a graph).
    """

    def __init__(self, step: Callable[[Hashable], Outputs], device: torch.device | str, enabled: bool = True,
                 warmup: int = 3, what: str = "step") -> None:
        self.step, self.device, self.warmup, self.what = step, torch.device(device), max(1, int(warmup)), what
        self.fallback: str | None = None
        if enabled and self.device.type != "cuda":
            self.fallback = f"CUDA graphs need a CUDA device; the {what} runs on {self.device.type}"
        self.enabled = enabled and self.fallback is None
        self._calls: dict[Hashable, int] = {}
        self._graphs: dict[Hashable, tuple[torch.cuda.CUDAGraph, Outputs]] = {}
        self._stream: torch.cuda.Stream | None = None
        self._warned = False
        if enabled and self.fallback is not None:
            self._warn()

    @property
    def captured(self) -> list[Hashable]:
        return list(self._graphs)

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"pti: CUDA graphs off, running each {self.what} eagerly: {self.fallback}", RuntimeWarning,
                          stacklevel=3)

    def __call__(self, key: Hashable = None) -> Outputs:
        if not self.enabled:
            return self.step(key)
        if key in self._graphs:
            graph, outputs = self._graphs[key]
            graph.replay()
            return outputs
        calls = self._calls.get(key, 0)
        self._calls[key] = calls + 1
        if calls < self.warmup:
            return self._side_stream(key)
        try:
            return self._capture(key)
        except Exception as exc:  # capture failed: everything from here on runs eagerly
            self.enabled = False
            self.fallback = f"capture failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
            self._warn()
            torch.cuda.synchronize(self.device)
            return self.step(key)

    def _side_stream(self, key: Hashable) -> Outputs:
        """An eager step on a side stream (PyTorch's warm-up before capture)."""
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            outputs = self.step(key)
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        return outputs

    def _capture(self, key: Hashable) -> Outputs:
        """Record one step (not executed by the capture), then replay it once: that is this call's step."""
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        # each key its own memory pool: plain and regularised steps replay interleaved, in no fixed order,
        # which a shared pool would not allow
        with torch.cuda.graph(graph):
            outputs = self.step(key)
        self._graphs[key] = (graph, outputs)
        graph.replay()
        return outputs
