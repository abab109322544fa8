"""Offline attribute scores for generated faces, from dlib's 68 facial landmarks.

Used to fit InterFaceGAN boundaries without a labelled data set. The image is resized so
its side is ``resize_to`` pixels (64 px generator output is far below what dlib's HOG
detector handles), padded on every side by ``pad_fraction`` of its size with replicated
edge pixels (generated faces are cropped tightly; the detector needs some margin around
the face), and searched with dlib's frontal HOG detector; the largest detection is fitted
with the 68-point shape predictor (iBUG numbering, 0-based below). An image without a
detected face scores NaN on every attribute.

Scores (all dimensionless, invariant to image scale and in-plane rotation):

- ``yaw``: let ``u`` be the unit vector from the centre of the image-left eye (points
  36-41) to that of the image-right eye (42-47); ``a = (p30 - p0)·u`` and
  ``b = (p16 - p30)·u`` are the distances along ``u`` from the jaw's left end (p0) to
  the nose tip (p30) and from the nose tip to the jaw's right end (p16).
  ``yaw = (a - b) / (a + b)`` in about [-1, 1]: 0 for a frontal face, positive when the
  nose tip sits nearer the image-right contour, i.e. the head is turned towards the image's
  right side (the subject's left).
- ``smile``: mouth width ``|p54 - p48|`` (outer corners) over the inter-ocular distance
  (between the two eye centres); about 0.8 neutral, larger when smiling.
- ``mouth_open``: mean inner-lip gap ``(|p61-p67| + |p62-p66| + |p63-p65|) / 3`` over the
  mouth width; 0 for a closed mouth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

ATTRIBUTES = ("yaw", "smile", "mouth_open")


def scores_from_landmarks(points: np.ndarray) -> dict[str, float]:
    """The three scores (see the module docstring) from one ``[68, 2]`` landmark array (x, y)."""
    p = points.astype(np.float64)
    left_eye, right_eye = p[36:42].mean(0), p[42:48].mean(0)
    inter_ocular = float(np.linalg.norm(right_eye - left_eye))
    u = (right_eye - left_eye) / max(inter_ocular, 1e-9)
    a = float((p[30] - p[0]) @ u)
    b = float((p[16] - p[30]) @ u)
    mouth_width = float(np.linalg.norm(p[54] - p[48]))
    gap = float(np.mean([np.linalg.norm(p[61] - p[67]), np.linalg.norm(p[62] - p[66]),
                         np.linalg.norm(p[63] - p[65])]))
    return {"yaw": (a - b) / (a + b) if abs(a + b) > 1e-9 else float("nan"),
            "smile": mouth_width / max(inter_ocular, 1e-9),
            "mouth_open": gap / max(mouth_width, 1e-9)}


@dataclass
class LandmarkScorer:
    """Scores images with dlib landmarks; create once and call on batches.

    Args:
        resize_to: side, in pixels, the image is resized to before padding.
        pad_fraction: margin added on each side, as a fraction of ``resize_to``.
        upsample: dlib detector pyramid upsampling (0 is right for ``resize_to=128``).
    """

    resize_to: int = 128
    pad_fraction: float = 0.5
    upsample: int = 0

    def __post_init__(self) -> None:
        from pti.alignment import face_detector, shape_predictor  # dlib, loaded once per process

        self._detector = face_detector()
        self._predictor = shape_predictor("68")

    def _prepare(self, images: torch.Tensor) -> tuple[np.ndarray, float, int]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = images.detach().float().cpu()
        factor = self.resize_to / x.shape[-1]
        x = F.interpolate(x, size=(round(x.shape[-2] * factor), self.resize_to), mode="bicubic",
                          align_corners=False, antialias=factor < 1)
        pad = round(self.pad_fraction * self.resize_to)
        if pad:
            x = F.pad(x, [pad] * 4, mode="replicate")
        arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return np.ascontiguousarray(arr), factor, pad

    def landmarks(self, images: torch.Tensor) -> np.ndarray:
        """``[N, 68, 2]`` float landmark (x, y) in the input images' pixel coordinates; NaN
        rows for images where no face was detected."""
        arr, factor, pad = self._prepare(images)
        out = np.full((arr.shape[0], 68, 2), np.nan)
        for i, img in enumerate(arr):
            faces = self._detector(img, self.upsample)
            if len(faces) == 0:
                continue
            face = max(faces, key=lambda r: r.width() * r.height())
            shape = self._predictor(img, face)
            pts = np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], dtype=np.float64)
            out[i] = (pts - pad) / factor
        return out

    def __call__(self, images: torch.Tensor, attributes: Sequence[str] = ATTRIBUTES) -> dict[str, torch.Tensor]:
        """``{attribute: [N] float32}`` for images ``[N, 3, H, W]`` in [-1, 1]; NaN where no face."""
        unknown = set(attributes) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown attributes {sorted(unknown)}; available: {list(ATTRIBUTES)}")
        points = self.landmarks(images)
        scores = {a: torch.full([points.shape[0]], float("nan")) for a in attributes}
        for i, p in enumerate(points):
            if np.isnan(p).any():
                continue
            s = scores_from_landmarks(p)
            for a in attributes:
                scores[a][i] = s[a]
        return scores
