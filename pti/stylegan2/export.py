"""Export to NVIDIA's StyleGAN2-ADA code: a tuned generator as a state dict in NVIDIA's parameter names,
and a pivot as NVIDIA's projector output ``projected_w.npz``.

``*.pt`` (format ``pti-nvidia-state-dict-v1``), a ``torch.save``d dict that
``torch.load(path, weights_only=True)`` reads (tensors and plain Python values only; no pickled code):

=================  ===========================================================================
key                content
=================  ===========================================================================
``format``         ``'pti-nvidia-state-dict-v1'``
``class``          ``'training.networks.Generator'`` (stylegan2-ada-pytorch)
``init_kwargs``    the constructor arguments of that class: ``z_dim, c_dim, w_dim, img_resolution,
                   img_channels, mapping_kwargs, synthesis_kwargs`` (plain dicts/lists/numbers)
``state_dict``     float32 CPU tensors, the names of ``Generator.state_dict()`` in NVIDIA's code
                   (pti's Generator uses the same module names), loadable with ``strict=True``
``noise_const``    ``'generator'`` (the buffers as tuned) or ``'pivot'`` (the pivot's optimised noise
                   maps written into the ``noise_const`` buffers, so ``noise_mode='const'`` renders
                   what the run rendered with ``use_pivot_noise``)
``pti_version``    the pti version that wrote it
=================  ===========================================================================

In NVIDIA's code: ``ckpt = torch.load(path, weights_only=True); G =
training.networks.Generator(**ckpt['init_kwargs']); G.load_state_dict(ckpt['state_dict'])``.
``projected_w.npz``: ``np.savez(path, w=float32 [1, num_ws, w_dim])``, the layout of NVIDIA's
``projector.py`` output, which ``generate.py --projected-w`` reads (``np.load(path)['w']``).
Checked once against NVIDIA's own code by ``tools/check_export_nvidia.py``. pti reads the file back
(:func:`pti.stylegan2.load`, ``pti info``) with :func:`generator_from_export`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pti import __version__
from pti.io_utils import atomic_path, atomic_torch_save
from pti.stylegan2.errors import CheckpointError
from pti.stylegan2.networks import Generator
from pti.stylegan2.nvidia_pickle import load_state_dict_strict

EXPORT_FORMAT = "pti-nvidia-state-dict-v1"
#: every version of the format tag starts with this (``EXPORT_FORMAT`` is the one this pti writes and reads)
EXPORT_FORMAT_PREFIX = "pti-nvidia-state-dict-"
NVIDIA_CLASS = "training.networks.Generator"
#: the positional parameters of NVIDIA's ``training.networks.Generator.__init__`` (stylegan2-ada-pytorch)
NVIDIA_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                         "synthesis_kwargs")


def nvidia_init_kwargs(G: torch.nn.Module) -> dict[str, Any]:
    """``G.init_kwargs`` as plain JSON values in NVIDIA's ``Generator(z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, synthesis_kwargs)`` form (tuples become lists).

    Raises:
        ValueError: the kwargs hold a key NVIDIA's constructor does not take, or a non-JSON value.
    """
    kwargs = json.loads(json.dumps(G.init_kwargs))
    extra = sorted(set(kwargs) - set(NVIDIA_GENERATOR_ARGS))
    if extra:
        raise ValueError(f"the generator's constructor arguments {extra} have no place in NVIDIA's Generator")
    return {name: kwargs.get(name, {}) for name in NVIDIA_GENERATOR_ARGS}


def nvidia_state_dict(G: torch.nn.Module, noise: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``G.state_dict()`` as float32 CPU tensors (NVIDIA's names); ``noise`` (one ``[1, 1, R, R]`` map per
    ``G.synthesis.noise_layers()`` entry, e.g. a pivot's) replaces the ``noise_const`` buffers."""
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else None).clone().contiguous()
             for k, v in G.state_dict().items()}
    if noise:
        layers = G.synthesis.noise_layers()
        if len(noise) != len(layers):
            raise ValueError(f"{len(noise)} noise maps for {len(layers)} noise layers")
        names = {id(module): name for name, module in G.named_modules()}
        for layer, n in zip(layers, noise):
            key = f"{names[id(layer)]}.noise_const"
            state[key] = n.detach().to("cpu", torch.float32).reshape(state[key].shape).clone()
    return state


def export_nvidia_generator(G: torch.nn.Module, path: str | Path, noise: list[torch.Tensor] | None = None) -> Path:
    """Write ``G`` as an NVIDIA-loadable state dict file (layout in the module doc); atomic. Returns ``path``."""
    path = Path(path)
    atomic_torch_save({"format": EXPORT_FORMAT, "class": NVIDIA_CLASS, "init_kwargs": nvidia_init_kwargs(G),
                       "state_dict": nvidia_state_dict(G, noise), "noise_const": "pivot" if noise else "generator",
                       "pti_version": __version__}, path)
    return path


def is_export(ckpt: Any) -> bool:
    """Whether a ``torch.load``ed object is this module's export (of any version): a dict whose ``format`` is a
    string starting with ``EXPORT_FORMAT_PREFIX``."""
    return isinstance(ckpt, dict) and str(ckpt.get("format", "")).startswith(EXPORT_FORMAT_PREFIX)


def generator_from_export(ckpt: dict[str, Any], source: str) -> Generator:
    """The pti Generator (eval mode, CPU, float32) of an export read with ``torch.load(weights_only=True)``:
    built from ``init_kwargs`` (NVIDIA's constructor arguments are pti's), loaded ``strict=True`` from
    ``state_dict``; the ``noise_const`` buffers come with the state dict (the pivot's noise if
    ``noise_const == 'pivot'``), so ``G.synthesis(ws, noise_mode='const')`` renders what the export does.

    Raises:
        CheckpointError: (naming ``source``) another version of the format, another class, constructor
            arguments that do not build a Generator, or weights that do not fit it.
    """
    found = ckpt.get("format")
    if found != EXPORT_FORMAT:
        raise CheckpointError(f"{source}: export format {found!r} (written by pti {ckpt.get('pti_version', '?')}); "
                              f"this pti reads {EXPORT_FORMAT!r}: export it again with this pti, or upgrade pti")
    init_kwargs, state = ckpt.get("init_kwargs"), ckpt.get("state_dict")
    if ckpt.get("class") != NVIDIA_CLASS or not isinstance(init_kwargs, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{source}: a {EXPORT_FORMAT} file needs class {NVIDIA_CLASS!r}, an 'init_kwargs' "
                              f"dict and a 'state_dict' dict (found class {ckpt.get('class')!r}, keys "
                              f"{sorted(map(str, ckpt))}); export it again with `pti export`")
    extra = sorted(set(init_kwargs) - set(NVIDIA_GENERATOR_ARGS))
    try:
        if extra:
            raise TypeError(f"unexpected constructor arguments {extra}")
        G = Generator(**init_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the stored init_kwargs {init_kwargs} do not build a Generator "
                              f"({exc})") from None
    load_state_dict_strict(G, state, source)
    return G.eval()


def export_projected_w(w: torch.Tensor, path: str | Path) -> Path:
    """Write a ``[1, num_ws, w_dim]`` code as NVIDIA's ``projected_w.npz`` (``w``, float32); atomic.

    Raises:
        ValueError: ``w`` is not 3-D with a leading 1.
    """
    path = Path(path)
    if w.ndim != 3 or w.shape[0] != 1:
        raise ValueError(f"a pivot code must be [1, num_ws, w_dim], got {list(w.shape)}")
    array = w.detach().to("cpu", torch.float32).numpy()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would add '.npz' to a temporary name
            np.savez(f, w=array)
    return path
