"""``pti download NAME``: fetch a known checkpoint into the cache and check its sha256."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

HELP = ("download a known generator or encoder checkpoint (e.g. ffhq, e4e) into the cache, checking its sha256 "
        "where one is recorded (else printing it, marked unverified); no NAME: list them")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="zoo name (see `pti download` without arguments)")
    parser.add_argument("--force", action="store_true", help="download again even if the file is already cached")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where to put downloads (default: $PTI_CACHE_DIR or ~/.cache/pti)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _list_entries() -> int:
    from pti import zoo

    for entry in zoo.ZOO.values():
        where = "shipped in pti/assets" if entry.packaged else entry.url
        by_hand = f"\n{'':16s}by hand: {entry.page}" if entry.page else ""
        print(f"{entry.name:8s} {entry.resolution:5d}px  {entry.kind}: {entry.description}\n{'':16s}{where}{by_hand}")
    return 0


def run(args: argparse.Namespace) -> int:
    from pti import zoo

    if args.name is None:
        return _list_entries()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", zoo.UnverifiedDownloadWarning)  # said below, in full
            result = zoo.download(args.name, cache=args.cache_dir, force=args.force, progress=not args.quiet)
    except zoo.ZooError as exc:
        print(f"pti download: error: {exc}", file=sys.stderr)
        return 1
    state = "downloaded" if result.downloaded else "already present"
    print(f"{args.name}: {state}: {result.path}")
    if result.verified:
        print(f"sha256 {result.sha256} (verified)")
    else:
        print(f"sha256 {result.sha256} (UNVERIFIED: pti records no published sha256 for {args.name!r}; "
              f"compare it with a trusted source)")
    return 0
