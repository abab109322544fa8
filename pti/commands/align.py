"""``pti align SRC DST --size N``: FFHQ-style alignment of one photo or a folder of photos."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pti.commands._config_args import bounded

HELP = "FFHQ-align faces: one photo or every image in a folder (dlib landmarks); finished files are skipped"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="a photo, or a folder of photos (not recursive)")
    parser.add_argument("dst", help="output file (when SRC is a file and DST has an image suffix) or folder; "
                                    "outputs are PNG named after the input")
    parser.add_argument("--size", type=bounded(int, ge=1), default=1024, help="output side in pixels (default 1024)")
    parser.add_argument("--transform-size", type=bounded(int, ge=1), default=None,
                        help="supersampling resolution of the crop transform (default 4 x size)")
    add_face_index_argument(parser)
    parser.add_argument("--landmarks", choices=("68", "5"), default="68",
                        help="dlib landmark model: 68 (FFHQ's choice; its training data forbids commercial use) "
                             "or 5 (no such restriction; mouth position estimated)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")


def _face_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a face index (an integer >= 0), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"face index must be >= 0 (0 is the surest face), got {value}")
    return value


def add_face_index_argument(parser: argparse.ArgumentParser) -> None:
    """``--face-index N`` (``pti align``, ``run``, ``invert``, ``tune``, ``demo``): which detected face to align."""
    parser.add_argument("--face-index", type=_face_index, default=0, metavar="N",
                        help="which face when several are found, by descending detector score (default 0: the "
                             "surest); a photo with fewer faces fails with an error saying how many were found")


def _plan(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs; raises FileNotFoundError naming SRC when it does not exist."""
    from pti.images import IMAGE_EXTENSIONS

    if src.is_file():
        out = dst if dst.suffix.lower() in IMAGE_EXTENSIONS else dst / f"{src.stem}.png"
        return [(src, out)]
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return [(p, dst / f"{p.stem}.png") for p in files]
    raise FileNotFoundError(f"{src}: no such file or folder")


def run(args: argparse.Namespace) -> int:
    from pti.alignment import align_face
    from pti.images import ImageReadError, save_pil
    from pti.progress import progress_bar

    src, dst = Path(args.src), Path(args.dst)
    try:
        jobs = _plan(src, dst)
    except FileNotFoundError as exc:
        print(f"pti align: {exc}", file=sys.stderr)
        return 2
    if not jobs:
        print(f"pti align: {src}: no image files found", file=sys.stderr)
        return 2

    failures: list[str] = []
    done = skipped = 0
    claimed: dict[Path, Path] = {}
    for inp, out in progress_bar(jobs, desc="align", unit="photo", disable=len(jobs) == 1):
        if out in claimed:
            failures.append(f"{inp}: output {out} is also the output of {claimed[out]}; rename one of them")
            continue
        claimed[out] = inp
        if out.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            aligned = align_face(inp, args.size, args.transform_size, face_index=args.face_index,
                                 landmarks=args.landmarks)
            save_pil(aligned, out)
            done += 1
        except (ValueError, ImageReadError, OSError) as exc:  # NoFaceFound is a ValueError
            failures.append(str(exc))
    print(f"pti align: {done} aligned, {skipped} already done (skipped), {len(failures)} failed -> {dst}")
    if failures:
        print("failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
