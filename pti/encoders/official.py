"""Official e4e checkpoints (``e4e_ffhq_encode.pt``, omertov/encoder4editing), read safely.

Layout (a ``torch.save``d dict; see docs/encoders.md):

==================  ==========================================================================
top-level key       content
==================  ==========================================================================
``state_dict``      flat dict of the whole pSp/e4e network: ``encoder.*`` (this package's
                    :class:`~pti.encoders.Encoder4Editing` names) and ``decoder.*`` (a
                    rosinality StyleGAN2 generator: ignored here)
``latent_avg``      the decoder's average w, ``[num_ws, w_dim]`` (``[18, 512]`` for FFHQ) or
                    ``[w_dim]``; present when the encoder was trained with ``start_from_latent_avg``
``opts``            the training options as a plain dict, read first; ``encoder_type`` (must be
                    ``'Encoder4Editing'``; ReStyle, HyperStyle and pSp files are named as such,
                    see :func:`foreign_encoder_kind`), ``stylegan_size`` (checked: ``num_ws = 2 log2(size) - 2``),
                    ``start_from_latent_avg``; ``input_nc`` and ``n_styles`` are checked when present
training snapshots  ``global_step``, ``best_val_loss``, ``optimizer``, ``discriminator_state_dict``,
                    ``discriminator_optimizer_state_dict``: allowed, ignored
==================  ==========================================================================

The file is read with ``torch.load(weights_only=True)``: only tensors and plain containers.
If ``opts`` were an ``argparse.Namespace`` (the official files store ``vars(opts)``, a dict),
torch refuses it and so does this loader, with a message that says so. The network's sizes
are read off the tensor shapes (:func:`config_from_state_dict`), then every key and shape is
checked: missing, unexpected or misshapen tensors are refused with their names. Missing
``num_batches_tracked`` counters (unused at inference) are tolerated.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch

from pti.encoders.config import E4EConfig
from pti.encoders.e4e import Encoder4Editing
from pti.stylegan2.errors import CheckpointError
from pti.stylegan2.rosinality import torch_load_weights_only

FORMAT_NAME = "e4e-pt"
FORMAT_DESCRIPTION = "official e4e checkpoint (.pt with 'state_dict', 'opts', 'latent_avg')"
ENCODER_PREFIX = "encoder."
DECODER_PREFIX = "decoder."
ENCODER_TYPE = "Encoder4Editing"
REQUIRED_KEYS = frozenset({"state_dict", "opts"})
OPTIONAL_KEYS = frozenset({"latent_avg", "global_step", "best_val_loss", "optimizer", "discriminator_state_dict",
                           "discriminator_optimizer_state_dict"})
BN_COUNTER = "num_batches_tracked"


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def config_from_state_dict(sd: Mapping[str, torch.Tensor], start_from_latent_avg: bool = True,
                           source: str = "<state dict>") -> E4EConfig:
    """The :class:`E4EConfig` whose encoder has the keys of ``sd`` (``encoder.`` prefix removed).

    Stages are the runs of equal-width units in ``body`` (width = ``res_layer.1`` outputs);
    ``input_size = 16 * 2^(convs of styles.0)``; the coarse/middle/fine split is where the
    style blocks' conv count grows by one.

    Raises:
        CheckpointError: a key the layout needs is absent, or the shapes follow no e4e layout.
    """
    try:
        stem = int(sd["input_layer.0.weight"].shape[0])
        widths: list[int] = []
        while f"body.{len(widths)}.res_layer.1.weight" in sd:
            widths.append(int(sd[f"body.{len(widths)}.res_layer.1.weight"].shape[0]))
        reduction = widths[0] // int(sd["body.0.res_layer.5.fc1.weight"].shape[0]) if widths else 0
        convs: list[int] = []
        while f"styles.{len(convs)}.linear.weight" in sd:
            k, n = len(convs), 0
            while f"styles.{k}.convs.{2 * n}.weight" in sd:
                n += 1
            convs.append(n)
        style_channels, w_dim = (int(d) for d in sd["styles.0.linear.weight"].shape[::-1])
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{source}: the encoder's tensors do not follow e4e's layout (missing or odd entry: "
                              f"{exc}); expected an {FORMAT_DESCRIPTION}") from None
    runs = _runs(widths)
    stages, units = [run[0] for run in runs], [len(run) for run in runs]
    first = convs[0] if convs else 0
    levels = [n - first for n in convs]
    if not convs or levels != sorted(levels) or set(levels) != {0, 1, 2}:
        raise CheckpointError(f"{source}: style blocks with {convs} convolutions do not follow e4e's "
                              f"coarse/middle/fine pattern (n, n+1, n+2); expected an {FORMAT_DESCRIPTION}")
    try:
        return E4EConfig(num_ws=len(convs), w_dim=w_dim, input_size=16 * 2**first, stem_channels=stem,
                         stage_channels=tuple(stages), stage_units=tuple(units), se_reduction=reduction,
                         style_channels=style_channels, coarse_styles=levels.count(0),
                         middle_end=levels.count(0) + levels.count(1), start_from_latent_avg=start_from_latent_avg)
    except ValueError as exc:
        raise CheckpointError(f"{source}: the encoder's shapes give no valid e4e configuration ({exc})") from None


def _runs(values: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][-1] == v:
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


def load_state_dict_checked(encoder: Encoder4Editing, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``sd`` into ``encoder``: every key and shape must match (``num_batches_tracked`` may be absent).

    Raises:
        CheckpointError: names the missing, unexpected and misshapen keys (four of each at most).
    """
    ours = encoder.state_dict()
    missing = sorted(k for k in set(ours) - set(sd) if not k.endswith(BN_COUNTER))
    unexpected = sorted(set(sd) - set(ours))
    wrong = sorted(f"{k} {list(sd[k].shape) if isinstance(sd[k], torch.Tensor) else type(sd[k]).__name__} "
                   f"(expected {list(ours[k].shape)})" for k in set(ours) & set(sd)
                   if not isinstance(sd[k], torch.Tensor) or sd[k].shape != ours[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label}: {_few(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source}: the weights do not fit an e4e encoder ({'; '.join(parts)})")
    merged = {k: (sd[k] if k in sd else ours[k]).detach().to("cpu", ours[k].dtype) for k in ours}
    encoder.load_state_dict(merged, strict=True)


#: advice for a refused ``argparse.Namespace``: official e4e files hold ``opts`` as a plain dict
_NAMESPACE_HINT = {"argparse.Namespace": "its 'opts' is an argparse.Namespace, not the plain dict official files "
                   "hold; if you trust the file, rewrite it once with ckpt['opts'] = vars(ckpt['opts'])"}


def _torch_load(path: Path) -> Any:
    return torch_load_weights_only(path, f"expected an {FORMAT_DESCRIPTION}", hints=_NAMESPACE_HINT)


# opts['encoder_type'] values of the encoder families next to e4e (the names their training scripts accept)
PSP_ENCODER_TYPES = frozenset({"GradualStyleEncoder", "BackboneEncoderUsingLastLayerIntoW",
                               "BackboneEncoderUsingLastLayerIntoWPlus"})
RESTYLE_PSP_ENCODER_TYPES = frozenset({"BackboneEncoder", "ResNetBackboneEncoder"})
RESTYLE_E4E_ENCODER_TYPES = frozenset({"ProgressiveBackboneEncoder", "ResNetProgressiveBackboneEncoder"})
#: opts keys only HyperStyle's training options have
HYPERSTYLE_OPTS = ("layers_to_tune", "hypernet_input_nc", "w_encoder_checkpoint_path", "load_w_encoder")
_ONLY_E4E = (f"pti reads only e4e encoders (opts['encoder_type'] = {ENCODER_TYPE!r}, e.g. e4e_ffhq_encode.pt of "
             "omertov/encoder4editing, or `pti download e4e`)")


def foreign_encoder_kind(opts: Mapping[str, Any], state_keys: list[str] | tuple[str, ...] = ()) -> str | None:
    """What a pSp-family checkpoint is when it is not an e4e encoder, from its training ``opts`` (read
    before any tensor) and, without opts, its state-dict prefixes; ``None`` for e4e (or unknown).

    HyperStyle (Alaluf et al. 2022): ``opts`` has ``layers_to_tune``/``hypernet_input_nc``/...
    or ``encoder_type`` names a ``HyperNet``, tensors under ``hypernet.``; ReStyle (Alaluf et al. 2021):
    ``encoder_type`` in :data:`RESTYLE_E4E_ENCODER_TYPES` (ReStyle-e4e) or
    :data:`RESTYLE_PSP_ENCODER_TYPES` (ReStyle-pSp), or ``n_iters_per_batch`` in opts; pSp (Richardson
    et al. 2021): ``encoder_type`` in :data:`PSP_ENCODER_TYPES`.
    """
    encoder_type = str(opts.get("encoder_type", ""))
    if "HyperNet" in encoder_type or any(k in opts for k in HYPERSTYLE_OPTS) \
            or any(k.startswith("hypernet.") for k in state_keys):
        return "HyperStyle"
    if encoder_type in RESTYLE_E4E_ENCODER_TYPES:
        return "ReStyle-e4e"
    if encoder_type in RESTYLE_PSP_ENCODER_TYPES or (encoder_type == "GradualStyleEncoder"
                                                     and "n_iters_per_batch" in opts):
        return "ReStyle-pSp"
    if encoder_type in PSP_ENCODER_TYPES:
        return "pSp"
    if "n_iters_per_batch" in opts:
        return "ReStyle"
    return None


_PSP_MAPS = {
    "GradualStyleEncoder": "its GradualStyleEncoder maps each style from a feature-pyramid level independently",
    "BackboneEncoderUsingLastLayerIntoW": "its BackboneEncoderUsingLastLayerIntoW maps the backbone's last "
                                          "feature map to one W code",
    "BackboneEncoderUsingLastLayerIntoWPlus": "its BackboneEncoderUsingLastLayerIntoWPlus maps the backbone's last "
                                              "feature map to all W+ styles with one linear layer",
}


def _why_not(kind: str, opts: Mapping[str, Any]) -> str:
    """Why a :func:`foreign_encoder_kind` checkpoint is not an e4e encoder, from what its ``opts`` say."""
    if kind == "HyperStyle":
        return ("a hypernetwork that predicts offsets to the generator's weights (the step pti's pivotal tuning "
                "does by optimisation), not an encoder of W+ codes")
    if kind.startswith("ReStyle"):
        channels = f" (input_nc {opts['input_nc']})" if "input_nc" in opts else ""
        return (f"an iterative encoder: it takes the photo and the current reconstruction{channels} and refines "
                "the code over n_iters_per_batch passes; its layout differs from e4e's")
    maps = _PSP_MAPS.get(str(opts.get("encoder_type")), "it maps the photo to the styles directly")
    return f"{maps}, without e4e's base code plus offsets"


def refuse_foreign_encoder(opts: Mapping[str, Any], state_keys: list[str] | tuple[str, ...], source: str) -> None:
    """Raise :class:`CheckpointError` naming what the file is when :func:`foreign_encoder_kind` knows it, or when
    ``opts['encoder_type']`` names any encoder other than e4e's."""
    kind = foreign_encoder_kind(opts, state_keys)
    encoder_type = opts.get("encoder_type")
    if kind is None:
        if encoder_type is not None and encoder_type != ENCODER_TYPE:  # say so before a tensor check complains
            raise CheckpointError(f"{source}: opts['encoder_type'] is {encoder_type!r}, not an e4e encoder; "
                                  f"{_ONLY_E4E}")
        return
    named = f"opts['encoder_type'] = {encoder_type!r}" if encoder_type else "its opts"
    raise CheckpointError(f"{source}: a {kind} checkpoint ({named}): {_why_not(kind, opts)}; {_ONLY_E4E}")


def _check_opts(opts: Mapping[str, Any], config: E4EConfig, source: str) -> None:
    size = opts.get("stylegan_size")
    if size is not None and (not isinstance(size, int) or size < 4 or size & (size - 1)
                             or 2 * int(math.log2(size)) - 2 != config.num_ws):
        raise CheckpointError(f"{source}: opts['stylegan_size'] = {size!r} does not match the {config.num_ws} style "
                              f"blocks of the encoder (num_ws = 2 log2(size) - 2)")
    for key, want in (("input_nc", 3), ("n_styles", config.num_ws)):
        if key in opts and opts[key] != want:
            raise CheckpointError(f"{source}: opts[{key!r}] = {opts[key]!r}, expected {want}")


def load_official_e4e(path: str | Path) -> Encoder4Editing:
    """An official e4e checkpoint as an :class:`Encoder4Editing` (CPU, eval mode).

    Raises:
        UnsafeCheckpointError: torch's weights-only loader refused the file (nothing was executed).
        CheckpointError: missing/extra top-level keys, ``opts`` not a dict, keys outside
            ``encoder.``/``decoder.``, missing/unexpected/misshapen encoder tensors, a
            ``latent_avg`` of the wrong shape, or options that contradict the weights.
    """
    path = Path(path)
    source = str(path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source}: holds a {type(ckpt).__name__}, not a dict; expected an {FORMAT_DESCRIPTION}")
    opts, sd = ckpt.get("opts"), ckpt.get("state_dict")
    # say what the file is (ReStyle, HyperStyle, pSp) before any layout check complains about a tensor
    refuse_foreign_encoder(opts if isinstance(opts, dict) else {},
                           tuple(map(str, sd)) if isinstance(sd, dict) else (), source)
    keys = set(map(str, ckpt))
    if not REQUIRED_KEYS <= keys or keys - REQUIRED_KEYS - OPTIONAL_KEYS:
        raise CheckpointError(f"{source}: top-level keys {sorted(keys)}; expected {sorted(REQUIRED_KEYS)} plus "
                              f"some of {sorted(OPTIONAL_KEYS)} ({FORMAT_DESCRIPTION})")
    if not isinstance(opts, dict):
        raise CheckpointError(f"{source}: 'opts' is a {type(opts).__name__}, expected a plain dict")
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise CheckpointError(f"{source}: 'state_dict' is a {type(sd).__name__}, expected a dict of named tensors")
    stray = sorted(k for k in sd if not k.startswith((ENCODER_PREFIX, DECODER_PREFIX)))
    if stray:
        raise CheckpointError(f"{source}: 'state_dict' has keys outside 'encoder.' and 'decoder.': {_few(stray)}")
    enc = {k[len(ENCODER_PREFIX):]: v for k, v in sd.items() if k.startswith(ENCODER_PREFIX)}
    latent_avg = ckpt.get("latent_avg")
    start = bool(opts.get("start_from_latent_avg", latent_avg is not None))
    config = config_from_state_dict(enc, start_from_latent_avg=start, source=source)
    _check_opts(opts, config, source)
    if latent_avg is None:
        if start:
            raise CheckpointError(f"{source}: opts['start_from_latent_avg'] is set but the file has no 'latent_avg'")
        latent_avg = torch.zeros([config.w_dim])
    if not isinstance(latent_avg, torch.Tensor) or tuple(latent_avg.shape) not in \
            ((config.w_dim,), (1, config.w_dim), (config.num_ws, config.w_dim)):
        found = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise CheckpointError(f"{source}: 'latent_avg' is {found}; expected [{config.num_ws}, {config.w_dim}] or "
                              f"[{config.w_dim}]")
    enc["latent_avg"] = latent_avg.reshape(-1, config.w_dim).expand(config.num_ws, config.w_dim)
    encoder = Encoder4Editing(config)
    load_state_dict_checked(encoder, enc, source)
    return encoder.eval()
