"""StyleCLIP global directions (Patashnik et al. 2021, Sec. 6) in the style space S of a pti generator.

1. Channel statistics: mean and std of every style channel over samples ``w ~ W`` at ψ = 0.7
   (100,000 in the paper). Styles depend on w through the affine layers only, so no image is rendered.
2. Channel directions Δi_c (:func:`channel_directions`): for each channel c of the non-toRGB layers up to
   128 px (5,376 channels at 1024 px), N samples (100 in the paper) are rendered with s_c set to
   ``mean_c − 5σ_c`` and ``mean_c + 5σ_c``; the difference of the two images' unit CLIP embeddings is
   normalised, averaged over the samples and normalised again.
3. Text direction Δt (:func:`text_direction`): the target prompt's embedding minus the neutral one's, each
   averaged over the 79 ImageNet templates, normalised.
4. The edit (:func:`style_delta`): relevance ``R = Δi · Δt`` per channel; entries with ``|R| < β`` are set
   to zero and R is divided by its largest ``|R|``; ``Δs = std ⊙ R̂`` and the edited style is
   ``s + α Δs``. Defaults α = 4.1, β = 0.15 (:data:`DEFAULT_ALPHA`, :data:`DEFAULT_BETA`); "auto" β is the largest β that
   keeps at least 20 channels (:func:`auto_beta`).

:class:`GlobalDirections` holds 1 and 2 for one generator and one CLIP model; ``pti styleclip-prepare``
computes and caches them (:func:`prepare`), :mod:`pti.editing.styleclip.files` imports StyleCLIP's own
precomputed FFHQ files (``fs3.npy``, ``S_mean_std``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from pti.editing.style_space import StyleLayer, add_style_delta, render_styles, style_layers, ws_to_styles
from pti.progress import progress_bar

#: StyleCLIP's defaults (Sec. 6 and its global-directions code)
DEFAULT_ALPHA = 4.1
DEFAULT_BETA = 0.15
AUTO_BETA_MIN_CHANNELS = 20
CACHE_FORMAT = "pti-styleclip-global-v1"


class NoChannelError(ValueError):
    """No channel's relevance reaches β (STIT #21): the message gives the largest β that keeps one."""


@dataclass(frozen=True)
class PrepareConfig:
    """How :func:`prepare` computes statistics and channel directions (defaults: StyleCLIP's).

    Attributes:
        stat_samples: samples for the channel mean/std (paper: 100,000).
        truncation_psi: ψ of those samples and of the Δi_c samples (0.7).
        samples: codes each Δi_c is averaged over (paper: 100).
        sigmas: how far each channel is pushed, in stds, either side of its mean (5).
        max_resolution: channels of conv layers up to this block resolution get a Δi_c (128); the rest
            keep Δi_c = 0, i.e. never take part in an edit.
        seed: seed of the samples.
        batch_size: images rendered per CLIP batch.
    """

    stat_samples: int = 100_000
    truncation_psi: float = 0.7
    samples: int = 100
    sigmas: float = 5.0
    max_resolution: int = 128
    seed: int = 0
    batch_size: int = 16


@dataclass
class GlobalDirections:
    """Statistics and channel directions of one generator for one CLIP model.

    Attributes:
        layers: every style layer (:func:`pti.editing.style_space.style_layers`).
        mean, std: per layer ``[C_l]`` channel statistics (toRGB layers included).
        channel_dirs: ``[C, D]`` unit Δi_c rows for the C channels of the non-toRGB layers in order
            (zero rows for channels without one).
        clip: the CLIP model's key (``"ViT-B-32/openai"``); generator: its weights' fingerprint.
        source: where it came from (computed here, or imported files).
    """

    layers: list[StyleLayer]
    mean: list[torch.Tensor]
    std: list[torch.Tensor]
    channel_dirs: torch.Tensor
    clip: str = ""
    generator: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        n = sum(layer.channels for layer in self.layers if not layer.is_torgb)
        if self.channel_dirs.ndim != 2 or self.channel_dirs.shape[0] != n:
            raise ValueError(f"channel directions must be [{n}, D] (one row per channel of the non-toRGB "
                             f"layers), got {tuple(self.channel_dirs.shape)}")
        for layer, m, s in zip(self.layers, self.mean, self.std):
            if m.shape != (layer.channels,) or s.shape != (layer.channels,):
                raise ValueError(f"statistics of {layer.name} must be [{layer.channels}]")

    def relevance(self, dt: torch.Tensor) -> torch.Tensor:
        """``R = Δi · Δt``: ``[C]`` relevance of every non-toRGB channel to the text direction ``dt [D]``."""
        if dt.shape != (self.channel_dirs.shape[1],):
            raise ValueError(f"the text direction has dimension {tuple(dt.shape)}, the channel directions "
                             f"{self.channel_dirs.shape[1]}: were they made with another CLIP model?")
        return self.channel_dirs.double() @ dt.double().cpu()


def channel_stats(G: torch.nn.Module, num_samples: int = 100_000, truncation_psi: float = 0.7, seed: int = 0,
                  batch_size: int = 2_000, progress: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Mean and std (population, as numpy's) of every style channel over ``num_samples`` mapped samples.

    Returns ``(mean, std)``: per style layer ``[C_l]`` float32 on the CPU.
    """
    if num_samples < 2:
        raise ValueError(f"channel statistics need at least 2 samples, got {num_samples}")
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    sums: list[torch.Tensor] | None = None
    squares: list[torch.Tensor] = []
    starts = range(0, num_samples, batch_size)
    with torch.no_grad():
        for start in progress_bar(starts, desc="style statistics", disable=not progress):
            n = min(batch_size, num_samples - start)
            z = torch.randn([n, int(G.z_dim)], generator=gen).to(device)
            styles = [s.double() for s in ws_to_styles(G, G.mapping(z, None, truncation_psi=truncation_psi))]
            if sums is None:
                sums = [s.sum(0) for s in styles]
                squares = [s.square().sum(0) for s in styles]
            else:
                sums = [a + s.sum(0) for a, s in zip(sums, styles)]
                squares = [a + s.square().sum(0) for a, s in zip(squares, styles)]
    assert sums is not None
    mean = [a / num_samples for a in sums]
    std = [(b / num_samples - m.square()).clamp_min(0).sqrt() for b, m in zip(squares, mean)]
    return [m.float().cpu() for m in mean], [s.float().cpu() for s in std]


def layer_channel_directions(G: torch.nn.Module, layer_index: int, base_styles: Sequence[torch.Tensor],
                             mean: Sequence[torch.Tensor], std: Sequence[torch.Tensor],
                             encode: Callable[[torch.Tensor], torch.Tensor], sigmas: float = 5.0,
                             batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """Δi_c for every channel c of style layer ``layer_index``: ``[C_l, D]`` unit rows (zero where the
    two images embed identically).

    For each sample n: images with ``s_c = mean_c − sigmas·std_c`` and ``mean_c + sigmas·std_c`` (the other
    channels keep the sample's styles ``base_styles``, ``[N, C_k]`` per layer); ``d_n = normalise(e⁺) −
    normalise(e⁻)`` of their embeddings ``encode(images) [*, D]``; ``Δi_c = normalise(mean_n normalise(d_n))``.
    Noise is the generator's constant noise.
    """
    n = base_styles[0].shape[0]
    channels = base_styles[layer_index].shape[1]
    rows = []
    ws = torch.zeros([2 * n, int(G.num_ws), int(G.w_dim)], device=base_styles[0].device)
    doubled = [torch.cat([s, s]) for s in base_styles]
    m_c, s_c = mean[layer_index], std[layer_index]
    for c in progress_bar(range(channels), desc=f"layer {layer_index} channels", disable=not progress, leave=False):
        styles = list(doubled)
        target = styles[layer_index].clone()
        target[:n, c] = float(m_c[c] - sigmas * s_c[c])
        target[n:, c] = float(m_c[c] + sigmas * s_c[c])
        styles[layer_index] = target
        feats = []
        with torch.no_grad():
            for i in range(0, 2 * n, batch_size):
                part = [s[i:i + batch_size] for s in styles]
                images = render_styles(G, part, ws=ws[i:i + batch_size], noise_mode="const")
                feats.append(F.normalize(encode(images).double(), dim=-1))
        e = torch.cat(feats)
        diff = e[n:] - e[:n]
        norms = diff.norm(dim=-1, keepdim=True)
        diff = torch.where(norms > 0, diff / norms.clamp_min(1e-30), torch.zeros_like(diff))
        avg = diff.mean(0)
        norm = avg.norm()
        rows.append(avg / norm if norm > 0 else avg)
    return torch.stack(rows).float().cpu()


def text_direction(clip: "Clip", target: str, neutral: str, templates: Sequence[str] | None = None) -> torch.Tensor:  # noqa: F821
    """Δt: ``normalise(t(target) − t(neutral))`` with each prompt averaged over ``templates``
    (default: StyleCLIP's 79 ImageNet templates). ``[D]`` float32 on the CPU. Raises ``ValueError``
    when the two prompts embed identically."""
    dt = clip.encode_prompt(target, templates) - clip.encode_prompt(neutral, templates)
    norm = dt.norm()
    if not norm > 0:
        raise ValueError(f"the prompts {target!r} and {neutral!r} give the same CLIP embedding; give a target "
                         "that differs from the neutral text")
    return (dt / norm).float().cpu()


def auto_beta(relevance: torch.Tensor, min_channels: int = AUTO_BETA_MIN_CHANNELS) -> float:
    """The largest β that keeps at least ``min_channels`` channels (all non-zero ones if fewer exist)."""
    r = relevance.abs()
    r = r[r > 0]
    if r.numel() == 0:
        raise NoChannelError("every channel has relevance 0 to this text (no channel directions computed?); "
                             "run `pti styleclip-prepare` for this generator")
    k = min(int(min_channels), r.numel())
    return float(torch.topk(r, k).values[-1])


def style_delta(gd: GlobalDirections, dt: torch.Tensor, beta: float | None = DEFAULT_BETA,
                min_channels: int = AUTO_BETA_MIN_CHANNELS) -> tuple[list[torch.Tensor], float, int]:
    """Δs for text direction ``dt``: ``(per-layer [C_l] deltas, β used, channels kept)``.

    ``Δs = std ⊙ R̂``, ``R̂ = R·[|R| >= β] / max|R·[|R| >= β]|`` on the non-toRGB layers; toRGB deltas are
    zero. ``beta=None``: :func:`auto_beta`. Raises :class:`NoChannelError` when no channel reaches β.
    """
    r = gd.relevance(dt)
    if beta is None:
        beta = auto_beta(r, min_channels)
    kept = r.abs() >= beta
    if not bool(kept.any()):
        raise NoChannelError(f"no channel has relevance |R| >= beta={beta:g} for this text; the largest beta that "
                             f"keeps a channel is {float(r.abs().max()):.4f} (or use --beta auto)")
    r_hat = torch.where(kept, r, torch.zeros_like(r))
    r_hat = r_hat / r_hat.abs().max()
    deltas: list[torch.Tensor] = []
    row = 0
    for layer, std in zip(gd.layers, gd.std):
        if layer.is_torgb:
            deltas.append(torch.zeros(layer.channels))
            continue
        deltas.append((r_hat[row:row + layer.channels] * std.double()).float())
        row += layer.channels
    return deltas, float(beta), int(kept.sum())


def edit_styles(G: torch.nn.Module, ws: torch.Tensor, deltas: Sequence[torch.Tensor], alphas: Sequence[float],
                noise_mode: str = "const", noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Render ``G`` at ``s(ws) + α Δs`` for each α: ``[N, len(alphas), C, H, W]`` images in [-1, 1].

    ``ws``: ``[N, w_dim]`` or ``[N, num_ws, w_dim]``; α = 0 renders ``G.synthesis(ws)`` exactly.
    """
    with torch.no_grad():
        styles = ws_to_styles(G, ws)
        full_ws = ws if ws.ndim == 3 else ws[:, None, :].expand(-1, int(G.num_ws), -1)
        kwargs = {"noise_mode": noise_mode}
        if noise is not None:
            kwargs["noise"] = list(noise)
        out = [render_styles(G, add_style_delta(styles, deltas, a), ws=full_ws, **kwargs) for a in alphas]
    return torch.stack(out, dim=1)


# --- computing and caching ------------------------------------------------------------------------------------

def cache_root() -> Path:
    """Default folder of prepared directions: ``<pti cache>/styleclip`` (``$PTI_CACHE_DIR`` or ``~/.cache/pti``)."""
    from pti.zoo import cache_dir

    return cache_dir() / "styleclip"


def cache_folder(root: Path, generator_fp: str, clip_key: str) -> Path:
    """``root/<fingerprint[:16]>_<clip key>``: one folder per generator weights and CLIP model."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in clip_key)
    return Path(root) / f"{generator_fp[:16]}_{safe}"


def prepare(G: torch.nn.Module, clip: "Clip", folder: Path, cfg: PrepareConfig = PrepareConfig(),  # noqa: F821
            progress: bool = True, encode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> GlobalDirections:
    """Compute (or resume) statistics and Δi_c for ``G`` and ``clip`` in ``folder``; return them.

    ``folder`` holds ``meta.json`` (config, generator fingerprint, CLIP key), ``stats.pt``, one
    ``dirs_<layer>.pt`` per finished layer and, at the end, ``directions.pt`` (:func:`save_prepared`), each
    written atomically: an interrupted run resumes at the first unfinished layer. A folder made with other settings is refused (``ValueError``).
    ``encode`` overrides the image encoder (default ``clip.encode_images``).
    """
    from pti.io_utils import atomic_torch_save, atomic_write_text
    from pti.stylegan2.checkpoints import weights_fingerprint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp = weights_fingerprint(G)
    meta = {"format": CACHE_FORMAT, "generator": fp, "clip": clip.key, "config": asdict(cfg)}
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old != meta:
            raise ValueError(f"{folder}: prepared with other settings ({old.get('config')}, CLIP {old.get('clip')}); "
                             "delete the folder or choose another --cache")
    else:
        atomic_write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", meta_path)
    layers = style_layers(G)
    stats_path = folder / "stats.pt"
    if stats_path.is_file():
        stats = torch.load(stats_path, map_location="cpu", weights_only=True)
        mean, std = stats["mean"], stats["std"]
    else:
        mean, std = channel_stats(G, cfg.stat_samples, cfg.truncation_psi, cfg.seed, progress=progress)
        atomic_torch_save({"mean": mean, "std": std}, stats_path)
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    z = torch.randn([cfg.samples, int(G.z_dim)], generator=gen).to(device)
    with torch.no_grad():
        base = ws_to_styles(G, G.mapping(z, None, truncation_psi=cfg.truncation_psi))
    encoder = encode or clip.encode_images
    rows = []
    todo = [(i, layer) for i, layer in enumerate(layers) if not layer.is_torgb]
    for i, layer in progress_bar(todo, desc="StyleCLIP channel directions", disable=not progress):
        path = folder / f"dirs_{layer.name}.pt"
        if layer.resolution > cfg.max_resolution:
            rows.append(None)
            continue
        if path.is_file():
            rows.append(torch.load(path, map_location="cpu", weights_only=True))
            continue
        d = layer_channel_directions(G, i, base, mean, std, encoder, cfg.sigmas, cfg.batch_size, progress)
        atomic_torch_save(d, path)
        rows.append(d)
    dim = next((r.shape[1] for r in rows if r is not None), None)
    if dim is None:
        raise ValueError(f"no conv layer is at or below max_resolution={cfg.max_resolution}")
    full = torch.cat([r if r is not None else torch.zeros([layer.channels, dim])
                      for r, (_, layer) in zip(rows, todo)])
    gd = GlobalDirections(layers, list(mean), list(std), full, clip=clip.key, generator=fp,
                          source=f"computed by pti styleclip-prepare in {folder}")
    save_prepared(gd, folder)
    return gd


DIRECTIONS_FILE = "directions.pt"


def save_prepared(gd: GlobalDirections, folder: Path) -> Path:
    """Write ``gd`` to ``folder/directions.pt`` (plain tensors and strings, atomically); returns the path."""
    from pti.io_utils import atomic_torch_save

    path = Path(folder) / DIRECTIONS_FILE
    atomic_torch_save({"format": CACHE_FORMAT, "mean": list(gd.mean), "std": list(gd.std),
                       "channel_dirs": gd.channel_dirs, "clip": gd.clip, "generator": gd.generator,
                       "source": gd.source, "layers": [layer.name for layer in gd.layers]}, path)
    return path


def load_prepared(G: torch.nn.Module, root: Path, clip_key: str) -> GlobalDirections:
    """The prepared directions of ``G`` (by weights fingerprint) and CLIP ``clip_key`` under ``root``.

    Raises ``FileNotFoundError`` naming the command that makes them.
    """
    from pti.stylegan2.checkpoints import weights_fingerprint

    fp = weights_fingerprint(G)
    path = cache_folder(root, fp, clip_key) / DIRECTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no StyleCLIP global directions for this generator and CLIP {clip_key}; run `pti "
            f"styleclip-prepare --generator G` (G: the run's original generator; with NVIDIA's FFHQ generator "
            f"`--import-ffhq` uses StyleCLIP's precomputed fs3.npy)")
    data = torch.load(path, map_location="cpu", weights_only=True)
    layers = style_layers(G)
    if data.get("format") != CACHE_FORMAT or data.get("layers") != [layer.name for layer in layers]:
        raise ValueError(f"{path}: not prepared directions of this generator's style layers; delete it and prepare again")
    return GlobalDirections(layers, data["mean"], data["std"], data["channel_dirs"], clip=data["clip"],
                            generator=data["generator"], source=data["source"])


@dataclass(frozen=True)
class TextEdit:
    """A text edit resolved for a generator: per-layer Δs, with what it was made from."""

    target: str
    neutral: str
    deltas: list[torch.Tensor] = field(repr=False)
    beta: float
    channels: int

    def describe(self) -> str:
        """One line: the prompts, β and how many channels the edit moves."""
        return f"{self.target!r} vs {self.neutral!r}: beta {self.beta:.4g}, {self.channels} channels"


def text_edit(gd: GlobalDirections, clip: "Clip", target: str, neutral: str = "a face",  # noqa: F821
              beta: float | None = DEFAULT_BETA, templates: Sequence[str] | None = None) -> TextEdit:
    """Δt of the prompts and its Δs on ``gd`` (:func:`style_delta`)."""
    if gd.clip and clip.key != gd.clip:
        raise ValueError(f"the channel directions were computed with CLIP {gd.clip}, not {clip.key}")
    deltas, used, kept = style_delta(gd, text_direction(clip, target, neutral, templates), beta)
    return TextEdit(target, neutral, deltas, used, kept)


__all__ = ["PrepareConfig", "GlobalDirections", "NoChannelError", "channel_stats", "layer_channel_directions",
           "text_direction", "auto_beta", "style_delta", "edit_styles", "prepare", "cache_root",
           "cache_folder", "save_prepared", "load_prepared", "TextEdit", "text_edit", "DEFAULT_ALPHA", "DEFAULT_BETA"]
