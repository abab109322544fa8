"""Encoder checkpoints: :func:`load_e4e` for two formats, :func:`save_encoder` for ours.

======================  ======================  =========================================
format name             file                    read by
======================  ======================  =========================================
``e4e-pt``              ``*.pt`` / ``*.pth``    ``torch.load(weights_only=True)`` and
                                                layout checks (:mod:`.official`)
``pti-e4e-safetensors`` ``*.safetensors``       safetensors; the :class:`E4EConfig` as JSON
                                                in the header (written by :func:`save_encoder`)
======================  ======================  =========================================

A zoo name (``'e4e'``; see :mod:`pti.zoo`) may be given instead of a path. Every failure
is a :class:`~pti.stylegan2.CheckpointError` naming the file; a file that asks for code to
be run raises :class:`~pti.stylegan2.UnsafeCheckpointError`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pti.encoders import official
from pti.encoders.config import E4EConfig
from pti.encoders.e4e import Encoder4Editing
from pti.stylegan2.checkpoints import read_pti_safetensors, write_pti_safetensors
from pti.stylegan2.errors import CheckpointError

NATIVE_FORMAT = "pti-e4e-safetensors"
NATIVE_FORMAT_VERSION = 1
_META_FORMAT_VALUE = "pti.encoders.Encoder4Editing"
_NATIVE_DESCRIPTION = "pti encoder file (.safetensors written by pti.encoders.save_encoder)"


def _load_native(path: Path) -> Encoder4Editing:
    config, tensors = read_pti_safetensors(path, _META_FORMAT_VALUE, "encoder", _NATIVE_DESCRIPTION,
                                           E4EConfig.from_dict, NATIVE_FORMAT_VERSION)
    encoder = Encoder4Editing(config)
    official.load_state_dict_checked(encoder, tensors, str(path))
    return encoder.eval()


def save_encoder(encoder: Encoder4Editing, path: str | Path) -> Path:
    """Write ``encoder`` as safetensors with its :class:`E4EConfig` (JSON) in the header; atomic.

    Raises:
        ValueError: ``path`` does not end in ``.safetensors``.
    """
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in encoder.state_dict().items()}
    return write_pti_safetensors(path, tensors, _META_FORMAT_VALUE, "encoder", encoder.config.to_dict(),
                                 NATIVE_FORMAT_VERSION)


def _resolve(path_or_name: str | Path) -> Path:
    """A path as given, or the local file of an encoder zoo name (downloaded if needed)."""
    from pti import zoo

    return zoo.resolve_checkpoint(path_or_name, "encoder", "(nor an encoder zoo name); give an official e4e .pt "
                                  "or a pti encoder .safetensors", CheckpointError)


def load_e4e_with_format(path_or_name: str | Path,
                         device: str | torch.device = "cpu") -> tuple[Encoder4Editing, str]:
    """Load an e4e encoder and say which format it came in (``e4e-pt`` or ``pti-e4e-safetensors``).

    The encoder is in eval mode (BatchNorm uses its running statistics) on ``device``.

    Raises:
        CheckpointError: unknown extension, missing file, failed download, or a file that
            does not hold an e4e encoder (see :func:`pti.encoders.official.load_official_e4e`).
        UnsafeCheckpointError: the file asks for code to be run; nothing was executed.
    """
    path = _resolve(path_or_name)
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return official.load_official_e4e(path).to(device), official.FORMAT_NAME
    if suffix == ".safetensors":
        return _load_native(path).to(device), NATIVE_FORMAT
    raise CheckpointError(f"{path}: unknown encoder checkpoint extension {suffix or '(none)'!r}; expected .pt/.pth "
                          f"(official e4e) or .safetensors (pti)")


def load_e4e(path_or_name: str | Path, device: str | torch.device = "cpu") -> Encoder4Editing:
    """Load an e4e encoder from a path or zoo name (``'e4e'``); see :func:`load_e4e_with_format`."""
    return load_e4e_with_format(path_or_name, device=device)[0]


def default_encoder(generator: str) -> str:
    """The encoder ``pti run --init e4e`` uses without ``--encoder``: the shipped one for the demo
    generator (zoo name ``'demo-e4e'``), else the official FFHQ e4e (``'e4e'``)."""
    return "demo-e4e" if str(generator) == "demo" else "e4e"


def encoder_for(G: torch.nn.Module, name: str | Path, device: str | torch.device = "cpu") -> Encoder4Editing:
    """The e4e encoder ``name`` (path or zoo name) on ``device`` in eval mode, checked against ``G``.

    Raises:
        ValueError: its codes are not ``[G.num_ws, G.w_dim]`` (an encoder of another generator).
        CheckpointError: an unreadable, unsafe or missing file (see :func:`load_e4e_with_format`).
    """
    encoder = load_e4e(name, device=device).eval()
    cfg = encoder.config
    if (cfg.num_ws, cfg.w_dim) != (int(G.num_ws), int(G.w_dim)):
        raise ValueError(f"encoder {str(name)!r} gives [{cfg.num_ws}, {cfg.w_dim}] codes but the generator needs "
                         f"[{int(G.num_ws)}, {int(G.w_dim)}] (num_ws, w_dim): pass --encoder with an encoder "
                         "trained for this generator")
    return encoder
