"""Class labels for conditional generators (``c_dim > 0``).

StyleGAN2's mapping network takes a label ``c [N, c_dim]`` with ``z`` (a one-hot class vector in
NVIDIA's conditional models). PTI needs it wherever it maps random ``z``: the w statistics of
the projector (the start ``w_avg`` and the noise scale ``w_std``) and the locality regulariser's
codes ``w_z``. The photo's class must be given: pti never averages over classes nor uses an
all-zero label. A mixture of classes has a mean code that belongs to no class and a spread that
mixes the gap between classes into the projector's noise scale, and a zero label is no class the
network was trained on; neither is what the paper does for its (unconditional) FFHQ generator.
Unconditional generators take no label.
"""
from __future__ import annotations

from typing import Union

import torch

#: a class index K (one-hot ``e_K``), a label ``[c_dim]`` / ``[1, c_dim]`` / ``[N, c_dim]``, or None
Label = Union[int, torch.Tensor, None]


class ConditioningError(ValueError):
    """A class label is missing for a conditional generator, out of range, or given to an unconditional one."""


def class_label(G: torch.nn.Module, c: Label, n: int = 1, device: torch.device | str | None = None
                ) -> torch.Tensor | None:
    """The label ``[n, c_dim]`` (float32) that ``G.mapping`` needs, or None for an unconditional ``G``.

    Args:
        G: a generator with ``c_dim`` (0: unconditional).
        c: None; a class index ``K`` with ``0 <= K < c_dim`` (the one-hot vector ``e_K``); or a
            label tensor ``[c_dim]``, ``[1, c_dim]`` (repeated ``n`` times) or ``[n, c_dim]``.
        n: rows wanted. device: where the label goes (default: ``G``'s device).
    Raises :class:`ConditioningError` when ``G`` is conditional and ``c`` is None, when ``K`` is out
    of range or ``c`` has the wrong shape, and when ``G`` is unconditional but ``c`` is given.
    """
    c_dim = int(getattr(G, "c_dim", 0))
    if device is None:
        device = next(G.parameters()).device
    if c_dim == 0:
        if c is not None:
            raise ConditioningError("a class label was given but this generator is unconditional (c_dim 0); "
                                    "leave out --class-index / c")
        return None
    if c is None:
        raise ConditioningError(f"this generator is conditional (c_dim {c_dim}): give the photo's class with "
                                f"--class-index K (0 <= K < {c_dim}; Python: c=K or a [{c_dim}] label). pti does "
                                "not average over classes (see pti.core.conditioning)")
    if isinstance(c, bool) or not (isinstance(c, torch.Tensor) or hasattr(c, "__index__")):
        raise ConditioningError(f"class label must be an int or a tensor, got {type(c).__name__}")
    if not isinstance(c, torch.Tensor):
        k = int(c.__index__())
        if not 0 <= k < c_dim:
            raise ConditioningError(f"class index {k} is out of range: this generator has {c_dim} classes "
                                    f"(0 to {c_dim - 1})")
        label = torch.zeros([1, c_dim])
        label[0, k] = 1.0
    else:
        label = c.detach().float().reshape(1, -1) if c.ndim == 1 else c.detach().float()
        if label.ndim != 2 or label.shape[1] != c_dim or label.shape[0] not in (1, n):
            shapes = f"[{c_dim}] or [1, {c_dim}]" + (f" or [{n}, {c_dim}]" if n > 1 else "")
            raise ConditioningError(f"class label must be {shapes} for this generator, got {tuple(c.shape)}")
    return label.to(device).expand(n, c_dim).contiguous()
