"""Perceptual distance between image batches: real LPIPS, or a named offline fallback.

:func:`load_perceptual` returns a frozen :class:`PerceptualDistance` whose ``forward(x, y)``
takes two ``[N, C, H, W]`` float batches in ``[-1, 1]`` (RGB, C = 3, any H, W; gray images, C = 1,
have their channel repeated to RGB first, as the ImageNet backbones need three) and returns ``[N]``
distances (differentiable with respect to the inputs). ``.name`` says what it is:

- ``'lpips-alex'``, ``'lpips-vgg'``, ``'lpips-squeeze'``: LPIPS v0.1 (Zhang et al., CVPR 2018)
  from the ``lpips`` package. Its linear calibration layers ship in the package; the
  backbone is torchvision's ImageNet network, read from the torch hub cache
  (``torch.hub.get_dir()/checkpoints``) or downloaded there once. Images whose smaller side
  is below 32 px are bilinearly upsampled to 32 px first (the backbones need that much).
- ``'effnet-lite0-perceptual (offline fallback, not LPIPS)'``: used when the LPIPS backbone
  cannot be had (no cached file, download failed) and ``allow_fallback=True``; a warning says
  why. It is an LPIPS-style distance on a real pretrained network that a package ships
  (EfficientNet-Lite0, ImageNet, :mod:`pti.core.effnet_lite0`): for each of its 5 stage outputs
  (strides 2, 4, 8, 16, 32) the features are unit-normalised over channels, the squared
  difference is summed over channels and averaged over space, and the 5 stages are summed
  with equal weights (there are no learned per-channel weights, unlike LPIPS; its values are
  on a different scale from LPIPS and must not be compared with published LPIPS numbers).
- ``'lpips-<net> (random backbone: timing and tests only, not LPIPS)'``: ``net='random-alex'`` etc.; LPIPS's
  architecture and FLOPs with random backbone weights, so ``pti bench`` and the device check time LPIPS at its
  real cost where torchvision's weights cannot be had; never chosen by :func:`load_perceptual` on its own, and
  its values are never a quality figure.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

FALLBACK_NAME = "effnet-lite0-perceptual (offline fallback, not LPIPS)"
LPIPS_NETS = ("alex", "vgg", "squeeze")
#: smallest image side the LPIPS backbones accept; smaller inputs are upsampled to it
LPIPS_MIN_SIDE = 32
#: seconds to wait on the network when fetching a missing LPIPS backbone
DOWNLOAD_TIMEOUT_S = 20.0

# torchvision weight enum names for the LPIPS backbones (URLs are read from torchvision)
_TORCHVISION_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
# URLs whose download already failed in this process: not retried (each try costs seconds)
_FAILED_DOWNLOADS: dict[str, str] = {}


class PerceptualUnavailable(RuntimeError):
    """Real LPIPS cannot be loaded (backbone weights missing and not downloadable)."""


class PerceptualDistance(nn.Module):
    """Frozen perceptual distance: ``forward(x, y)`` with ``[N, C, H, W]`` in ``[-1, 1]`` -> ``[N]``
    (C = 3 RGB, or C = 1 gray: repeated to 3 channels).

    Always in eval mode (``train()`` is a no-op, so dropout in LPIPS never turns on) and
    all parameters have ``requires_grad=False``; gradients flow to the inputs.
    Attributes: ``name`` (short label), ``description`` (one sentence), ``is_lpips``.
    """

    name: str = ""
    description: str = ""
    is_lpips: bool = False

    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "PerceptualDistance":  # noqa: ARG002 - frozen on purpose
        return super().train(False)

    def _rgb_pair(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both batches as RGB ``[N, 3, H, W]`` (gray repeated); ``ValueError`` for other shapes."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"{self.name}: expected two [N, 3, H, W] (RGB) or [N, 1, H, W] (gray) batches of "
                             f"equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        return (x, y) if x.shape[1] == 3 else (x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1))

    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        """What :meth:`distance_to` needs of the fixed side ``y`` (``[N, C, H, W]`` in ``[-1, 1]``), computed
        once without gradients: a list of ``[N, ...]`` tensors (index each with the same photos to take a
        subset). This base version keeps ``y`` itself; subclasses keep their normalised backbone features,
        so a loop whose target never changes runs the backbone on the target once (as NVIDIA's projector
        does with its ``target_features``)."""
        return [y.detach()]

    def distance_to(self, x: torch.Tensor, target: list[torch.Tensor]) -> torch.Tensor:
        """``forward(x, y)`` for the ``y`` whose :meth:`target_features` are ``target``: ``[N]``."""
        return self(x, target[0])

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class LpipsDistance(PerceptualDistance):
    """LPIPS from the ``lpips`` package (a loaded ``lpips.LPIPS`` wrapped to return ``[N]``)."""

    def __init__(self, model: nn.Module, name: str, description: str, is_lpips: bool) -> None:
        super().__init__()
        self.model = model
        self.name, self.description, self.is_lpips = name, description, is_lpips
        self._freeze()

    @staticmethod
    def _min_side(x: torch.Tensor) -> torch.Tensor:
        """``x`` bilinearly upsampled so that its smaller side is at least :data:`LPIPS_MIN_SIDE`."""
        side = min(x.shape[-2:])
        if side >= LPIPS_MIN_SIDE:
            return x
        scale = LPIPS_MIN_SIDE / side
        size = [max(LPIPS_MIN_SIDE, round(s * scale)) for s in x.shape[-2:]]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = self._rgb_pair(x, y)
        x, y = self._min_side(x), self._min_side(y)
        return self.model(x, y).reshape(x.shape[0])

    def _unit_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's layer outputs of ``x``, each unit-normalised over channels (``lpips.LPIPS.forward``'s
        ``feats``)."""
        import lpips

        m = self.model
        return [lpips.normalize_tensor(f) for f in m.net.forward(m.scaling_layer(x))]

    def _cacheable(self) -> bool:
        m = self.model  # the configuration whose forward target_features/distance_to reproduce
        return m.version == "0.1" and m.lpips and not m.spatial

    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        if not self._cacheable():
            return super().target_features(y)
        y, _ = self._rgb_pair(y, y)
        with torch.no_grad():
            return self._unit_features(self._min_side(y))

    def distance_to(self, x: torch.Tensor, target: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS v0.1 of ``x`` against the cached target features: the same operations in the same order as
        ``lpips.LPIPS.forward`` (so the same bits), without the target's backbone pass."""
        if not self._cacheable():
            return super().distance_to(x, target)
        x, _ = self._rgb_pair(x, x)
        fx = self._unit_features(self._min_side(x))
        if len(fx) != len(target) or fx[0].shape != target[0].shape:
            raise ValueError(f"{self.name}: target features of {tuple(target[0].shape)} do not fit the image "
                             f"batch {tuple(x.shape)}")
        val = 0
        for lin, f, g in zip(self.model.lins, fx, target):
            val = val + lin((f - g) ** 2).mean([2, 3], keepdim=True)
        return val.reshape(x.shape[0])


class FeatureDistance(PerceptualDistance):
    """LPIPS-style distance on a backbone's ``features(x) -> list[[N, C_k, H_k, W_k]]``.

    ``d(x, y) = sum_k mean_{h,w} sum_c (f̂_k(x) - f̂_k(y))^2`` with ``f̂`` the features divided
    by their channel norm (+1e-10), equal weights over stages.
    """

    def __init__(self, backbone: nn.Module, name: str, description: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.name, self.description, self.is_lpips = name, description, False
        self._freeze()

    @staticmethod
    def _unit(f: torch.Tensor) -> torch.Tensor:
        return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = self._rgb_pair(x, y)
        n = x.shape[0]
        feats = self.backbone.features(torch.cat([x, y], dim=0))
        return self._sum_over_stages([self._unit(f[:n]) for f in feats], [self._unit(f[n:]) for f in feats])

    @staticmethod
    def _sum_over_stages(fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        total = fx[0].new_zeros(fx[0].shape[0])
        for a, b in zip(fx, fy):
            total = total + (a - b).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total

    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        y, _ = self._rgb_pair(y, y)
        with torch.no_grad():
            return [self._unit(f) for f in self.backbone.features(y)]

    def distance_to(self, x: torch.Tensor, target: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`forward` against cached target features. The backbone sees ``x`` alone instead of ``x`` and
        ``y`` in one batch, which may round differently (see tests/test_perceptual.py)."""
        x, _ = self._rgb_pair(x, x)
        return self._sum_over_stages([self._unit(f) for f in self.backbone.features(x)], target)


def _backbone_url(net: str) -> str:
    import torchvision.models as tvm

    return getattr(tvm, _TORCHVISION_WEIGHTS[net]).IMAGENET1K_V1.url


def backbone_cache_path(net: str) -> str:
    """Where torchvision keeps the ImageNet weights of LPIPS backbone ``net`` ('alex', 'vgg', 'squeeze')."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(_backbone_url(net)))


def ensure_lpips_backbone(net: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Make sure torchvision's ImageNet weights for ``net`` are in the torch hub cache.

    Returns the cached file's path. Downloads silently (``torch.hub.download_url_to_file``:
    checked against the sha256 prefix in the file name, renamed into place when complete; a
    socket timeout of ``timeout_s``) when missing; raises :class:`PerceptualUnavailable`
    naming the file and the URL when that fails. A failed download is not retried within
    the process.
    """
    from pti.zoo import socket_timeout

    path = backbone_cache_path(net)
    if os.path.isfile(path):
        return path
    url = _backbone_url(net)
    if url not in _FAILED_DOWNLOADS:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            prefix = torch.hub.HASH_REGEX.search(os.path.basename(path))
            with socket_timeout(timeout_s):
                torch.hub.download_url_to_file(url, path, hash_prefix=prefix.group(1) if prefix else None,
                                               progress=False)
        except Exception as exc:  # URLError, timeouts, HTTP and hash errors: all mean "unavailable"
            _FAILED_DOWNLOADS[url] = f"{type(exc).__name__}: {exc}"
    if os.path.isfile(path):
        return path
    raise PerceptualUnavailable(
        f"{path}: LPIPS-{net} needs torchvision's ImageNet backbone weights, which are not cached and "
        f"could not be downloaded from {url} ({_FAILED_DOWNLOADS.get(url, 'unknown error')}). "
        f"Download that file to {path} on a machine with internet, or allow the offline fallback.")


#: seed of the random backbones (``random-alex``, ``random-vgg``, ``random-squeeze``)
RANDOM_BACKBONE_SEED = 0


def _load_lpips(net: str, random_backbone: bool, device: str | torch.device) -> LpipsDistance:
    import lpips

    with warnings.catch_warnings():
        # the lpips package calls torchvision with the deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        # A random backbone is drawn from a fixed seed on a forked RNG: the same weights in every process (a
        # subprocess of a test or a torchrun worker gets the parent's), and the caller's RNG stream untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_BACKBONE_SEED)
            model = lpips.LPIPS(net=net, pnet_rand=random_backbone, verbose=False)
    if random_backbone:
        name = f"lpips-{net} (random backbone: timing and tests only, not LPIPS)"
        desc = (f"LPIPS v0.1 calibration layers on a RANDOMLY initialised {net} backbone; "
                "not a perceptual metric, for exercising code paths only")
        return LpipsDistance(model, name, desc, is_lpips=False).to(device)
    desc = f"LPIPS v0.1 (Zhang et al. 2018) with torchvision's ImageNet {net} backbone"
    return LpipsDistance(model, f"lpips-{net}", desc, is_lpips=True).to(device)


def load_fallback(device: str | torch.device = "cpu") -> FeatureDistance:
    """The offline fallback distance on the shipped ImageNet EfficientNet-Lite0 (see module doc)."""
    from pti.core.effnet_lite0 import load_efficientnet_lite0

    desc = ("LPIPS-style distance on ImageNet EfficientNet-Lite0 features (5 stages, unit-normalised "
            "channels, equal weights, no learned calibration); not LPIPS, values not comparable with LPIPS")
    return FeatureDistance(load_efficientnet_lite0(pretrained=True), FALLBACK_NAME, desc).to(device)


def load_perceptual(net: str = "alex", device: str | torch.device = "cpu",
                    allow_fallback: bool = True) -> PerceptualDistance:
    """A frozen perceptual distance (see the module doc for what each ``.name`` means).

    ``net``: ``'alex'`` (the PTI paper's choice), ``'vgg'`` or ``'squeeze'`` for real LPIPS;
    ``'effnet-lite0'`` for the fallback on purpose (no warning); ``'random-alex'``,
    ``'random-vgg'``, ``'random-squeeze'`` for LPIPS on a random backbone (timing stand-ins and tests).
    When real LPIPS is asked for but its backbone weights cannot be had, returns the
    EfficientNet-Lite0 fallback with a warning (``allow_fallback=True``) or raises
    :class:`PerceptualUnavailable` (``allow_fallback=False``).
    """
    if net == "effnet-lite0":
        return load_fallback(device)
    if net.startswith("random-") and net[len("random-"):] in LPIPS_NETS:
        return _load_lpips(net[len("random-"):], random_backbone=True, device=device)
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown perceptual network {net!r}; choose one of "
                         f"{', '.join(LPIPS_NETS)}, effnet-lite0, random-alex, random-vgg, random-squeeze")
    try:
        ensure_lpips_backbone(net)
    except PerceptualUnavailable as exc:
        if not allow_fallback:
            raise
        warnings.warn(f"{exc} Using {FALLBACK_NAME!r} instead: its values are not LPIPS.", RuntimeWarning,
                      stacklevel=2)
        return load_fallback(device)
    return _load_lpips(net, random_backbone=False, device=device)


def describe(perceptual: PerceptualDistance) -> str:
    """One line for logs and reports: ``name: description``."""
    return f"{perceptual.name}: {perceptual.description}"
