"""StyleCLIP edits of a pivot, rendered on the original generator θ and on the tuned one θ*, as every
other pti edit is (``pti edit``, ``pti run --edit``): a row "W: <key>" (the pivot edited on θ) above a row
"PTI: <key>" (the same edit on θ*), one column per strength, plus one PNG per PTI edit.

Three methods (Patashnik et al. 2021), each a :class:`StyleClipEdit`:

- ``global``: ``s + α·Δs`` in style space; Δs comes from the *original* generator's prepared directions
  (``pti styleclip-prepare``) and is applied unchanged to θ*'s styles, as the PTI paper does. Strengths are
  α values (default ``0, 4.1``; α = 0 renders the unedited image exactly).
- ``mapper``: ``w + k·M(w)``; strengths are k values (default ``0, 0.06``, the official PTI's k).
- ``optimize``: latent optimisation, run separately against θ and θ* from the same pivot; strength 0 is the
  pivot, 1 the optimised code.

StyleCLIP edits W+ codes: a W pivot is broadcast to every row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from pti.editing.run_edits import STYLECLIP_PREFIXES, strength_text
from pti.editing.style_space import add_style_delta, render_styles, ws_to_styles

if TYPE_CHECKING:
    from pti.editing.styleclip.clip_model import Clip
    from pti.editing.styleclip.mapper import LevelsMapper
    from pti.editing.styleclip.optimize import OptimizeConfig
    from pti.core.pivot import Pivot

METHODS = ("global", "mapper", "optimize")
#: ``pti run --edit`` prefixes of StyleCLIP edits
RUN_PREFIXES = STYLECLIP_PREFIXES


def styleclip_key(kind: str, name: str) -> str:
    """File-safe key: ``text_a_smiling_face``, ``mapper_afro``, ``optimize_a_smiling_face``."""
    prefix = {"global": "text", "mapper": "mapper", "optimize": "optimize"}[kind]
    stem = Path(name).stem if kind == "mapper" and name.endswith(".pt") else name
    return f"{prefix}_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.")[:60] or "edit")



@dataclass
class StyleClipEdit:
    """One StyleCLIP edit, resolved and ready to render.

    Attributes:
        kind: ``'global'``, ``'mapper'`` or ``'optimize'``.
        key: file-safe name (:func:`styleclip_key`); ``spec``: the text it was given as.
        strengths: α values (global), k values (mapper) or ``(0, 1)`` (optimize: pivot, optimised code).
        description: one line on what it is (prompts, β and channels; mapper file; settings).
        deltas: per-layer Δs (global); mapper: the mapper; text, clip, optimize_cfg: for optimize.
    """

    kind: str
    key: str
    strengths: tuple[float, ...]
    spec: str = ""
    description: str = ""
    deltas: list[torch.Tensor] | None = field(default=None, repr=False)
    mapper: "LevelsMapper | None" = field(default=None, repr=False)
    text: str = ""
    clip: "Clip | None" = field(default=None, repr=False)
    optimize_cfg: "OptimizeConfig | None" = None

    def files(self) -> list[str]:
        """Its PTI edit images, relative to the photo folder: ``edits/<key>_<s>.png`` per strength."""
        return [f"edits/{self.key}_{strength_text(s)}.png" for s in self.strengths]

    @property
    def label(self) -> str:
        """Grid label (as :class:`pti.editing.run_edits.RunEdit`'s)."""
        return self.key

    @property
    def direction(self) -> None:
        """A StyleCLIP edit has no W direction: commands that need one (``pti compare``) refuse it."""
        raise ValueError(f"{self.spec!r} is a StyleCLIP edit, not a W direction: use it with pti edit or pti run")

    def render_pair(self, G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", noise_mode: str = "const",
                    use_pivot_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`render_pair` of this edit (the hook ``pti run --edit`` uses)."""
        return render_pair(G, tuned, pivot, self, noise_mode, use_pivot_noise)

    def render(self, G: torch.nn.Module, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
               noise_mode: str = "const") -> torch.Tensor:
        """The edit of codes ``w`` (``[N, w_dim]`` or ``[N, num_ws, w_dim]``) on ``G`` at every strength:
        ``[N, S, C, H, W]`` float32 images in [-1, 1]."""
        num_ws = int(G.num_ws)
        ws = w if w.ndim == 3 else w[:, None, :].expand(-1, num_ws, -1)
        kwargs: dict[str, Any] = {"noise_mode": noise_mode}
        if noise is not None:
            kwargs["noise"] = list(noise)
        if self.kind == "optimize":
            return self._render_optimize(G, ws, noise, kwargs)
        out = []
        with torch.no_grad():
            if self.kind == "global":
                assert self.deltas is not None
                styles = ws_to_styles(G, ws)
                for a in self.strengths:
                    out.append(render_styles(G, add_style_delta(styles, self.deltas, a), ws=ws, **kwargs))
            elif self.kind == "mapper":
                assert self.mapper is not None
                offset = self.mapper.to(ws.device)(ws)
                for k in self.strengths:
                    out.append(G.synthesis(ws + float(k) * offset if k else ws, **kwargs))
            else:
                raise ValueError(f"unknown StyleCLIP method {self.kind!r}; use one of {METHODS}")
        return torch.stack(out, dim=1).float()

    def _render_optimize(self, G: torch.nn.Module, ws: torch.Tensor, noise: Sequence[torch.Tensor] | None,
                         kwargs: dict[str, Any]) -> torch.Tensor:
        from pti.editing.styleclip.optimize import OptimizeConfig, optimize_latent

        assert self.clip is not None
        cfg = self.optimize_cfg or OptimizeConfig()
        if cfg.noise_mode != kwargs["noise_mode"]:
            import dataclasses

            cfg = dataclasses.replace(cfg, noise_mode=kwargs["noise_mode"])
        codes = {0.0: ws}
        if any(s != 0 for s in self.strengths):
            codes[1.0] = optimize_latent(G, ws, self.clip, self.text, cfg, noise=noise).w
        with torch.no_grad():
            return torch.stack([G.synthesis(codes[1.0 if s else 0.0], **kwargs) for s in self.strengths], dim=1).float()


def global_edit(G: torch.nn.Module, clip: "Clip", target: str, neutral: str = "a face", alpha: float = 4.1,
                beta: float | None = 0.15, strengths: Sequence[float] | None = None, root: Path | None = None,
                templates: Sequence[str] | None = None) -> StyleClipEdit:
    """A global-direction edit for the *original* generator ``G`` (its prepared directions under ``root``,
    default :func:`~pti.editing.styleclip.global_directions.cache_root`). Raises ``FileNotFoundError`` when
    they are not prepared, :class:`~pti.editing.styleclip.global_directions.NoChannelError` when no channel
    reaches β."""
    from pti.editing.styleclip.global_directions import cache_root, load_prepared, text_edit

    gd = load_prepared(G, Path(root) if root is not None else cache_root(), clip.key)
    edit = text_edit(gd, clip, target, neutral, beta, templates)
    return StyleClipEdit("global", styleclip_key("global", target),
                         tuple(strengths) if strengths is not None else (0.0, float(alpha)), spec=f"text:{target}",
                         description=f"global direction {edit.describe()}; {gd.source}", deltas=edit.deltas,
                         text=target)


def mapper_edit(spec: str, w_dim: int, strengths: Sequence[float] | None = None,
                cache: Path | None = None) -> StyleClipEdit:
    """A mapper edit from an official name (downloaded once) or a checkpoint path."""
    from pti.editing.styleclip.mapper import MAPPERS, PTI_STRENGTH, load_mapper, resolve_mapper

    path = resolve_mapper(spec, cache=cache)
    entry = MAPPERS.get(spec)
    mapper, opts = load_mapper(path, w_dim=w_dim, disabled=("fine",) if entry is not None and entry.no_fine else ())
    return StyleClipEdit("mapper", styleclip_key("mapper", spec),
                         tuple(strengths) if strengths is not None else (0.0, PTI_STRENGTH), spec=f"mapper:{spec}",
                         description=f"StyleCLIP mapper {path} (groups {', '.join(mapper.groups)})", mapper=mapper)


def optimize_edit(clip: "Clip", text: str, cfg: "OptimizeConfig | None" = None) -> StyleClipEdit:
    """A latent-optimisation edit towards ``text``."""
    from pti.editing.styleclip.optimize import OptimizeConfig

    cfg = cfg or OptimizeConfig()
    return StyleClipEdit("optimize", styleclip_key("optimize", text), (0.0, 1.0), spec=f"optimize:{text}",
                         description=f"latent optimisation towards {text!r}: {cfg.steps} steps, lr {cfg.lr}, "
                                     f"lambda_L2 {cfg.l2_lambda}", text=text, clip=clip, optimize_cfg=cfg)


def resolve_run_edit(text: str, G: torch.nn.Module) -> StyleClipEdit:
    """A ``pti run --edit`` value ``text:PROMPT``, ``mapper:NAME|PATH`` or ``optimize:PROMPT`` for the original
    generator ``G``, at StyleCLIP's defaults (α 4.1, β 0.15, neutral 'a face'; k 0.06; 300 steps). CLIP is
    OpenAI's ViT-B/32 (:func:`~pti.editing.styleclip.clip_model.load_clip`: the cache's weights file, else a
    download). Raises ``ValueError`` (also for missing CLIP weights or prepared directions, with what to do)."""
    from pti.editing.styleclip.clip_model import ClipWeightsError, load_clip

    kind, _, value = text.partition(":")
    if not value.strip():
        raise ValueError(f"{text!r}: give a text or mapper after '{kind}:', e.g. 'text:a smiling face'")
    device = next(G.parameters()).device
    try:
        if kind == "mapper":
            return mapper_edit(value, int(G.w_dim))
        clip = load_clip(device=device)
        if kind == "optimize":
            return optimize_edit(clip, value)
        return global_edit(G, clip, value)
    except (ClipWeightsError, FileNotFoundError, KeyError, RuntimeError) as exc:
        raise ValueError(f"{text!r}: {exc.args[0] if isinstance(exc, KeyError) else exc}") from None


def render_pair(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", edit: StyleClipEdit,
                     noise_mode: str = "const", use_pivot_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_edits, pti_edits)``, each ``[S, C, H, W]``: the pivot edited on ``G`` (its noise maps, 'const', as
    the W inversion image is rendered) and on ``tuned`` (as the PTI reconstruction is rendered), like
    :func:`pti.editing.run_edits.render_w_and_pti` for W directions."""
    device = next(tuned.parameters()).device
    w = pivot.w.to(device)
    noise = pivot.noise_maps(device)
    w_edits = edit.render(G, w, noise=noise, noise_mode="const")[0]
    pti_edits = edit.render(tuned, w, noise=noise if use_pivot_noise else None, noise_mode=noise_mode)[0]
    return w_edits, pti_edits


def write_edits(G: torch.nn.Module, tuned: torch.nn.Module, pivot: "Pivot", edits: Sequence[StyleClipEdit],
                out_dir: Path, noise_mode: str = "const", use_pivot_noise: bool = False,
                grid_name: str = "edits/grid.png", title: str | None = None) -> list[str]:
    """Render ``edits`` and write ``edits/<key>_<s>.png`` (PTI edits), the labelled grid ``grid_name`` (a W and a
    PTI row per edit) and ``edits/<key>.json`` (what each edit is) into ``out_dir``, each atomically. Returns
    the relative paths written."""
    from pti.images import save_grid, write_image
    from pti.io_utils import atomic_write_json

    out_dir = Path(out_dir)
    written: list[str] = []
    rows: list[list[torch.Tensor | None]] = []
    labels: list[str] = []
    columns: list[str] = []
    for e in edits:
        w_img, pti_img = render_pair(G, tuned, pivot, e, noise_mode, use_pivot_noise)
        for name, img in zip(e.files(), pti_img):
            write_image(img, out_dir / name)
            written.append(name)
        rows += [list(w_img), list(pti_img)]
        labels += [f"W: {e.key}", f"PTI: {e.key}"]
        names = {"global": "alpha", "mapper": "k", "optimize": "step"}
        cols = [("pivot" if not s else "optimised") if e.kind == "optimize" else f"{names[e.kind]}={strength_text(s)}"
                for s in e.strengths]
        columns = cols if len(cols) > len(columns) else columns
        record = {"method": e.kind, "spec": e.spec, "description": e.description,
                  "strengths": list(e.strengths), "files": e.files(), "grid": grid_name}
        atomic_write_json(record, out_dir / f"edits/{e.key}.json")
        written.append(f"edits/{e.key}.json")
    width = max(len(r) for r in rows)
    rows = [list(r) + [None] * (width - len(r)) for r in rows]
    resolution = int(getattr(tuned, "img_resolution", 256))
    save_grid(rows, out_dir / grid_name, row_labels=labels, col_labels=columns,
              cell_size=min(256, max(128, resolution)),
              title=title or "StyleCLIP edits: the original generator (W) vs the tuned one (PTI)")
    written.append(grid_name)
    return written


__all__ = ["StyleClipEdit", "METHODS", "RUN_PREFIXES", "styleclip_key", "global_edit", "mapper_edit",
           "optimize_edit", "resolve_run_edit", "render_pair", "write_edits"]
