"""Shared pytest configuration: marker handling and small fixtures.

- ``gpu``: skipped (with the reason) when CUDA is not available.
- ``network``: skipped unless ``PTI_TEST_NETWORK=1`` (CI and this project's machines are offline).
"""
from __future__ import annotations

import os

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    allow_network = os.environ.get("PTI_TEST_NETWORK") == "1"
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    skip_net = pytest.mark.skip(reason="needs internet; set PTI_TEST_NETWORK=1 to run")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "network" in item.keywords and not allow_network:
            item.add_marker(skip_net)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """Tests share 2 cores with other work; keep intra-op threads modest and deterministic."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread(_few_threads) -> None:
    """One intra-op thread: tiny networks run fastest (and reproducibly) on it when the cores are shared.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    torch.set_num_threads(1)


def make_tiny_generator(resolution: int = 16, seed: int = 0, c_dim: int = 0, img_channels: int = 3,
                        **synthesis_kwargs):
    """A small random StyleGAN2 for fast tests (w_dim 32, 2 mapping layers); ``c_dim > 0``: conditional,
    ``img_channels=1``: grayscale."""
    from pti.stylegan2 import Generator

    torch.manual_seed(seed)
    kwargs = {"channel_base": 512, "channel_max": 32, **synthesis_kwargs}
    return Generator(z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=resolution, img_channels=img_channels,
                     mapping_kwargs={"num_layers": 2}, synthesis_kwargs=kwargs).eval()


def generated_images(G, count: int, seed: int) -> torch.Tensor:
    """``count`` images ``[count, C, H, W]`` of ``G``, z drawn with ``seed``, const noise (:func:`generated_codes`)."""
    return generated_codes(G, count, torch.Generator().manual_seed(seed))[1]


def generated_codes(G, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ws [count, num_ws, w_dim], images [count, C, H, W])``: z drawn from ``generator`` (which the caller
    may go on drawing from, e.g. for pivots near ``ws``), mapped by ``G``, rendered with const noise."""
    with torch.no_grad():
        ws = G.mapping(torch.randn([count, G.z_dim], generator=generator), None)
        return ws, G.synthesis(ws, noise_mode="const")


def write_generated_photos(G, folder, names, seed: int) -> list:
    """Render ``len(names)`` images of ``G`` (:func:`generated_images`) to ``folder/<name>.png``; the paths."""
    from pti.images import write_image

    folder.mkdir(parents=True, exist_ok=True)
    x = generated_images(G, len(names), seed)
    paths = [folder / f"{name}.png" for name in names]
    for image, path in zip(x, paths):
        write_image(image, path)
    return paths


@pytest.fixture
def tiny_generator():
    return make_tiny_generator()
