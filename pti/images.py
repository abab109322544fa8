"""Image files <-> tensors, and labelled figure grids.

Inside the library an image is a float tensor ``[N, C, H, W]`` (or ``[C, H, W]``) in
``[-1, 1]``: RGB (``C = 3``), or gray (``C = 1``) for a grayscale generator (``img_channels=1``;
:func:`to_channels` converts). This module is the one place where files are read and written:

- :func:`open_rgb` reads any file Pillow can open (or a PIL image / numpy array) as an
  8-bit RGB PIL image: EXIF orientation applied; grayscale, palette, 1-bit, 16-bit
  (``I;16``, ``I``), float (``F``), CMYK (through its ICC profile when it has one),
  YCbCr/LAB/HSV converted; transparency (RGBA, LA, PA, palette with transparency)
  composited over white.
- :func:`read_image` gives the ``[1, 3, H, W]`` tensor (``[1, 1, H, W]`` with ``channels=1``),
  :func:`write_image` writes one (atomically: temporary name, then rename; gray as an 8-bit ``L`` file).
- :func:`save_grid` writes a PNG grid of images with row and column labels for figures.
- :func:`save_png` writes a PIL image as PNG (atomically), optionally with PNG text chunks.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps

from pti.io_utils import atomic_path

#: file suffixes treated as images by folder-walking commands
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageReadError(ValueError):
    """A file could not be read as an image (the message names the file)."""


def _array_to_pil(array: np.ndarray, name: str) -> Image.Image:
    """``[H, W]``, ``[H, W, 1|3|4]`` uint8 / uint16 / float (0..1) array -> PIL image."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageReadError(f"{name}: expected an [H, W], [H, W, 3] or [H, W, 4] array, got shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a.astype(np.float64) / 257.0).round()
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64) * 255.0
    elif a.dtype == np.bool_:
        a = a.astype(np.float64) * 255.0
    a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer / float single-channel image -> 8-bit ``L`` (full range kept)."""
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        a = a / 257.0
    elif img.mode == "I":
        a = a / 257.0 if a.max(initial=0) > 255 else a
    elif img.mode == "F":
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
    return Image.fromarray(np.clip(a.round(), 0, 255).astype(np.uint8))


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            return ImageCms.profileToProfile(img, io.BytesIO(icc), ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # a broken or unsupported profile: fall back to Pillow's plain conversion
            pass
    return img.convert("RGB")


def _to_rgb8(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_l(img).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(source: ImageSource, name: str | None = None) -> Image.Image:
    """Any image file, PIL image or numpy array -> 8-bit RGB PIL image, EXIF orientation applied.

    ``name`` is used in error messages (defaults to the path, or ``'<image>'``).
    Raises :class:`ImageReadError` naming the file when it cannot be read.
    """
    if isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        try:
            with Image.open(source) as opened:
                img = ImageOps.exif_transpose(opened)  # a loaded copy, rotated/flipped per EXIF
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageReadError(f"{name}: cannot read as an image ({exc}); check the file") from exc
    elif isinstance(source, Image.Image):
        img = ImageOps.exif_transpose(source)
    elif isinstance(source, np.ndarray):
        img = _array_to_pil(source, name or "<array>")
    else:
        raise TypeError(f"expected a path, PIL image or numpy array, got {type(source).__name__}")
    return _to_rgb8(img)


#: luma weights of ITU-R BT.601 (R, G, B), as Pillow's ``convert('L')``
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``[..., C, H, W]`` with C in (1, 3) -> the same images with ``channels`` (1 or 3) channels.

    RGB -> gray is the BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (:data:`LUMA_WEIGHTS`, Pillow's
    ``convert('L')``; linear, so it applies to ``[-1, 1]`` values as to ``[0, 255]``); gray -> RGB
    repeats the channel. Unchanged when C already equals ``channels``. Raises ``ValueError`` otherwise.
    """
    if channels not in (1, 3) or x.ndim < 3 or x.shape[-3] not in (1, 3):
        raise ValueError(f"can convert [.., 1 or 3, H, W] images to 1 or 3 channels, got shape {tuple(x.shape)} "
                         f"-> {channels} channels")
    if x.shape[-3] == channels:
        return x
    if channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def pil_to_tensor(img: Image.Image, channels: int = 3) -> torch.Tensor:
    """8-bit PIL image (any mode :func:`open_rgb` reads) -> ``[1, channels, H, W]`` float32 in ``[-1, 1]``
    (``channels``: 3 for RGB, 1 for gray, see :func:`to_channels`)."""
    a = np.asarray(_to_rgb8(img), dtype=np.float32)
    return to_channels(torch.from_numpy(a.copy()).permute(2, 0, 1)[None] / 127.5 - 1.0, channels)


def read_image(source: ImageSource, size: int | tuple[int, int] | None = None, channels: int = 3) -> torch.Tensor:
    """Read an image as ``[1, channels, H, W]`` float32 in ``[-1, 1]`` (``channels=1``: gray, BT.601 luma).

    ``size`` (an int for a square, or ``(height, width)``) resizes with Lanczos filtering.
    """
    img = open_rgb(source)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        img = img.resize((w, h), Image.LANCZOS)
    return pil_to_tensor(img, channels)


def to_uint8_array(x: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` or ``[1, C, H, W]`` tensor in ``[-1, 1]`` -> uint8 array (clamped, rounded):
    ``[H, W, 3]`` for RGB (C = 3), ``[H, W]`` for gray (C = 1)."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a [3, H, W] (RGB) or [1, H, W] (gray) image tensor, got shape {tuple(x.shape)}")
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """``[C, H, W]`` or ``[1, C, H, W]`` tensor in ``[-1, 1]`` -> PIL image: RGB (C = 3) or ``L`` (C = 1)."""
    return Image.fromarray(to_uint8_array(x))


def _pil_format(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
               ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM"}
    if suffix not in formats:
        raise ValueError(f"{path}: unknown image suffix {suffix!r}; use one of {', '.join(sorted(formats))}")
    return formats[suffix]


def save_pil(img: Image.Image, path: str | os.PathLike) -> None:
    """Write a PIL image atomically; the format follows the suffix (JPEG at quality 95)."""
    path = Path(path)
    fmt = _pil_format(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def write_image(x: torch.Tensor | Image.Image, path: str | os.PathLike) -> None:
    """Write a ``[3, H, W]`` / ``[1, 3, H, W]`` tensor in ``[-1, 1]`` (or a PIL image) atomically."""
    save_pil(x if isinstance(x, Image.Image) else tensor_to_pil(x), path)


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _as_cells(row: torch.Tensor | Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    if isinstance(row, torch.Tensor):
        if row.ndim == 3:
            return [row]
        return [img for img in row]
    return [None if img is None else (img[0] if img.ndim == 4 else img) for img in row]


@dataclass(frozen=True)
class GridSection:
    """One block of a figure made by :func:`save_sections`: rows of images with their own labels.

    ``rows``, ``row_labels`` and ``col_labels`` as in :func:`save_grid`; ``heading``: an optional
    line of text above the block.
    """

    rows: Sequence[torch.Tensor | Sequence[torch.Tensor | None]]
    row_labels: Sequence[str] | None = None
    col_labels: Sequence[str] | None = None
    heading: str | None = None


def _label_width(labels: Sequence[str] | None, font: ImageFont.ImageFont, pad: int) -> int:
    if not labels:
        return 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return max(_text_size(probe, s, font)[0] for s in labels) + 2 * pad


@dataclass(frozen=True)
class _GridLayout:
    """Where :func:`render_grid` puts things: the font, the label column's width, the heights of the title
    and of the column labels, the square cell's side and the canvas size (pixels)."""

    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    label_w: int
    title_h: int
    col_h: int
    cell: int
    pad: int
    width: int
    height: int


def _grid_layout(n_rows: int, n_cols: int, cell_size: int, row_labels: Sequence[str] | None,
                 col_labels: Sequence[str] | None, title: str | None, pad: int, font_size: int | None,
                 label_width: int | None) -> _GridLayout:
    font = _label_font(font_size or max(10, min(28, cell_size // 10)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = _label_width(row_labels, font, pad) if label_width is None else int(label_width)
    col_h = max((_text_size(probe, s, font)[1] for s in col_labels or []), default=0)
    col_h = col_h + 2 * pad if col_labels else 0
    title_w, title_h = _text_size(probe, title, font) if title else (0, 0)
    title_h = title_h + 2 * pad if title else 0
    return _GridLayout(font, label_w, title_h, col_h, cell_size, pad,  # wide enough for the whole title
                       width=max(label_w + n_cols * (cell_size + pad) + pad, title_w + 2 * pad),
                       height=title_h + col_h + n_rows * (cell_size + pad) + pad)


def grid_size(n_rows: int, n_cols: int, cell_size: int, row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, title: str | None = None, pad: int = 4,
              font_size: int | None = None) -> tuple[int, int]:
    """``(width, height)`` in pixels of the grid :func:`render_grid` makes of ``n_rows`` x ``n_cols`` cells of
    ``cell_size`` pixels with these labels and title, without any image (e.g. to compare with an existing file
    before rendering)."""
    layout = _grid_layout(n_rows, n_cols, int(cell_size), row_labels, col_labels, title, pad, font_size, None)
    return layout.width, layout.height


def render_grid(rows: Sequence[torch.Tensor | Sequence[torch.Tensor | None]],
                row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                cell_size: int | None = None, title: str | None = None, pad: int = 4,
                font_size: int | None = None, label_width: int | None = None, what: str = "grid") -> Image.Image:
    """The image :func:`save_grid` writes, without writing it (its size: :func:`grid_size`). ``label_width``:
    pixels reserved for the row labels (default: the widest label), so that blocks stacked by
    :func:`save_sections` align. Raises ``ValueError`` (naming ``what``) for no image or label counts that do
    not match the rows/columns."""
    cells = [_as_cells(r) for r in rows]
    if not cells or not any(c is not None for r in cells for c in r):
        raise ValueError(f"{what}: save_grid needs at least one image")
    n_cols = max(len(r) for r in cells)
    if row_labels is not None and len(row_labels) != len(cells):
        raise ValueError(f"{what}: {len(row_labels)} row labels for {len(cells)} rows")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"{what}: {len(col_labels)} column labels for {n_cols} columns")
    first = next(c for r in cells for c in r if c is not None)
    layout = _grid_layout(len(cells), n_cols, int(cell_size or first.shape[-2]), row_labels, col_labels, title, pad,
                          font_size, label_width)
    font, label_w, size, top = layout.font, layout.label_w, layout.cell, layout.title_h + layout.col_h
    canvas = Image.new("RGB", (layout.width, layout.height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.multiline_text((pad, pad), title, fill="black", font=font)
    for j, label in enumerate(col_labels or []):
        tw, _ = _text_size(draw, label, font)
        draw.multiline_text((label_w + pad + j * (size + pad) + (size - tw) // 2, layout.title_h + pad), label,
                            fill="black", font=font)
    for i, row in enumerate(cells):
        y = top + pad + i * (size + pad)
        if row_labels:
            _, th = _text_size(draw, row_labels[i], font)
            draw.multiline_text((pad, y + (size - th) // 2), row_labels[i], fill="black", font=font)
        for j, img in enumerate(row):
            if img is None:
                continue
            img = img.detach().float().cpu()
            if img.shape[-2:] != (size, size):
                img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True,
                                    align_corners=False)[0]
            canvas.paste(tensor_to_pil(img).convert("RGB"), (label_w + pad + j * (size + pad), y))
    return canvas


def save_png(canvas: Image.Image, path: str | os.PathLike, text: Mapping[str, str] | None = None) -> Image.Image:
    """Write ``canvas`` to ``path`` as PNG, atomically (temporary name, then rename), with ``text``'s entries as
    PNG text chunks (``tEXt``/``iTXt``, read back by Pillow as ``Image.open(path).text``); returns ``canvas``."""
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    with atomic_path(Path(path)) as tmp:
        canvas.save(tmp, format="PNG", pnginfo=info)
    return canvas


def save_grid(rows: Sequence[torch.Tensor | Sequence[torch.Tensor | None]], path: str | os.PathLike,
              row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
              cell_size: int | None = None, title: str | None = None, pad: int = 4,
              font_size: int | None = None, text: Mapping[str, str] | None = None) -> Image.Image:
    """Write a labelled grid of images to ``path`` (PNG, atomically, with ``text`` as PNG text chunks:
    :func:`save_png`) and return it.

    ``rows``: one entry per row, either a ``[N, C, H, W]`` batch or a list of ``[C, H, W]`` /
    ``[1, C, H, W]`` tensors in ``[-1, 1]``, C = 3 (RGB) or 1 (gray, shown as gray) (``None`` leaves a
    blank cell). Every image is
    resized (bilinear, antialiased) to ``cell_size`` square (default: the first image's
    height). ``row_labels`` go left of each row, ``col_labels`` above each column,
    ``title`` above everything; white background.
    """
    return save_png(render_grid(rows, row_labels, col_labels, cell_size, title, pad, font_size, what=str(path)),
                    path, text)


def save_sections(sections: Sequence[GridSection], path: str | os.PathLike, cell_size: int,
                  title: str | None = None, pad: int = 4, font_size: int | None = None) -> Image.Image:
    """Write blocks of rows, each with its own column labels, stacked top to bottom (PNG, atomically).

    For figures whose rows mean different things, e.g. ``original | W | W+ | PTI`` above edit rows
    whose columns are strengths. Row labels share one width so the images of all blocks align.
    Raises ``ValueError`` for no section or a section as :func:`save_grid` would refuse.
    """
    if not sections:
        raise ValueError(f"{path}: save_sections needs at least one section")
    font = _label_font(font_size or max(10, min(28, cell_size // 10)))
    label_w = max(_label_width(s.row_labels, font, pad) for s in sections)
    blocks = [render_grid(s.rows, s.row_labels, s.col_labels, cell_size, s.heading, pad, font_size,
                          label_width=label_w, what=f"{path}, section {i}") for i, s in enumerate(sections)]
    head = None
    if title:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        head = _text_size(probe, title, font)[1] + 2 * pad
    width = max(b.width for b in blocks)
    canvas = Image.new("RGB", (width, (head or 0) + sum(b.height for b in blocks)), "white")
    y = 0
    if title:
        ImageDraw.Draw(canvas).multiline_text((pad, pad), title, fill="black", font=font)
        y = head
    for b in blocks:
        canvas.paste(b, (0, y))
        y += b.height
    return save_png(canvas, path)


def prepare_target(target: torch.Tensor, resolution: int, device: torch.device | str,
                   channels: int = 3) -> torch.Tensor:
    """``[C, H, W]`` or ``[1, C, H, W]`` in [-1, 1], C = 3 (RGB) or 1 (gray) -> ``[1, channels, R, R]`` on
    ``device`` (area/bicubic resize; RGB -> gray by BT.601 luma, gray -> RGB by repetition, see
    :func:`pti.images.to_channels`). ``channels``: the generator's ``img_channels``."""
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] not in (1, 3):
        raise ValueError(f"target must be [3, H, W] or [1, 3, H, W] (RGB) or [1, H, W] or [1, 1, H, W] (gray), "
                         f"got {tuple(target.shape)}")
    target = to_channels(target.to(device=device, dtype=torch.float32), channels)
    if target.shape[-2:] != (resolution, resolution):
        if target.shape[-2] != target.shape[-1]:
            raise ValueError(f"target must be square (align it first), got {tuple(target.shape[-2:])}")
        mode = "area" if target.shape[-1] > resolution else "bicubic"
        target = F.interpolate(target, size=(resolution, resolution), mode=mode).clamp(-1, 1)
    return target
