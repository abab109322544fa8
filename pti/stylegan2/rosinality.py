"""rosinality ``stylegan2-pytorch`` checkpoints (``*.pt``) <-> our NVIDIA-named Generator.

A converted checkpoint is ``{'g_ema': state_dict, 'latent_avg': [style_dim]}``; a training
snapshot also holds ``g``, ``d``, optimiser states and ``args`` (an ``argparse.Namespace``)
and no ``latent_avg``. The key mapping (FORMATS.md) is written out by :func:`rosinality_key_plan`:

================================  =========================================
rosinality                        ours (NVIDIA names)
================================  =========================================
``style.{i}.weight|bias``         ``mapping.fc{i-1}.weight|bias``
``input.input`` [1,C,4,4]         ``synthesis.b4.const`` [C,4,4]
``conv1.*``                       ``synthesis.b4.conv1.*``
``convs.{2k}.*``, ``{2k+1}.*``    ``synthesis.b{R}.conv0.*``, ``conv1.*`` (R = 2^(k+3))
``to_rgb1.*``, ``to_rgbs.{k}.*``  ``synthesis.b4.torgb.*``, ``synthesis.b{R}.torgb.*``
``noises.noise_{j}`` [1,1,R,R]    ``...conv0|conv1.noise_const`` [R,R]
================================  =========================================

Inside a layer: ``conv.weight`` [1,O,I,k,k] -> ``weight`` [O,I,k,k]; ``conv.modulation.*`` ->
``affine.*``; ``noise.weight`` [1] -> ``noise_strength`` []; ``activate.bias`` -> ``bias``;
ToRGB ``bias`` [1,3,1,1] -> [3]; blur kernels (``conv.blur.kernel``, ``upsample.kernel``) are
4 x our ``resample_filter``. ``latent_avg`` -> ``mapping.w_avg``.
"""
from __future__ import annotations

import argparse
import contextlib
import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from pti.stylegan2.errors import CheckpointError, UnsafeCheckpointError
from pti.stylegan2.networks import Generator
from pti.stylegan2.nvidia_pickle import load_state_dict_strict

FORMAT_NAME = "rosinality-pt"
FORMAT_DESCRIPTION = "rosinality stylegan2-pytorch checkpoint (.pt with 'g_ema')"
BLUR_GAIN = 4.0  # rosinality's blur/upsample kernels are 4 x NVIDIA's resample_filter
DEFAULT_LR_MLP = 0.01


@dataclass(frozen=True)
class KeyPair:
    """One tensor in both layouts: ``ros = ours.reshape(ros_shape) * gain``."""

    ros_key: str
    our_key: str
    ros_shape: tuple[int, ...]
    gain: float = 1.0


def rosinality_key_plan(G: Generator) -> list[KeyPair]:
    """Every rosinality ``g_ema`` key of a generator shaped like ``G``, with its key and shape in ``G``."""
    shapes = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    plan: list[KeyPair] = []

    def same(ros: str, ours: str) -> None:
        plan.append(KeyPair(ros, ours, shapes[ours]))

    def lead1(ros: str, ours: str) -> None:  # rosinality adds a leading batch axis of 1
        plan.append(KeyPair(ros, ours, (1, *shapes[ours])))

    def styled_conv(ros: str, ours: str, upsample: bool) -> None:
        lead1(f"{ros}.conv.weight", f"{ours}.weight")
        same(f"{ros}.conv.modulation.weight", f"{ours}.affine.weight")
        same(f"{ros}.conv.modulation.bias", f"{ours}.affine.bias")
        plan.append(KeyPair(f"{ros}.noise.weight", f"{ours}.noise_strength", (1,)))
        same(f"{ros}.activate.bias", f"{ours}.bias")
        if upsample:
            plan.append(KeyPair(f"{ros}.conv.blur.kernel", f"{ours}.resample_filter",
                                shapes[f"{ours}.resample_filter"], BLUR_GAIN))

    def to_rgb(ros: str, ours: str, block: str | None) -> None:
        lead1(f"{ros}.conv.weight", f"{ours}.weight")
        same(f"{ros}.conv.modulation.weight", f"{ours}.affine.weight")
        same(f"{ros}.conv.modulation.bias", f"{ours}.affine.bias")
        plan.append(KeyPair(f"{ros}.bias", f"{ours}.bias", (1, shapes[f"{ours}.bias"][0], 1, 1)))
        if block is not None:
            plan.append(KeyPair(f"{ros}.upsample.kernel", f"{block}.resample_filter",
                                shapes[f"{block}.resample_filter"], BLUR_GAIN))

    def noise(index: int, ours: str) -> None:
        plan.append(KeyPair(f"noises.noise_{index}", f"{ours}.noise_const", (1, 1, *shapes[f"{ours}.noise_const"])))

    for i in range(G.mapping.num_layers):
        same(f"style.{i + 1}.weight", f"mapping.fc{i}.weight")
        same(f"style.{i + 1}.bias", f"mapping.fc{i}.bias")
    lead1("input.input", "synthesis.b4.const")
    styled_conv("conv1", "synthesis.b4.conv1", upsample=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", block=None)
    noise(0, "synthesis.b4.conv1")
    for k, res in enumerate(G.synthesis.block_resolutions[1:]):
        block = f"synthesis.b{res}"
        styled_conv(f"convs.{2 * k}", f"{block}.conv0", upsample=True)
        styled_conv(f"convs.{2 * k + 1}", f"{block}.conv1", upsample=False)
        to_rgb(f"to_rgbs.{k}", f"{block}.torgb", block=block)
        noise(2 * k + 1, f"{block}.conv0")
        noise(2 * k + 2, f"{block}.conv1")
    return plan


def _check_expressible(G: Generator, plan: list[KeyPair]) -> None:
    """Raise unless every tensor of ``G`` except the fixed filters has a rosinality key."""
    covered = {p.our_key for p in plan} | {"mapping.w_avg"}
    left = sorted(k for k in G.state_dict() if k not in covered and not k.endswith("resample_filter"))
    synthesis_kwargs = G.init_kwargs.get("synthesis_kwargs", {})
    if left or G.c_dim != 0 or G.img_channels != 3 or G.z_dim != G.w_dim \
            or synthesis_kwargs.get("architecture", "skip") != "skip":
        raise CheckpointError(
            "this generator cannot be written in rosinality's layout (it needs c_dim 0, 3 channels, "
            f"z_dim == w_dim and architecture 'skip'; unmapped tensors: {left[:4]})")


def to_rosinality_state_dict(G: Generator) -> OrderedDict[str, torch.Tensor]:
    """``G``'s weights under rosinality's ``g_ema`` names and shapes (CPU float32 copies).

    rosinality has no ``conv_clamp``: a generator built with one renders slightly
    differently there (a warning says so). ``mapping.w_avg`` goes to ``latent_avg``; see
    :func:`to_rosinality_checkpoint`.
    """
    plan = rosinality_key_plan(G)
    _check_expressible(G, plan)
    if G.init_kwargs.get("synthesis_kwargs", {}).get("conv_clamp") is not None:
        warnings.warn("rosinality's generator has no conv_clamp; outputs there may differ slightly", stacklevel=2)
    ours = G.state_dict()
    return OrderedDict((p.ros_key, ours[p.our_key].detach().to("cpu", torch.float32).reshape(p.ros_shape) * p.gain)
                       for p in plan)


def to_rosinality_checkpoint(G: Generator) -> dict[str, Any]:
    """``{'g_ema': state_dict, 'latent_avg': [w_dim]}``, the layout of rosinality's converted weights."""
    return {"g_ema": to_rosinality_state_dict(G), "latent_avg": G.mapping.w_avg.detach().to("cpu").clone()}


def _rosinality_config(sd: dict[str, torch.Tensor], lr_mlp: float, source: str) -> dict[str, Any]:
    """Generator constructor kwargs read off the shapes of a rosinality ``g_ema`` state dict."""
    try:
        n_mlp = 0
        while f"style.{n_mlp + 1}.weight" in sd:
            n_mlp += 1
        style_dim = int(sd["style.1.weight"].shape[1])
        num_up = 0
        while f"to_rgbs.{num_up}.conv.weight" in sd:
            num_up += 1
        channels = {4: int(sd["input.input"].shape[1])}
        for k in range(num_up):
            channels[8 * 2**k] = int(sd[f"convs.{2 * k}.conv.weight"].shape[1])
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"{source}: 'g_ema' lacks rosinality key {exc}; expected a {FORMAT_DESCRIPTION}") from None
    channel_max = max(channels.values())
    below = {res: ch for res, ch in channels.items() if ch < channel_max}
    channel_base = below[min(below)] * min(below) if below else channel_max * max(channels)
    if any(min(channel_base // res, channel_max) != ch for res, ch in channels.items()):
        raise CheckpointError(f"{source}: channel counts {channels} do not follow min(base / R, max)")
    return dict(z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=max(channels), img_channels=3,
                mapping_kwargs={"num_layers": n_mlp, "lr_multiplier": lr_mlp},
                synthesis_kwargs={"channel_base": channel_base, "channel_max": channel_max,
                                  "architecture": "skip", "conv_clamp": None, "num_fp16_res": 0})


@torch.no_grad()
def estimate_w_avg(G: Generator, num_samples: int = 10000, seed: int = 0, batch_size: int = 2000) -> torch.Tensor:
    """Mean of ``G.mapping(z)`` over ``num_samples`` standard-normal z drawn from ``seed``: ``[w_dim]``."""
    gen = torch.Generator().manual_seed(seed)
    device = G.mapping.fc0.weight.device
    total = torch.zeros([G.w_dim], dtype=torch.float64)
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        total += G.mapping(z, None)[:, 0].double().sum(dim=0).cpu()
    return (total / num_samples).float()


def from_rosinality_state_dict(sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None = None, *,
                               lr_mlp: float = DEFAULT_LR_MLP, source: str = "<state dict>",
                               w_avg_samples: int = 10000, seed: int = 0) -> Generator:
    """Our Generator from a rosinality ``g_ema`` state dict (shapes give the configuration).

    Without ``latent_avg`` (training snapshots), ``mapping.w_avg`` is estimated from
    ``w_avg_samples`` mapped z (``seed``) and a warning says so.
    """
    G = Generator(**_rosinality_config(sd, lr_mlp, source))
    plan = rosinality_key_plan(G)
    planned = {p.ros_key for p in plan}
    missing, unexpected = sorted(planned - set(sd)), sorted(set(sd) - planned)
    if missing or unexpected:
        raise CheckpointError(f"{source}: 'g_ema' does not match rosinality's layout (missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}); expected a {FORMAT_DESCRIPTION}")
    ours = G.state_dict()
    for p in plan:
        tensor = sd[p.ros_key].detach().to("cpu", torch.float32)
        if tensor.numel() != ours[p.our_key].numel():
            raise CheckpointError(f"{source}: {p.ros_key} has shape {tuple(tensor.shape)}, "
                                  f"expected {p.ros_shape} for {p.our_key}")
        value = tensor.reshape(ours[p.our_key].shape) / p.gain
        if p.gain != 1.0 and not torch.allclose(value, ours[p.our_key], atol=1e-6):
            raise CheckpointError(f"{source}: {p.ros_key} is not the [1,3,3,1] blur kernel; other kernels "
                                  "are not supported")
        ours[p.our_key] = value
    if latent_avg is not None:
        ours["mapping.w_avg"] = latent_avg.detach().to("cpu", torch.float32).reshape(-1)
    load_state_dict_strict(G, ours, source)
    if latent_avg is None:
        G.mapping.w_avg.copy_(estimate_w_avg(G, num_samples=w_avg_samples, seed=seed))
        warnings.warn(f"{source}: no latent_avg in the checkpoint; mapping.w_avg was estimated as the mean "
                      f"of {w_avg_samples} mapped z (seed {seed}); truncation uses this estimate", stacklevel=2)
    return G.eval()


def _allowing(extra: Sequence[type]) -> contextlib.AbstractContextManager[Any]:
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals(list(extra)) if extra and safe_globals is not None else contextlib.nullcontext()


def torch_load_weights_only(path: Path, expected: str, allow: Sequence[type] = (),
                            hints: Mapping[str, str] | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors, containers and numbers only, plus
    the classes in ``allow`` (e.g. ``argparse.Namespace``); nothing from the file is ever executed. Serves the
    ``.pt`` readers of rosinality generators (here) and of official e4e encoders (:mod:`pti.encoders.official`).

    ``expected`` (e.g. ``"expected a <format>"``) ends every error message; ``hints`` maps a refused global's
    dotted name to advice appended after it.

    Raises:
        UnsafeCheckpointError: torch's weights-only loader refused a global (named in the message).
        CheckpointError: the file cannot be read, or is damaged, truncated or not a torch file.
    """
    try:
        with _allowing(allow):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"refused global {found.group(1)!r}" if found else (str(exc).strip().splitlines() or ["?"])[0]
        if found and found.group(1) in (hints or {}):
            what += f" ({(hints or {})[found.group(1)]})"
        raise UnsafeCheckpointError(f"{path}: refused by torch's weights-only loader: {what}; nothing from the file "
                                    f"was executed; {expected}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({exc.strerror or exc}); {expected}") from None
    except Exception as exc:  # truncated zip, not a torch file: any error of torch's reader
        raise CheckpointError(f"{path}: damaged, truncated or not a torch file ({type(exc).__name__}: {exc}); "
                              f"{expected}") from None


def load_rosinality_generator(path: str | Path) -> Generator:
    """``g_ema`` of a rosinality checkpoint as our Generator; only ``argparse.Namespace`` is allowed beyond tensors."""
    path = Path(path)
    expected = f"expected a {FORMAT_DESCRIPTION}"
    return generator_from_checkpoint(torch_load_weights_only(path, expected, allow=(argparse.Namespace,)), path,
                                     "no 'g_ema' state dict in the file", expected)


def generator_from_checkpoint(ckpt: object, path: str | Path, missing: str, expected: str) -> Generator:
    """Our Generator from a loaded rosinality checkpoint dict (``g_ema``, ``latent_avg``, ``args.lr_mlp``);
    :class:`CheckpointError` ``"{path}: {missing} (found [...]); {expected}"`` when it has no ``g_ema``."""
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: {missing} (found {found}); {expected}")
    lr_mlp = float(getattr(ckpt.get("args"), "lr_mlp", DEFAULT_LR_MLP))
    return from_rosinality_state_dict(ckpt["g_ema"], ckpt.get("latent_avg"), lr_mlp=lr_mlp, source=str(path))
