"""Progress bars that stay readable outside a terminal: every progress bar of pti is made here.

In a terminal, :func:`progress_bar` is an ordinary tqdm bar. When its stream is not a terminal
(``make demo > log 2>&1``, a CI log, a pipe, a Jupyter kernel), tqdm would redraw the bar with a
carriage return up to ten times a second, and every redraw becomes a line of the log (about
3,600 for ``make demo``). There the bar prints instead one whole line when it starts, at most one
every :data:`PLAIN_INTERVAL_S` seconds while it runs (including its postfix, e.g. the current
loss), and its final state when it ends, so each stage leaves a one-line summary (count, elapsed
time, rate).

Jupyter gets these text lines too, never tqdm's notebook widget (``tqdm.auto``'s choice there): a
widget bar with ``leave=False`` closes its widget model but leaves its output in the cell, so a
saved notebook reopened showed "Error displaying widget: model not found" once per bar (issue 17).
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, TextIO

from tqdm.std import tqdm as std_tqdm

#: outside a terminal: seconds between two progress lines of one bar
PLAIN_INTERVAL_S = 5.0
_CURSOR_UP = "\x1b[A"  # what tqdm writes to move between the rows of nested bars


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineStream:
    """A text stream for tqdm that turns its in-place redraws into whole lines.

    tqdm writes ``"\\r" + bar`` (plus padding) for each redraw, blank strings to clear a bar, and
    newlines and cursor-up codes to move between nested bars. Each non-blank redraw becomes
    ``bar + "\\n"`` on ``stream``; the rest is dropped.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace(_CURSOR_UP, "").replace("\r", "").replace("\n", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()


class _LineTqdm(std_tqdm):
    """tqdm whose postfix/description changes wait for the next timed line instead of redrawing at once."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, file: TextIO | None = None,
                 **kwargs: Any) -> std_tqdm:
    """A tqdm progress bar (same arguments as ``tqdm``), line-based when ``file`` is not a terminal.

    ``file`` defaults to ``sys.stderr`` (tqdm's default). ``disable`` is a plain bool here: tqdm's
    ``disable=None`` (off outside a terminal) would hide progress from logs altogether. Outside a
    terminal the bar always leaves its final line (``leave`` is ignored there) and redraws at most
    every :data:`PLAIN_INTERVAL_S` seconds.
    """
    stream = file if file is not None else sys.stderr
    disable = bool(disable)
    if disable or _is_terminal(stream):
        return std_tqdm(iterable, disable=disable, file=file, **kwargs)
    kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.0)), PLAIN_INTERVAL_S)
    kwargs["leave"] = True
    kwargs.setdefault("ascii", True)
    return _LineTqdm(iterable, file=LineStream(stream), **kwargs)
