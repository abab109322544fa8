"""Live edit explorer for notebooks: sliders for direction, strength and layer range.

:class:`EditExplorer` renders one row, ``photo | W | W+ | PTI`` (whichever sources it is
given), edited by ``strength`` along a chosen :class:`~pti.editing.Direction` restricted to
the half-open style-input range ``[start, stop)``. The rendering (:meth:`EditExplorer.render`)
needs no front end; :meth:`EditExplorer.widgets` wraps it in ipywidgets (imported only
there) whose callback :meth:`EditExplorer.update` re-renders into an ``Image`` widget, so
the callback can be called and checked headlessly (tests, papermill). Without ipywidgets (a
plain kernel, Colab without it) :meth:`EditExplorer.widgets` raises :class:`WidgetsUnavailable`,
whose one-line message notebook 04 prints instead of the sliders; everything else works.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from pti.editing.direction import Direction, render_edits


class WidgetsUnavailable(ImportError):
    """ipywidgets cannot be imported: the live sliders are skipped (the message is one line to print)."""


#: what a notebook prints in place of the sliders when ipywidgets is missing
NO_WIDGETS = "ipywidgets is not installed: the interactive slider is skipped; pip install ipywidgets"


@dataclass
class EditSource:
    """One way of rendering the photo: a generator, its code and (optionally) its noise maps.

    ``w``: ``[1, num_ws, w_dim]``; ``noise``: maps for ``G.synthesis(noise=...)`` (e.g. a W
    pivot's optimised noise), or None for the generator's own constant noise.
    """

    generator: torch.nn.Module
    w: torch.Tensor
    noise: Sequence[torch.Tensor] | None = None


class EditExplorer:
    """Render edits of several sources side by side; optionally drive them with sliders.

    Args:
        sources: ``{label: EditSource}``, rendered left to right (e.g. ``W``, ``W+``, ``PTI``).
        directions: ``{name: Direction}`` offered in the direction drop-down.
        photo: optional ``[1, 3, H, W]`` target in [-1, 1], shown first for reference.
        cell_size: side of each cell of the rendered strip, in pixels.
        max_strength: the strength slider's range is ``[-max_strength, max_strength]``.
    """

    def __init__(self, sources: Mapping[str, EditSource], directions: Mapping[str, Direction],
                 photo: torch.Tensor | None = None, cell_size: int = 192, max_strength: float = 5.0) -> None:
        if not sources:
            raise ValueError("EditExplorer needs at least one source")
        if not directions:
            raise ValueError("EditExplorer needs at least one direction")
        self.sources = dict(sources)
        self.directions = dict(directions)
        self.photo = photo
        self.cell_size = int(cell_size)
        self.max_strength = float(max_strength)
        first = next(iter(self.sources.values())).generator
        self.num_ws = int(first.num_ws)
        for label, src in self.sources.items():
            if tuple(src.w.shape) != (1, self.num_ws, int(src.generator.w_dim)):
                raise ValueError(f"source {label!r}: w must be [1, {self.num_ws}, {src.generator.w_dim}], "
                                 f"got {tuple(src.w.shape)}")
        for d in self.directions.values():
            d.check(int(first.w_dim), self.num_ws)
        self.controls: dict[str, Any] = {}
        self.image_widget: Any = None
        self.renders = 0  # how many times update() rendered (for tests and curiosity)

    def layer_range(self, start: int, stop: int) -> tuple[int, int]:
        """Clip ``[start, stop)`` to ``0..num_ws`` and keep it non-empty."""
        start = max(0, min(int(start), self.num_ws - 1))
        stop = max(start + 1, min(int(stop), self.num_ws))
        return start, stop

    @torch.no_grad()
    def render(self, direction: str, strength: float, layers: tuple[int, int] | None = None) -> torch.Tensor:
        """``[M, 3, H, W]`` in [-1, 1]: the photo (if given) then each source edited by
        ``strength`` along ``direction`` on ``layers`` (None: all style inputs)."""
        d = self.directions[direction]
        d = d.with_layers(self.layer_range(*layers) if layers is not None else None)
        images = [] if self.photo is None else [self.photo.detach().float().cpu()]
        for src in self.sources.values():  # the rendering of pti run --edit and pti demo (render_edits)
            noise = list(src.noise) if src.noise else None
            images.append(render_edits(src.generator, src.w, d, [float(strength)], noise=noise)[0, 0].float().cpu())
        size = self.cell_size
        images = [torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                                  align_corners=False) if x.shape[-1] != size else x
                  for x in images]
        return torch.cat(images)

    def labels(self) -> list[str]:
        return (["photo"] if self.photo is not None else []) + list(self.sources)

    def render_png(self, direction: str, strength: float, layers: tuple[int, int] | None = None) -> bytes:
        """The rendered strip as PNG bytes (one row, cells in the order of :meth:`labels`)."""
        from pti.images import tensor_to_pil

        strip = self.render(direction, strength, layers)
        row = torch.cat(list(strip), dim=-1)  # [3, H, M * W]
        buffer = io.BytesIO()
        tensor_to_pil(row).save(buffer, format="PNG")
        return buffer.getvalue()

    def update(self, change: Any = None) -> bytes:
        """Slider callback: re-render with the current control values into the image widget.

        Returns the PNG bytes it displayed. Works before :meth:`widgets` too (then it renders
        the first direction at strength 0 on all layers).
        """
        c = self.controls
        direction = c["direction"].value if c else next(iter(self.directions))
        strength = c["strength"].value if c else 0.0
        layers = tuple(c["layers"].value) if c else (0, self.num_ws)
        png = self.render_png(direction, strength, layers)
        if self.image_widget is not None:
            self.image_widget.value = png
        self.renders += 1
        return png

    def check(self, strength: float) -> dict[str, Any]:
        """Drive a private, never displayed copy of the controls: does moving the slider re-render?

        The copy shares sources and directions but has its own ipywidgets (closed afterwards),
        so the user's sliders keep their values when a notebook's self-check cell runs again.
        It starts like :meth:`widgets` (first direction, strength 0, all layers) and then moves
        its strength slider to ``strength`` (nonzero). Without ipywidgets it compares
        :meth:`render_png` at 0 and ``strength``. Returns ``{'renders': how many times the copy
        rendered, 'image_changed': bool, 'png_bytes': size of the moved picture}``.
        """
        if strength == 0:
            raise ValueError("check needs a nonzero strength (at 0 the picture is the unedited one)")
        probe = EditExplorer(self.sources, self.directions, self.photo, self.cell_size,
                             max(self.max_strength, abs(float(strength))))
        try:
            box = probe.widgets()
        except ImportError:
            before = probe.update()
            after = probe.render_png(next(iter(self.directions)), float(strength))
            probe.renders += 1
        else:
            before = probe.image_widget.value
            probe.controls["strength"].value = float(strength)   # what a slider drag does
            after = probe.image_widget.value
            for child in box.children:
                child.close()
            box.close()
        return {"renders": probe.renders, "image_changed": before != after, "png_bytes": len(after)}

    def widgets(self) -> Any:
        """An ipywidgets ``VBox``: direction drop-down, strength and layer-range sliders, image.

        Every control change calls :meth:`update`. Needs ``ipywidgets`` (``pip install pti[notebooks]``);
        raises :class:`WidgetsUnavailable` (an ``ImportError``; message :data:`NO_WIDGETS`) without it.
        """
        try:
            import ipywidgets as W
        except ImportError as exc:
            raise WidgetsUnavailable(NO_WIDGETS) from exc
        self.controls = {
            "direction": W.Dropdown(options=list(self.directions), description="direction"),
            "strength": W.FloatSlider(value=0.0, min=-self.max_strength, max=self.max_strength, step=0.25,
                                      description="strength", continuous_update=False),
            "layers": W.IntRangeSlider(value=(0, self.num_ws), min=0, max=self.num_ws, step=1,
                                       description="layers [a, b)", continuous_update=False),
        }
        self.image_widget = W.Image(format="png")
        for control in self.controls.values():
            control.observe(self.update, names="value")
        caption = W.HTML(" | ".join(self.labels()))
        self.update()
        return W.VBox([*self.controls.values(), caption, self.image_widget])
