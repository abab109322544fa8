"""What a pivot is called wherever results are shown (summary.html/.md/.json, edit grids).

A pivot's name says where its code came from and in which space it lives (issue 29, item 13: an
e4e W+ code must not be shown as "W inversion"). The origin and space are stored in ``pivot.pt``
(:attr:`pti.core.pivot.Pivot.origin`, :attr:`~pti.core.pivot.Pivot.space`) and in a photo's ``metrics.json``
(``"space"``, ``inversion.origin``, ``inversion.steps``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

_SPACES = {"w": "W", "w+": "W+"}


def pivot_label(origin: str | None, space: str | None, steps: int | None = 0) -> str:
    """The pivot's display name from its origin, space and (for an encoder's or a given start) refinement steps.

    >>> [pivot_label("projector", "w"), pivot_label("projector", "w+", 450)]
    ['W inversion', 'W+ inversion']
    >>> [pivot_label("e4e", "w+"), pivot_label("e4e", "w+", 25), pivot_label("w_init", "w", 1)]
    ['e4e W+', 'e4e W+ + 25 steps', 'given W + 1 step']

    ``origin``: 'projector' (None: an older pivot, written before origins were stored, is a
    projector's), 'e4e', 'w_init' or 'file' (a bare code read by :func:`pti.core.pivot.load_pivot`); ``space``: 'w' or 'w+' (None: 'w'); ``steps``: projector steps
    run after the encoder or the given start (ignored for 'projector'). An unknown origin or space
    is shown as stored.
    """
    shown = _SPACES.get(space or "w", str(space))
    origin = origin or "projector"
    if origin == "projector":
        return f"{shown} inversion"
    name = {"e4e": f"e4e {shown}", "w_init": f"given {shown}", "file": f"{shown} from a file"}.get(
        origin, f"{origin} {shown}")
    steps = int(steps or 0)
    return name + (f" + {steps} step{'s' if steps != 1 else ''}" if steps > 0 else "")


def metrics_pivot(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``{"origin", "space", "steps", "label"}`` of the pivot of a photo's ``metrics.json``
    (:func:`pti.jobs.runner.run_one`); an older file without ``inversion.origin`` is a projector's."""
    inversion = metrics.get("inversion") or {}
    origin, space, steps = inversion.get("origin") or "projector", metrics.get("space") or "w", inversion.get("steps")
    return {"origin": origin, "space": space, "steps": steps, "label": pivot_label(origin, space, steps)}


def edit_key_label(key: str) -> str:
    """The label of an edit's file key (:attr:`pti.editing.run_edits.EditSpec.key`), as edit grids show it: a
    combined edit's ``smile1+yaw2`` -> ``smile 1 + yaw 2``, ``sefa_0_1+tilt-1`` -> ``sefa_0 1 + tilt -1``; any
    other key as it is (``smile``, ``sefa_2``).

    >>> [edit_key_label("smile1+yaw2"), edit_key_label("age1+yaw-1+smile0.2"), edit_key_label("sefa_2")]
    ['smile 1 + yaw 2', 'age 1 + yaw -1 + smile 0.2', 'sefa_2']
    """
    if "+" not in key:
        return key
    parts = []
    for term in re.split(r"\+(?![\d.])", key):  # a '+' before a digit is a sign (an exponent: 1e+06)
        m = re.fullmatch(r"(.+?)_?(-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)", term)
        parts.append(f"{m[1]} {m[2]}" if m else term)
    return " + ".join(parts)
