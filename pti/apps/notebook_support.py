"""Small helpers shared by the numbered notebooks (``notebooks/0N_*.ipynb``).

The notebooks keep the PTI steps themselves visible (``project``, ``tune``, the locality
sampling, the edits); what lives here is the plumbing they all repeat: the set-up cell
(:func:`setup`: device, generator, perceptual distances, photos aligned to the generator's
resolution, the paper's configs), one row of reconstruction metrics, the drift of a tuned
generator on random codes, atomic figure/JSON writing and a Markdown table. Images are
``[1, 3, H, W]`` float tensors in [-1, 1].
"""
from __future__ import annotations

import dataclasses
import math
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from pti.io_utils import atomic_path, atomic_write_json


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; anything else as ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} asked for but CUDA is not available; use device='cpu' or 'auto'")
    return device


@dataclass
class NotebookSetup:
    """What a numbered notebook's set-up cell makes (:func:`setup`).

    ``device``; ``out``: the figures folder (absolute, created); ``G``: the generator in eval
    mode; ``perceptual``: the tuning loss and metric distance, ``perceptual_inv``: the
    projector's (at 256 px), both :class:`pti.core.losses.PerceptualLoss`; ``photos``: ``{name:
    [1, 3, R, R]}`` targets; ``env``: :func:`environment`'s record; ``cell``: grid cell size in
    pixels for the figures; ``inv_cfg`` / ``tune_cfg``: the paper's configs with the notebook's
    step counts; ``generator_label``: the generator's file name for figure titles.
    """

    device: torch.device
    out: Path
    G: torch.nn.Module
    perceptual: torch.nn.Module
    perceptual_inv: torch.nn.Module
    photos: dict[str, torch.Tensor]
    env: dict[str, Any]
    cell: int
    inv_cfg: Any
    tune_cfg: Any
    generator_label: str


def quiet_perceptual(net: str, resolution: int | None, device: torch.device) -> tuple[torch.nn.Module, bool]:
    """``(PerceptualLoss(net, resolution, device), fell_back)`` without download chatter or warning.

    When ``net`` is an LPIPS backbone whose torchvision weights are neither cached nor
    downloadable, returns the named EfficientNet-Lite0 fallback and ``fell_back=True``
    instead of :func:`pti.core.perceptual.load_perceptual`'s long warning; the caller says so in
    one line.
    """
    from pti.core.losses import PerceptualLoss
    from pti.core.perceptual import LPIPS_NETS, PerceptualUnavailable, ensure_lpips_backbone

    fell_back = False
    if net in LPIPS_NETS:
        try:
            ensure_lpips_backbone(net)
        except PerceptualUnavailable:
            net, fell_back = "effnet-lite0", True
    return PerceptualLoss(net, resolution, device), fell_back


def setup(generator: str, images: str | Sequence[str] | None = None, align: bool = True, device: str = "auto",
          seed: int = 0, output_dir: str | Path = "../figures", inversion_steps: int = 450, tuning_steps: int = 350,
          w_avg_samples: int = 10000, inversion_perceptual_net: str = "vgg",
          perceptual_net: str = "alex", inversion_lr: float | None = None) -> NotebookSetup:
    """The set-up cell shared by the numbered notebooks; its arguments are their parameters.

    Seeds torch's global RNG with ``seed``, resolves ``device`` (:func:`resolve_device`),
    creates ``output_dir``, loads ``generator`` (a zoo name or a checkpoint path), the two
    perceptual distances (:func:`quiet_perceptual`) and the photos (:func:`load_photos`),
    and prints three lines: generator, perceptual distances (and, offline, that LPIPS fell
    back), photos. The projector runs at ``inversion_lr``, or when None at the generator's
    projector lr (:func:`pti.core.config.inversion_defaults`: 0.02 for 'demo', PTI's 5e-3 otherwise).
    Raises what the loaders raise (unknown generator, unreadable photo, no face found).
    """
    from pti.core.config import TuningConfig
    from pti.stylegan2.checkpoints import load
    from pti.core.config import inversion_defaults

    torch.manual_seed(seed)
    dev = resolve_device(device)
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    G = load(generator, device=dev).eval()
    perceptual, fell_back = quiet_perceptual(perceptual_net, None, dev)
    perceptual_inv, fell_back_inv = quiet_perceptual(inversion_perceptual_net, 256, dev)
    photos = load_photos(images, G.img_resolution, align=align, device=dev)
    s = NotebookSetup(
        device=dev, out=out, G=G, perceptual=perceptual, perceptual_inv=perceptual_inv, photos=photos,
        env=environment(G, generator, dev, perceptual), cell=min(256, max(128, G.img_resolution)),
        inv_cfg=dataclasses.replace(inversion_defaults(generator), steps=inversion_steps, w_avg_samples=w_avg_samples,
                                    seed=seed, perceptual_net=inversion_perceptual_net,
                                    **({} if inversion_lr is None else {"lr": inversion_lr})),
        tune_cfg=TuningConfig(steps=tuning_steps, perceptual_net=perceptual_net, seed=seed),
        generator_label=Path(str(generator)).name)
    missing = [n for n, fb in ((perceptual_net, fell_back), (inversion_perceptual_net, fell_back_inv)) if fb]
    offline = f"; offline: no torchvision weights for LPIPS-{'/'.join(dict.fromkeys(missing))}" if missing else ""
    print(f"generator {generator}: {G.img_resolution}px, num_ws={G.num_ws}, w_dim={G.w_dim}; device {dev}")
    inversion = "for inversion too" if perceptual_inv.name == perceptual.name else f"inversion: {perceptual_inv.name}"
    print(f"perceptual distance: {perceptual.name}; {inversion}{offline}")
    print(f"photos: {', '.join(photos)}")
    return s


def load_photos(images: str | Sequence[str] | None, resolution: int, align: bool = True,
                limit: int | None = None, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The notebooks' targets: ``{name: [1, 3, resolution, resolution]}`` in [-1, 1].

    ``images``: None for the two real photos that ship with the dependencies
    (:func:`pti.apps.demo.bundled_photos`: Grace Hopper, the astronaut Eileen Collins), an image
    file, a folder of images, or a list of files. ``align``: FFHQ-style alignment with dlib
    (:func:`pti.alignment.align_face`); False for photos that are already aligned crops
    (they are only resized). ``limit``: keep the first ``limit`` photos.
    """
    from pti.alignment import align_face
    from pti.apps.demo import bundled_photos
    from pti.images import pil_to_tensor, read_image
    from pti.jobs.runner import list_images

    if images is None:
        sources: dict[str, Any] = dict(bundled_photos())
    elif isinstance(images, (str, Path)):
        sources = {p.stem: p for p in list_images(images)}
    else:
        sources = {Path(p).stem: Path(p) for p in images}
    names = list(sources)[:limit] if limit else list(sources)
    photos = {}
    for name in names:
        if align:
            x = pil_to_tensor(align_face(sources[name], output_size=resolution, name=str(name)))
        else:
            x = read_image(sources[name], size=resolution)
        photos[name] = x.reshape(1, 3, resolution, resolution).to(device)
    return photos


@torch.no_grad()
def render(G: torch.nn.Module, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``G.synthesis(w)`` with constant noise (or the given maps), float32: ``[N, 3, H, W]``."""
    kwargs: dict[str, Any] = {"noise_mode": "const"}
    if noise:
        kwargs["noise"] = list(noise)
    return G.synthesis(w, **kwargs).float()


def metric_row(image: torch.Tensor, target: torch.Tensor, perceptual: torch.nn.Module,
               identity: bool = True) -> dict[str, float]:
    """:func:`pti.metrics.evaluate`'s row of one ``[1, 3, H, W]`` image in ``[-1, 1]`` against its target.

    Keys: ``mse`` and ``psnr`` (on [0, 1]), ``ms_ssim``, ``perceptual`` (the distance named
    ``perceptual.name``: report that name with it), ``identity`` (cosine of dlib face
    descriptors; NaN when ``identity`` is False).
    """
    from pti.metrics import evaluate, identity_similarity

    row = evaluate(image, target, perceptual=perceptual, identity=identity_similarity if identity else None)
    return {**row, "identity": row.get("identity", math.nan)}


@torch.no_grad()
def drift_samples(original: torch.nn.Module, tuned: torch.nn.Module, w_pivot: torch.Tensor,
                  perceptual: torch.nn.Module, num_samples: int = 32,
                  fractions: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0), seed: int = 0,
                  truncation_psi: float = 1.0, batch_size: int = 16) -> dict[str, list[float]]:
    """How much tuning changed the generator away from the pivot.

    For ``num_samples`` random codes ``w_z = mapping(z)`` and each fraction ``f``, the code
    ``w = w_p + f (w_z - w_p)`` lies at W distance ``f ||w_z - w_p||`` from the pivot; its
    drift is the perceptual distance between ``original.synthesis(w)`` and
    ``tuned.synthesis(w)`` (constant noise). Returns ``{'distance': [...], 'drift': [...],
    'fraction': [...]}``, one entry per (sample, fraction).
    """
    from pti.editing.sampling import sample_w

    device = w_pivot.device
    w_p = w_pivot[:1].float()                                            # [1, num_ws, w_dim]
    w_z = sample_w(original, num_samples, seed=seed, truncation_psi=truncation_psi, device=device)
    w_z = w_z[:, None, :].expand(-1, w_p.shape[1], -1)                   # [K, num_ws, w_dim]
    codes, distance, fraction = [], [], []
    for f in fractions:
        codes.append(w_p + f * (w_z - w_p))
        distance += (f * (w_z - w_p).norm(dim=2).mean(dim=1)).tolist()   # mean over layers (equal for W)
        fraction += [float(f)] * num_samples
    codes_t = torch.cat(codes)
    drift: list[float] = []
    for i in range(0, codes_t.shape[0], batch_size):
        chunk = codes_t[i:i + batch_size]
        drift += perceptual(render(original, chunk), render(tuned, chunk)).float().tolist()
    return {"distance": distance, "drift": drift, "fraction": fraction}


def binned_mean(x: Sequence[float], y: Sequence[float], bins: int = 8) -> tuple[list[float], list[float]]:
    """Mean of ``y`` in ``bins`` equal-width bins of ``x`` (empty bins left out): ``(centres, means)``."""
    xt, yt = torch.tensor(list(x), dtype=torch.float64), torch.tensor(list(y), dtype=torch.float64)
    lo, hi = float(xt.min()), float(xt.max())
    if hi <= lo:
        return [lo], [float(yt.mean())]
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    index = torch.bucketize(xt, edges[1:-1])
    centres, means = [], []
    for b in range(bins):
        mask = index == b
        if mask.any():
            centres.append(float((edges[b] + edges[b + 1]) / 2))
            means.append(float(yt[mask].mean()))
    return centres, means


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as strict JSON (NaN/inf become null) atomically; returns the path."""
    path = Path(path)
    atomic_write_json(obj, path)
    return path


def environment(G: torch.nn.Module, generator: str, device: torch.device, perceptual: torch.nn.Module) -> dict:
    """What a notebook ran on, for its JSON: interpreter, versions, device, generator, perceptual name."""
    return {"python": sys.executable, "python_version": platform.python_version(), "torch": torch.__version__,
            "device": str(device), "generator": str(generator), "resolution": int(G.img_resolution),
            "num_ws": int(G.num_ws), "w_dim": int(G.w_dim), "perceptual_name": perceptual.name}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A Markdown table; floats are shown with ``digits`` decimals, NaN as ``n/a``."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
