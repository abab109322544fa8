"""Quality figures of the demo generator: how often a face detector finds a face in its samples.

Metric: the fraction of ``n`` samples (fixed seed, const noise) in which facenet-pytorch's
MTCNN (P/R/O-nets, weights shipped in its wheel; default thresholds 0.6/0.7/0.7, minimum face
20 px) detects at least one face. Images are upscaled from 64x64 to ``detect_size`` (bilinear)
before detection. The same measurement on the DCGAN that provides the training data gives
the reference. Also writes the style-mixing grid and the truncation sweep figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pti.stylegan2 import Generator

DETECT_SIZE = 128


@dataclass(frozen=True)
class DetectionResult:
    """``rate`` = ``found / n``: fraction of samples with at least one detected face."""

    name: str
    n: int
    found: int

    @property
    def rate(self) -> float:
        return self.found / max(self.n, 1)


def load_mtcnn(device: torch.device | str = "cpu"):
    """facenet-pytorch's MTCNN (pretrained weights from its wheel), keep_all, on ``device``."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        raise ImportError("facenet-pytorch is needed for demo-quality: `pip install --no-deps facenet-pytorch` "
                          f"(its MTCNN weights ship in the wheel) ({exc})") from exc
    return MTCNN(keep_all=True, device=torch.device(device))


def count_faces(mtcnn, images: torch.Tensor, detect_size: int = DETECT_SIZE) -> int:
    """Number of images in ``images`` ``[N, 3, H, W]`` (in [-1, 1]) with at least one MTCNN detection."""
    if images.shape[-1] != detect_size:
        images = F.interpolate(images.float(), size=(detect_size, detect_size), mode="bilinear",
                               align_corners=False)
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    boxes, _ = mtcnn.detect(np.ascontiguousarray(arr))
    return int(sum(b is not None and len(b) > 0 for b in boxes))


def detection_rate(sample: Callable[[int], torch.Tensor], n: int, mtcnn, name: str, batch: int = 50,
                   detect_size: int = DETECT_SIZE, progress: bool = True) -> DetectionResult:
    """Draw ``n`` images with ``sample(k) -> [k, 3, H, W]`` in batches and count MTCNN detections."""
    from pti.progress import progress_bar

    found = 0
    with progress_bar(total=n, desc=f"MTCNN {name}", unit="img", disable=not progress) as bar:
        done = 0
        while done < n:
            k = min(batch, n - done)
            found += count_faces(mtcnn, sample(k), detect_size)
            done += k
            bar.update(k)
    return DetectionResult(name=name, n=n, found=found)


def generator_sampler(G: Generator, truncation_psi: float, seed: int) -> Callable[[int], torch.Tensor]:
    """``sample(k)``: the next ``k`` images of G at ``truncation_psi`` (const noise, seeded latents)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device

    @torch.no_grad()
    def sample(k: int) -> torch.Tensor:
        z = torch.randn([k, G.z_dim], generator=gen).to(device)
        return G(z, None, truncation_psi=truncation_psi, noise_mode="const").float().cpu()

    return sample


def dcgan_sampler(seed: int) -> Callable[[int], torch.Tensor]:
    """``sample(k)``: the next ``k`` faces of the training-data DCGAN."""
    from pti.train.dcgan_source import DCGANFaceSource

    source = DCGANFaceSource(seed=seed)
    return source.next_batch


def load_demo_generator(path: str | Path) -> Generator:
    """A generator from a native checkpoint (``pti.stylegan2.checkpoints.load``) or, for a
    ``train-demo`` state file (``state.pt`` / ``demo_resume.pt``), its ``G_ema``."""
    path = Path(path)
    if path.suffix == ".pt":
        from pti.train.demo import TrainDemoConfig, build_generator, load_state

        state = load_state(path)
        G = build_generator(TrainDemoConfig.from_dict(state["config"]))
        G.load_state_dict(state["G_ema"])
        return G.eval().requires_grad_(False)
    from pti.stylegan2.checkpoints import load

    return load(path).eval().requires_grad_(False)


@torch.no_grad()
def style_mixing_figure(G: Generator, path: str | Path, seed: int = 7, n: int = 5,
                        cutoffs: Sequence[int] | None = None, truncation_psi: float = 0.7) -> None:
    """Rows: ``n`` destination latents; columns: ``n`` source latents. Each mixed cell takes
    the source's ws from layer ``cutoff`` on (coarse: early cutoff, fine: late cutoff).

    The grid is ``[blank | sources]`` on top and ``[destination | mixes]`` below, for each
    cutoff in ``cutoffs`` (default: ``num_ws // 4`` and ``num_ws // 2``), stacked vertically.
    """
    from pti.images import save_grid

    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    z = torch.randn([2 * n, G.z_dim], generator=gen).to(device)
    ws = G.mapping(z, None, truncation_psi=truncation_psi)
    src, dst = ws[:n], ws[n:]
    render = lambda w: G.synthesis(w, noise_mode="const").cpu()  # noqa: E731
    src_img, dst_img = render(src), render(dst)
    cutoffs = list(cutoffs) if cutoffs is not None else [max(1, G.num_ws // 4), G.num_ws // 2]
    rows: list[list[torch.Tensor | None]] = [[None] + list(src_img)]
    labels = ["sources"]
    for cutoff in cutoffs:
        for i in range(n):
            mixed = dst[i:i + 1].repeat(n, 1, 1)
            mixed[:, cutoff:] = src[:, cutoff:]
            rows.append([dst_img[i]] + list(render(mixed)))
            labels.append(f"from ws[{cutoff}:]" if i == 0 else "")
    save_grid(rows, path, row_labels=labels, title=f"style mixing (psi={truncation_psi}): destination rows take "
                                                   "the sources' later ws", pad=2)


@torch.no_grad()
def truncation_figure(G: Generator, path: str | Path, seed: int = 11, n: int = 6,
                      psis: Sequence[float] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.0)) -> None:
    """Rows: ``n`` latents; columns: truncation psi from 1 (left) to 0 (the average face)."""
    from pti.images import save_grid

    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    z = torch.randn([n, G.z_dim], generator=gen).to(device)
    cols = [G(z, None, truncation_psi=p, noise_mode="const").cpu() for p in psis]
    rows = [[c[i] for c in cols] for i in range(n)]
    save_grid(rows, path, col_labels=[f"psi {p:g}" for p in psis], title="truncation sweep", pad=2)
