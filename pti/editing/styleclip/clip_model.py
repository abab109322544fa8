"""CLIP for StyleCLIP edits, through open_clip (Radford et al. 2021; StyleCLIP uses OpenAI's ViT-B/32).

:func:`load_clip` returns a :class:`Clip`: the model, its tokenizer, and the image preprocessing
written in torch (differentiable, for latent optimisation): images in [-1, 1] are mapped to [0, 1],
resized to the model's input size (bicubic, antialiased; faces are square, so CLIP's resize and
centre crop reduce to one resize) and normalised with CLIP's mean and std.

Weights:

- ``pretrained="openai"`` (default): ``<pti cache>/clip/ViT-B-32/open_clip_model.safetensors`` when that
  file is there (:func:`local_weights_path`), else open_clip's download of OpenAI's weights (the Hugging
  Face copy ``timm/vit_base_patch32_clip_224.openai``, a safetensors file, or OpenAI's URL). Offline, the
  error names the file and where to put it.
- ``weights=PATH``: a local state dict (``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``
  from that Hugging Face repository). OpenAI's own ``ViT-B-32.pt`` is a TorchScript archive, i.e. code,
  and is refused (pti never runs code from a weights file).
- ``pretrained=None``: random weights of the real architecture, for tests and offline demos only; edits
  made with it are meaningless (:attr:`Clip.random_weights`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"
#: where a person can download the default weights by hand
OPENAI_VITB32_PAGE = "https://huggingface.co/timm/vit_base_patch32_clip_224.openai"
OPENAI_VITB32_FILE = "open_clip_model.safetensors"
#: the one template of open_clip's 80 OpenAI ImageNet templates that StyleCLIP's list of 79 lacks
_NOT_IN_STYLECLIP = "a photo of many {}."


class ClipWeightsError(RuntimeError):
    """CLIP weights cannot be loaded (offline, missing or refused file)."""


def imagenet_templates() -> list[str]:
    """StyleCLIP's 79 prompt templates (``"a bad photo of a {}."`` ...): the OpenAI ImageNet templates
    shipped with open_clip, less ``"a photo of many {}."``, which StyleCLIP's list does not have."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t for t in (f("{}") for f in OPENAI_IMAGENET_TEMPLATES) if t != _NOT_IN_STYLECLIP]


@dataclass
class Clip:
    """A loaded CLIP model.

    Attributes:
        model: the open_clip model (eval mode, no gradients for its parameters).
        tokenizer: open_clip's tokenizer for it.
        name: open_clip model name (``"ViT-B-32"``).
        weights: where the weights came from (``"openai"``, a path, or ``"random"``).
        image_size: input side in pixels (224).
        mean, std: CLIP's normalisation, ``[3]`` each.
    """

    model: torch.nn.Module
    tokenizer: Any
    name: str
    weights: str
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def random_weights(self) -> bool:
        """True for a randomly initialised model: its edits are meaningless (tests and offline demos)."""
        return self.weights == "random"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def key(self) -> str:
        """The model's name for caches and files (``"ViT-B-32"``; ``"ViT-B-32/random"`` for random weights)."""
        return f"{self.name}/random" if self.random_weights else self.name

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, S, S]`` normalised CLIP input (differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"CLIP takes RGB images [N, 3, H, W], got {tuple(images.shape)}")
        x = (images.float().clamp(-1, 1) + 1) / 2
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False,
                              antialias=True)
        mean = self.mean.to(x.device)[None, :, None, None]
        std = self.std.to(x.device)[None, :, None, None]
        return (x - mean) / std

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings ``[N, D]`` of images ``[N, 3, H, W]`` in [-1, 1] (differentiable)."""
        feats = self.model.encode_image(self.preprocess(images).to(self.device))
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit CLIP text embeddings ``[len(texts), D]``."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @torch.no_grad()
    def encode_prompt(self, prompt: str, templates: Sequence[str] | None = None) -> torch.Tensor:
        """A prompt's embedding averaged over ``templates`` (default :func:`imagenet_templates`): each
        template's unit embedding, averaged, normalised again (StyleCLIP's ``zeroshot_classifier``). ``[D]``."""
        templates = imagenet_templates() if templates is None else list(templates)
        if not templates:
            raise ValueError("give at least one prompt template (e.g. '{}')")
        return F.normalize(self.encode_texts([t.format(prompt) for t in templates]).mean(dim=0), dim=0)


def local_weights_path(name: str = DEFAULT_MODEL) -> Path:
    """Where a downloaded-by-hand weights file is found without ``--clip-weights``:
    ``<pti cache>/clip/<name>/open_clip_model.safetensors`` (``$PTI_CACHE_DIR`` or ``~/.cache/pti``)."""
    from pti.zoo import cache_dir

    return cache_dir() / "clip" / name / OPENAI_VITB32_FILE


#: seed of the random CLIP (``--random-clip``: offline tests and notebook 06 without weights)
RANDOM_CLIP_SEED = 0


def _random_model(name: str) -> torch.nn.Module:
    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # open_clip logs "initialized randomly" as a warning
        try:
            # from a fixed seed on a forked RNG, as pti.core.perceptual's random backbones: the same random CLIP
            # in every process (each `pti edit` call), and the caller's RNG stream untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_CLIP_SEED)
                return open_clip.create_model(name, pretrained=None, force_quick_gelu=True)
        finally:
            logger.setLevel(level)


def _offline_message(name: str, pretrained: str, exc: BaseException) -> str:
    page = OPENAI_VITB32_PAGE if (name, pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED) else \
        f"open_clip's list of pretrained weights for {name} ({pretrained})"
    return (f"cannot download the CLIP weights {name} ({pretrained!r}): {type(exc).__name__}: {exc}. Are you "
            f"offline? Download {OPENAI_VITB32_FILE} from {page} and put it at {local_weights_path(name)}, or pass "
            f"its path with --clip-weights PATH (notebooks: clip_weights=PATH)")


def load_clip(name: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED, weights: str | Path | None = None,
              device: str | torch.device = "cpu") -> Clip:
    """Load CLIP ``name`` through open_clip.

    Args:
        name: open_clip model name (StyleCLIP: ``"ViT-B-32"``).
        pretrained: open_clip pretrained tag (``"openai"``) to download, or None for random weights.
        weights: a local state-dict file (safetensors or a torch file readable with ``weights_only``);
            overrides ``pretrained``.
        device: where to put the model.

    Raises:
        ClipWeightsError: offline, a missing file, or a TorchScript archive (refused: it is code).
    """
    import open_clip

    quick_gelu = pretrained == "openai" or weights is not None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ClipWeightsError(f"{path}: no such CLIP weights file; download {OPENAI_VITB32_FILE} from "
                                   f"{OPENAI_VITB32_PAGE} and pass its path")
        try:
            model = open_clip.create_model(name, pretrained=str(path), force_quick_gelu=quick_gelu)
        except Exception as exc:  # noqa: BLE001 - any failure here is the file's
            hint = (" It is a TorchScript archive (OpenAI's ViT-B-32.pt), which runs code; pti does not load "
                    "those." if "TorchScript" in str(exc) else "")
            raise ClipWeightsError(f"{path}: not a CLIP {name} state dict ({type(exc).__name__}: {exc}).{hint} "
                                   f"Use {OPENAI_VITB32_FILE} from {OPENAI_VITB32_PAGE}") from exc
        source = str(path)
    elif pretrained is None:
        model, source = _random_model(name), "random"
    elif pretrained == DEFAULT_PRETRAINED and local_weights_path(name).is_file():
        return load_clip(name, pretrained, weights=local_weights_path(name), device=device)
    else:
        try:
            model = open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=quick_gelu)
        except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
            raise ClipWeightsError(_offline_message(name, pretrained, exc)) from exc
        source = pretrained
    model = model.eval().requires_grad_(False).to(device)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), dtype=torch.float32)
    std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), dtype=torch.float32)
    return Clip(model=model, tokenizer=open_clip.get_tokenizer(name), name=name, weights=source, image_size=size,
                mean=mean, std=std)


__all__ = ["Clip", "ClipWeightsError", "load_clip", "local_weights_path", "imagenet_templates", "DEFAULT_MODEL", "DEFAULT_PRETRAINED"]
