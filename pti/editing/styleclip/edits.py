"""StyleCLIP edits of a pivot, rendered on the original generator θ and on the tuned one θ*, as every
other pti edit is (``pti edit``, ``pti run --edit``): a :class:`StyleClipEdit` is a
:class:`pti.editing.run_edits.Edit`, so :func:`~pti.editing.run_edits.render_pair` renders it and
:func:`~pti.editing.run_edits.write_run_edits` writes its grid (a row "<pivot> (orig. G): <key>", the pivot edited
on θ, above a row "PTI: <key>", the same edit on θ*, :func:`~pti.editing.run_edits.grid_row_names`; one column per
strength) and one PNG per PTI edit.

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

# render_pair: the one renderer of every kind of edit, also named here (notebook 06 imports it from here)
from pti.editing.run_edits import STYLECLIP_PREFIXES, render_pair, strength_text
from pti.editing.styleclip.global_directions import edit_styles
from pti.editing.styleclip.mapper import apply_mapper

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
        settings: what it was made from, for its records (:meth:`identity`): global: text, neutral, the β used
            (``--beta auto`` resolved) and the CLIP model; mapper: the mapper file; optimize: text, steps, lr,
            λ_L2 and the CLIP model.
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
    settings: dict[str, Any] = field(default_factory=dict)

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

    def column_label(self, strength: float) -> str:
        """A grid column's label: ``alpha=4.1`` (global), ``k=0.06`` (mapper), ``pivot`` / ``optimised``."""
        if self.kind == "optimize":
            return "optimised" if strength else "pivot"
        names = {"global": "alpha", "mapper": "k"}
        return f"{names[self.kind]}={strength_text(strength)}"

    def identity(self) -> dict[str, Any]:
        """What this edit is, as JSON: method, spec, strengths, description and :attr:`settings`; two edits with the
        same identity render the same images of the same pivot on the same generators."""
        return {"method": self.kind, "spec": self.spec, "description": self.description,
                "strengths": list(self.strengths), **self.settings}

    def record(self, grid: str) -> dict[str, Any]:
        """What ``edits/<key>.json`` says of this edit (``pti edit``): its :meth:`identity`, its PTI images and
        ``grid``, where its grid was written."""
        return {**self.identity(), "files": self.files(), "grid": grid}

    def render(self, G: torch.nn.Module, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
               noise_mode: str = "const") -> torch.Tensor:
        """The edit of codes ``w`` (``[N, w_dim]`` or ``[N, num_ws, w_dim]``) on ``G`` at every strength:
        ``[N, S, C, H, W]`` float32 images in [-1, 1] (global: :func:`~pti.editing.styleclip.global_directions.edit_styles`;
        mapper: :func:`~pti.editing.styleclip.mapper.apply_mapper`; strength 0 renders ``w`` itself)."""
        num_ws = int(G.num_ws)
        ws = w if w.ndim == 3 else w[:, None, :].expand(-1, num_ws, -1)
        if self.kind == "global":
            assert self.deltas is not None
            return edit_styles(G, ws, self.deltas, self.strengths, noise_mode=noise_mode, noise=noise).float()
        kwargs: dict[str, Any] = {"noise_mode": noise_mode}
        if noise is not None:
            kwargs["noise"] = list(noise)
        if self.kind == "optimize":
            return self._render_optimize(G, ws, noise, kwargs)
        if self.kind != "mapper":
            raise ValueError(f"unknown StyleCLIP method {self.kind!r}; use one of {METHODS}")
        assert self.mapper is not None
        with torch.no_grad():
            return torch.stack([G.synthesis(apply_mapper(self.mapper, ws, k), **kwargs) for k in self.strengths],
                               dim=1).float()

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
                         text=target, settings={"text": target, "neutral": neutral, "beta": edit.beta,
                                                "clip": clip.key})


def mapper_edit(spec: str, w_dim: int, strengths: Sequence[float] | None = None,
                cache: Path | None = None) -> StyleClipEdit:
    """A mapper edit from an official name (downloaded once) or a checkpoint path."""
    from pti.editing.styleclip.mapper import MAPPERS, PTI_STRENGTH, load_mapper, resolve_mapper

    path = resolve_mapper(spec, cache=cache)
    entry = MAPPERS.get(spec)
    mapper, opts = load_mapper(path, w_dim=w_dim, disabled=("fine",) if entry is not None and entry.no_fine else ())
    return StyleClipEdit("mapper", styleclip_key("mapper", spec),
                         tuple(strengths) if strengths is not None else (0.0, PTI_STRENGTH), spec=f"mapper:{spec}",
                         description=f"StyleCLIP mapper {path} (groups {', '.join(mapper.groups)})", mapper=mapper,
                         settings={"mapper": str(Path(path).resolve())})


def optimize_edit(clip: "Clip", text: str, cfg: "OptimizeConfig | None" = None) -> StyleClipEdit:
    """A latent-optimisation edit towards ``text``."""
    from pti.editing.styleclip.optimize import OptimizeConfig

    cfg = cfg or OptimizeConfig()
    return StyleClipEdit("optimize", styleclip_key("optimize", text), (0.0, 1.0), spec=f"optimize:{text}",
                         description=f"latent optimisation towards {text!r}: {cfg.steps} steps, lr {cfg.lr}, "
                                     f"lambda_L2 {cfg.l2_lambda}", text=text, clip=clip, optimize_cfg=cfg,
                         settings={"text": text, "steps": cfg.steps, "lr": cfg.lr, "l2_lambda": cfg.l2_lambda,
                                   "clip": clip.key})


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


__all__ = ["StyleClipEdit", "METHODS", "RUN_PREFIXES", "styleclip_key", "global_edit", "mapper_edit",
           "optimize_edit", "resolve_run_edit", "render_pair"]
