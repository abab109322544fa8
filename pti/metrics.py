"""Reconstruction metrics for image batches.

Every metric takes two ``[N, C, H, W]`` float batches in ``[-1, 1]`` (RGB, C = 3, or gray, C = 1, for
grayscale generators; any H, W; same shape) and returns a ``[N]`` float tensor, one value per image
pair. MSE, PSNR and MS-SSIM average over the channels there are; the perceptual distance and the
identity similarity repeat a gray channel to RGB first (their networks take RGB):

- :func:`evaluate`: the metrics row, a dict of floats (batch means of the metrics below), that every report uses:
  ``pti run``'s metrics.json, ``pti demo``'s table, the notebooks and ``pti bench``.
- :func:`mse`: mean squared error on the ``[0, 1]`` range (images clamped to ``[-1, 1]``, as an
  image file shows them, and mapped by ``(x + 1) / 2``, i.e. 1/4 of the MSE in the library's
  ``[-1, 1]`` units); lower is better. Generator outputs are not bounded: without the clamp a
  diverged output (values ~1e6) would report an MSE of 1e12, far outside the range's maximum of 1.
- :func:`psnr`: peak signal-to-noise ratio in dB on the ``[0, 1]`` range,
  ``10 log10(1 / mse)``; higher is better (``inf`` for identical images).
- :func:`ms_ssim`: multi-scale SSIM (Wang et al. 2003) on the ``[0, 1]`` range (clamped too), Gaussian
  window 11 / sigma 1.5, the standard 5 scale weights. Images whose smaller side is at
  least 161 px go to the ``pytorch-msssim`` package unchanged. Smaller images cannot have 5
  scales with an 11-px window, so they use the largest number of scales ``k`` with
  ``min(H, W) > 10 * 2**(k - 1)`` (64 px: 3 scales, 16 px: 1 scale, i.e. plain SSIM), the first
  ``k`` standard weights renormalised to sum to 1, and (below 11 px) a smaller odd window;
  this is computed here, in float64, with the same formulas as the package (the tests
  check that it equals the package at 5 scales and scikit-image's SSIM at 1 scale). The
  package runs in float32, which costs ~1e-4 of precision on flat images.
  :func:`ms_ssim_scales` says how many scales an image size gets: report it with the value.
- :func:`perceptual_distance`: :mod:`pti.core.perceptual` (real LPIPS when its backbone weights are
  available, otherwise the named EfficientNet-Lite0 fallback; ``.name`` says which).
- :func:`identity_similarity`: cosine similarity of the 128-D face descriptors of dlib's
  ResNet face recognition model (``dlib_face_recognition_resnet_model_v1.dat``, public domain,
  from ``face-recognition-models``), an offline stand-in for the CurricularFace identity
  metric of the PTI paper; values are not comparable with CurricularFace numbers. dlib's
  descriptors share a large common component, so different people still score high:
  on the test photos, the same person (noise, blur, 64 px) gives >= 0.99 and two different
  women 0.88 (dlib's own "same person" rule, Euclidean distance < 0.6, corresponds to a
  cosine of about 0.91 at these descriptor norms, ~1.4).
"""
from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from pti.core.perceptual import PerceptualDistance, load_perceptual

#: the MS-SSIM scale weights of Wang et al. (2003)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WINDOW = 11
MS_SSIM_SIGMA = 1.5
#: face box (left, top, right, bottom, as fractions of the side) dlib's detector gives on
#: FFHQ-aligned crops (measured on the aligned test photos at 64-1024 px); used by
#: identity_similarity when no face is detected
ALIGNED_FACE_BOX = (0.22, 0.33, 0.78, 0.88)
IDENTITY_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
IDENTITY_MIN_SIDE = 256


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected two [N, 3, H, W] (RGB) or [N, 1, H, W] (gray) batches of equal "
                         f"shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def to_unit_range(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[-1, 1]`` images -> ``[0, 1]``, values outside ``[-1, 1]`` clamped first (as saving the image does)."""
    return (x.detach().to(dtype).clamp(-1, 1) + 1) / 2


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image on the ``[0, 1]`` range (inputs in ``[-1, 1]``, clamped to it): ``[N]``
    in ``[0, 1]``."""
    _check_pair(x, y, "mse")
    return (to_unit_range(x) - to_unit_range(y)).pow(2).mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, defined on the ``[0, 1]`` range (peak 1; inputs clamped to ``[-1, 1]``): ``[N]``,
    at least 0 dB."""
    _check_pair(x, y, "psnr")
    return 10.0 * torch.log10(1.0 / mse(x, y))


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales :func:`ms_ssim` uses for an image of this size (5 from 161 px)."""
    side = min(height, width)
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side > (MS_SSIM_WINDOW - 1) * 2 ** scales:
        scales += 1
    return scales


def _gaussian_window(size: int, sigma: float, channels: int, dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).to(dtype=dtype, device=device)
    return g.view(1, 1, 1, size).repeat(channels, 1, 1, 1)


def _blur_valid(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, win, groups=c)                      # along width
    return F.conv2d(x, win.transpose(2, 3), groups=c)   # along height


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean SSIM and contrast-structure terms, ``[N, C]`` each ([0, 1] data)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = _blur_valid(x, win), _blur_valid(y, win)
    var_x = _blur_valid(x * x, win) - mu_x ** 2
    var_y = _blur_valid(y * y, win) - mu_y ** 2
    cov = _blur_valid(x * y, win) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _ms_ssim_reduced(x01: torch.Tensor, y01: torch.Tensor, scales: int) -> torch.Tensor:
    side = min(x01.shape[-2:])
    win_size = MS_SSIM_WINDOW if side >= MS_SSIM_WINDOW else max(1, side - (1 - side % 2))
    win = _gaussian_window(win_size, MS_SSIM_SIGMA, x01.shape[1], x01.dtype, x01.device)
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x01.dtype, device=x01.device)
    weights = weights / weights.sum()
    terms = []
    for level in range(scales):
        ssim_c, cs_c = _ssim_and_cs(x01, y01, win)
        if level < scales - 1:
            terms.append(torch.relu(cs_c))
            pad = [s % 2 for s in x01.shape[2:]]
            x01 = F.avg_pool2d(x01, kernel_size=2, padding=pad)
            y01 = F.avg_pool2d(y01, kernel_size=2, padding=pad)
    terms.append(torch.relu(ssim_c))
    stacked = torch.stack(terms, dim=0)  # [scales, N, C]
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(dim=1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image on the ``[0, 1]`` range (inputs clamped to ``[-1, 1]``): ``[N]`` float32 in ``[0, 1]``
    (higher is better; not differentiable: an evaluation metric).

    5 scales via ``pytorch_msssim`` when ``min(H, W) >= 161``; fewer scales otherwise (see the
    module doc and :func:`ms_ssim_scales`).
    """
    _check_pair(x, y, "ms_ssim")
    scales = ms_ssim_scales(*x.shape[-2:])
    if scales == len(MS_SSIM_WEIGHTS):
        from pytorch_msssim import ms_ssim as package_ms_ssim

        # float32 as the package is normally used (float64 is ~5x slower on CPU); its
        # variances E[x^2] - E[x]^2 lose ~1e-4 of SSIM to rounding on flat regions
        x01, y01 = to_unit_range(x), to_unit_range(y)
        value = package_ms_ssim(x01, y01, data_range=1.0, size_average=False, win_size=MS_SSIM_WINDOW,
                                win_sigma=MS_SSIM_SIGMA, weights=list(MS_SSIM_WEIGHTS))
    else:  # small images: cheap, so float64 (no rounding loss)
        value = _ms_ssim_reduced(to_unit_range(x, torch.float64), to_unit_range(y, torch.float64), scales)
    return value.float()


@functools.lru_cache(maxsize=None)
def _default_perceptual(net: str, device: str) -> PerceptualDistance:
    return load_perceptual(net, device=device)


def perceptual_distance(x: torch.Tensor, y: torch.Tensor, perceptual: PerceptualDistance | None = None,
                        net: str = "alex") -> torch.Tensor:
    """Perceptual distance per image ``[N]`` (lower is better).

    ``perceptual``: a loaded :class:`pti.core.perceptual.PerceptualDistance`; by default
    ``load_perceptual(net)`` once per process and device (LPIPS, or the named fallback with a
    warning). Report ``perceptual.name`` (or :func:`perceptual_name`) with the values.
    """
    _check_pair(x, y, "perceptual_distance")
    p = perceptual if perceptual is not None else _default_perceptual(net, str(x.device))
    with torch.no_grad():
        return p(x.float(), y.float())


def perceptual_name(net: str = "alex", device: str = "cpu") -> str:
    """The ``.name`` of the distance :func:`perceptual_distance` uses by default."""
    return _default_perceptual(net, device).name


@functools.lru_cache(maxsize=None)
def _face_recognizer():
    import dlib

    from pti.alignment import dlib_model_path

    return dlib.face_recognition_model_v1(dlib_model_path(IDENTITY_MODEL_FILE))


def _face_descriptor(img: np.ndarray, on_no_face: str) -> np.ndarray:
    """128-D dlib descriptor of the best face in an ``[H, W, 3]`` uint8 image (see identity_similarity)."""
    import dlib
    from PIL import Image

    from pti.alignment import face_detector, shape_predictor

    h, w = img.shape[:2]
    if min(h, w) < IDENTITY_MIN_SIDE:  # small generator outputs: dlib's detector needs ~80 px faces
        s = IDENTITY_MIN_SIDE / min(h, w)
        img = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.BICUBIC))
        h, w = img.shape[:2]
    img = np.ascontiguousarray(img)
    rects, scores, _ = face_detector().run(img, 1, 0.0)
    if rects:
        rect = max(zip(rects, scores), key=lambda rs: rs[1])[0]
    elif on_no_face == "nan":
        return np.full(128, np.nan)
    else:
        l, t, r, b = ALIGNED_FACE_BOX
        rect = dlib.rectangle(round(l * w), round(t * h), round(r * w), round(b * h))
    shape = shape_predictor("5")(img, rect)
    return np.asarray(_face_recognizer().compute_face_descriptor(img, shape), dtype=np.float64)


#: how many face descriptors :func:`identity_similarity` remembers (128 floats each; keyed by the 8-bit image's sha1)
DESCRIPTOR_CACHE_SIZE = 64
_descriptors: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _cached_face_descriptor(img: np.ndarray, on_no_face: str) -> np.ndarray:
    """:func:`_face_descriptor`, remembered for the last :data:`DESCRIPTOR_CACHE_SIZE` images: the target photo
    is described once when several reconstructions of it are scored (``pti compare``: one per method and edit),
    which halves dlib's time (~2.5 s per pair at 1024 px on one core)."""
    key = (hashlib.sha1(img.tobytes()).hexdigest(), img.shape, on_no_face)
    found = _descriptors.get(key)
    if found is None:
        found = _descriptors[key] = _face_descriptor(img, on_no_face)
        while len(_descriptors) > DESCRIPTOR_CACHE_SIZE:
            _descriptors.popitem(last=False)
    else:
        _descriptors.move_to_end(key)
    return found.copy()


def identity_similarity(x: torch.Tensor, y: torch.Tensor,
                        on_no_face: Literal["aligned-box", "nan"] = "aligned-box") -> torch.Tensor:
    """Cosine similarity of dlib face descriptors per image pair: ``[N]`` in ``[-1, 1]`` (higher = same person).

    Each image is converted to 8 bits, upsampled (bicubic) so its smaller side is at least
    256 px, searched with dlib's HOG detector (best score), landmarked with the 5-point model
    and described by dlib's ResNet (which makes its own 150 px aligned chip). When no face
    is found, ``on_no_face='aligned-box'`` assumes an FFHQ-aligned crop and uses
    :data:`ALIGNED_FACE_BOX`; ``'nan'`` gives NaN for that pair. Gray images are repeated to RGB (dlib's
    detector and ResNet take RGB).
    """
    from pti.images import to_channels, to_uint8_array

    _check_pair(x, y, "identity_similarity")
    if on_no_face not in ("aligned-box", "nan"):
        raise ValueError(f"on_no_face must be 'aligned-box' or 'nan', got {on_no_face!r}")
    out = []
    for xi, yi in zip(to_channels(x, 3), to_channels(y, 3)):
        a = _cached_face_descriptor(to_uint8_array(xi), on_no_face)
        b = _cached_face_descriptor(to_uint8_array(yi), on_no_face)
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        out.append(float(np.dot(a, b) / denom) if denom > 0 else math.nan)
    return torch.tensor(out, dtype=torch.float32)


#: an identity model: ``(x, y) -> [N]`` similarity of the faces in two ``[N, C, H, W]`` batches in ``[-1, 1]``
IdentityModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _metric_tensors(x: torch.Tensor, y: torch.Tensor, perceptual: Callable | None, identity: IdentityModel | None,
                    net: str) -> dict[str, torch.Tensor]:
    """Every metric per image pair, ``[N]`` each (the keys of :func:`evaluate`)."""
    _check_pair(x, y, "evaluate")
    x, y = x.detach().float(), y.detach().float()
    values = {"mse": mse(x, y), "psnr": psnr(x, y), "ms_ssim": ms_ssim(x, y),
              "perceptual": perceptual_distance(x, y, perceptual, net).float()}
    if identity is not None:
        with torch.no_grad():
            values["identity"] = identity(x, y).float()
    return values


def evaluate(image: torch.Tensor, target: torch.Tensor, *, perceptual: Callable | None = None,
             identity: IdentityModel | None = None, net: str = "alex") -> dict[str, float]:
    """The reconstruction metrics row of ``image`` against ``target``: what ``pti run`` (metrics.json),
    ``pti demo`` (its table), the notebooks and ``pti bench`` report, built here only.

    Args:
        image, target: ``[N, C, H, W]`` float batches in ``[-1, 1]``, same shape (C = 3 RGB, or 1 gray).
            Generator outputs may leave ``[-1, 1]``: MSE, PSNR and MS-SSIM clamp them to it first (as the
            saved PNG shows them) and work on ``(x + 1) / 2`` in ``[0, 1]``; the perceptual distance and
            the identity model get the images unclamped, as they are.
        perceptual: ``(x, y) -> [N]`` distance, e.g. :class:`pti.core.perceptual.PerceptualDistance` or
            :class:`pti.core.losses.PerceptualLoss`; None: ``load_perceptual(net)``, once per process and device.
            Report its ``.name`` with the values.
        identity: ``(x, y) -> [N]`` identity similarity, e.g. :func:`identity_similarity` (dlib ResNet
            cosine); None leaves the ``identity`` key out.

    Returns:
        Batch means as floats (an ``N = 1`` batch gives the image's own values):
        ``mse`` on ``[0, 1]`` (1/4 of the MSE in ``[-1, 1]`` units; lower is better), ``psnr`` in dB with
        peak 1 (``10 log10(1 / mse)``, >= 0, ``inf`` for identical images), ``ms_ssim`` in ``[0, 1]``
        (Wang et al. 2003; :func:`ms_ssim_scales` scales), ``perceptual`` in the distance's own units
        (LPIPS, Zhang et al. 2018, or the named fallback), and ``identity`` in ``[-1, 1]`` when
        ``identity`` is given. No gradients are kept.

    Raises:
        ValueError: the batches differ in shape or are not ``[N, 1 | 3, H, W]``.
    """
    values = _metric_tensors(image, target, perceptual, identity, net)
    return {key: float(value.mean()) for key, value in values.items()}


def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor, perceptual: PerceptualDistance | None = None,
                           identity: bool = True) -> dict[str, object]:
    """:func:`evaluate`'s metrics per image, JSON-ready: lists of per-image floats plus the names that
    qualify them (``ms_ssim_scales``, ``perceptual_name``, ``identity_model``)."""
    p = perceptual if perceptual is not None else _default_perceptual("alex", str(x.device))
    values = _metric_tensors(x, y, p, identity_similarity if identity else None, "alex")
    result: dict[str, object] = {
        "mse": values["mse"].tolist(),
        "psnr_db": values["psnr"].tolist(),
        "ms_ssim": values["ms_ssim"].tolist(),
        "ms_ssim_scales": ms_ssim_scales(*x.shape[-2:]),
        "perceptual": values["perceptual"].tolist(),
        "perceptual_name": p.name,
    }
    if identity:
        result["identity_similarity"] = values["identity"].tolist()
        result["identity_model"] = "dlib_face_recognition_resnet_model_v1 (cosine)"
    return result
