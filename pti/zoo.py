"""Known generator and encoder checkpoints and their verified download.

Entries (:data:`ZOO`):

- ``demo``: the small generator shipped in ``pti/assets/demo_generator.safetensors``.
- ``ffhq``: NVIDIA's StyleGAN2-ADA FFHQ 1024x1024 network pickle, the one the official PTI
  code uses. Downloaded on demand into the cache folder (``~/.cache/pti``, or
  ``$PTI_CACHE_DIR``) with a progress bar, its sha256 checked when known, and renamed
  into place only when complete.
- ``e4e``: the official e4e FFHQ encoder (``e4e_ffhq_encode.pt``, Tov et al. 2021), the
  one the official PTI uses for encoder pivots; loaded by :func:`pti.encoders.load_e4e`.
  Hosted on Google Drive only: when Drive answers with a web page (download quota
  exceeded, confirmation asked) instead of the file, the error says which page to open
  in a browser and where to put the file.

The transfer is ``torch.hub.download_url_to_file`` (temporary file, sha256 check, progress
bar); torch is imported only when a download starts, so listing entries stays light. Kept of
our own: the timeout (torch.hub has none), the web-page check (Drive answers 200 with HTML),
one-line progress outside a terminal, and the final rename, so the cache never holds a page
or a half-written file.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
import urllib.error
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping

from pti.progress import _is_terminal

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
_CHUNK = 1 << 20


class ZooError(RuntimeError):
    """A zoo name is unknown, its file is missing, or its download failed or did not verify."""


class UnverifiedDownloadWarning(UserWarning):
    """A file was downloaded for an entry that has no recorded sha256."""


@dataclass(frozen=True)
class ZooEntry:
    """A named checkpoint.

    Attributes:
        name: the zoo name (``pti.stylegan2.load(name)``, ``pti download name``).
        filename: file name in the package assets (``packaged``) or in the cache folder.
        resolution: image resolution in pixels (square).
        description: one line for listings.
        url: where to download it from (None for packaged files).
        sha256: hex digest of the file; None when no published value could be verified.
        packaged: True when the file ships inside ``pti/assets`` (nothing to download).
        license: the licence of the weights.
        kind: ``'generator'`` (:func:`pti.stylegan2.load`) or ``'encoder'`` (:func:`pti.encoders.load_e4e`).
        page: a web page where a person can download the file by hand, when that differs from ``url``.
        projector_lr: the projector's peak learning rate for this generator
            (:func:`pti.core.config.inversion_defaults`);
            None: the official PTI's 5e-3 (:class:`pti.core.config.InversionConfig`). Set only where 450 steps at
            5e-3 measurably leave w near the mean (the demo generator: its model card).
    """

    name: str
    filename: str
    resolution: int
    description: str
    url: str | None = None
    sha256: str | None = None
    packaged: bool = False
    license: str = ""
    kind: str = "generator"
    page: str | None = None
    projector_lr: float | None = None


ZOO: Mapping[str, ZooEntry] = MappingProxyType({
    "demo": ZooEntry(
        name="demo", filename="demo_generator.safetensors", resolution=64, packaged=True,
        description="small StyleGAN2 trained for this project's demo (64x64 faces; pti's own format)",
        license="see pti/assets model card (trained on DCGAN samples of DigiFace-1M: non-commercial research)",
        # at PTI's 5e-3, 450 steps leave w within 0.6 of W's spread from the mean on this 64 px generator; 0.1
        # (StyleGAN2's) inverts best but breaks the smile edit after PTI; 0.02 keeps it (pti/assets/README.md,
        # seventh session)
        projector_lr=0.02),
    "demo-e4e": ZooEntry(
        name="demo-e4e", filename="demo_encoder.safetensors", resolution=64, packaged=True, kind="encoder",
        description="small e4e encoder of the demo generator (10 x 256 W+ codes; `pti run --init e4e` on 'demo')",
        license="see pti/assets model card (trained on the demo generator's samples)"),
    "ffhq": ZooEntry(
        name="ffhq", filename="ffhq.pkl", resolution=1024,
        description="NVIDIA StyleGAN2-ADA FFHQ 1024x1024, the generator used by the PTI paper",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        # No published sha256 could be checked offline; the downloader prints the computed one.
        sha256=None,
        license="NVIDIA Source Code License-NC (non-commercial)"),
    "e4e": ZooEntry(
        name="e4e", filename="e4e_ffhq_encode.pt", resolution=1024, kind="encoder",
        description="e4e FFHQ encoder (Tov et al. 2021), the official PTI's encoder pivots (18 x 512 W+ codes)",
        # The e4e README's Google Drive file; this is Drive's direct-download form of its link.
        url="https://drive.usercontent.google.com/download?id=1cUv_reLE6k3604or78EranS7XzuVMWeO&export=download"
            "&confirm=t",
        page="https://drive.google.com/file/d/1cUv_reLE6k3604or78EranS7XzuVMWeO/view",
        # No published sha256 could be checked offline; the downloader prints the computed one.
        sha256=None,
        license="MIT code licence (omertov/encoder4editing); trained on FFHQ and bundled with a port of NVIDIA's "
                "FFHQ StyleGAN2 (non-commercial licences): treat as non-commercial"),
})


def cache_dir() -> Path:
    """Folder for downloaded checkpoints: ``$PTI_CACHE_DIR`` if set, else ``~/.cache/pti``."""
    override = os.environ.get("PTI_CACHE_DIR")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "pti"


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name``; :class:`ZooError` lists the known names otherwise."""
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo name {name!r}; known: {', '.join(ZOO)}") from None


def local_path(entry: ZooEntry, cache: Path | None = None) -> Path:
    """Where ``entry``'s file lives (packaged assets) or will live once downloaded (cache folder)."""
    if entry.packaged:
        return ASSETS_DIR / entry.filename
    return (cache or cache_dir()) / entry.filename


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DownloadResult:
    """Outcome of :func:`download`: the file, its sha256, whether it matched a recorded hash,
    and whether it was fetched now (False: it was already there)."""

    path: Path
    sha256: str
    verified: bool
    downloaded: bool


_WEB_PAGE_STARTS = (b"<!doctype html", b"<html")


def _is_web_page(path: Path) -> bool:
    """True when the file starts like an HTML page (what Drive sends for a quota or confirmation page)."""
    with open(path, "rb") as f:
        head = f.read(512)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_WEB_PAGE_STARTS)


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Default socket timeout of ``seconds`` inside the block (urllib's ``urlopen`` has none by default)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _fetch(entry: ZooEntry, dest: Path, timeout: float, progress: bool) -> str:
    """Download ``entry.url`` into a temporary file beside ``dest``; rename it once verified. Returns sha256.

    The transfer, its progress bar and the sha256 check are ``torch.hub.download_url_to_file``'s;
    its bar redraws in place, so outside a terminal one line before and one after replace it.
    """
    from torch.hub import download_url_to_file  # imported only when a download starts

    assert entry.url is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    bar = progress and _is_terminal(sys.stderr)
    if progress and not bar:
        print(f"download {entry.name}: {entry.url} -> {dest}", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        with socket_timeout(timeout):
            download_url_to_file(entry.url, str(tmp), hash_prefix=entry.sha256.lower() if entry.sha256 else None,
                                 progress=bar)
        if _is_web_page(tmp) and not entry.filename.endswith(".html"):
            raise ZooError(f"cannot download {entry.name}: {entry.url} answered with a web page instead of the "
                           f"file (a download quota or a confirmation page); open {entry.page or entry.url} in "
                           f"a browser, download {entry.filename} and put it at {dest}")
        sha = entry.sha256.lower() if entry.sha256 else sha256_file(tmp)
        if progress and not bar:
            print(f"download {entry.name}: {tmp.stat().st_size / 2**20:.1f} MiB in {time.monotonic() - start:.0f} s",
                  file=sys.stderr, flush=True)
        os.replace(tmp, dest)
        return sha
    except RuntimeError as exc:
        if not str(exc).startswith("invalid hash value"):
            raise
        got = str(exc).rsplit('got "', 1)[-1].rstrip('")')
        raise ZooError(f"{entry.name}: the download from {entry.url} has sha256 {got}, expected "
                       f"{entry.sha256}; the file was discarded, try again later") from None
    except urllib.error.HTTPError as exc:
        raise ZooError(f"cannot download {entry.name} from {entry.url}: the server answered HTTP {exc.code} "
                       f"({exc.reason}); download it elsewhere{_by_hand(entry)} and put it at {dest}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ZooError(f"cannot download {entry.name} from {entry.url} ({reason}): are you offline? Download it "
                       f"elsewhere{_by_hand(entry)} and put it at {dest}, or pass a local checkpoint path "
                       f"instead") from None
    finally:
        tmp.unlink(missing_ok=True)


def _by_hand(entry: ZooEntry) -> str:
    return f" (from {entry.page})" if entry.page else ""


def download(entry: ZooEntry | str, cache: Path | None = None, force: bool = False, progress: bool = True,
             timeout: float = 60.0) -> DownloadResult:
    """Make ``entry``'s file available locally and check its sha256 (when one is recorded).

    A file already in the cache is reused (and re-hashed) unless ``force``. Without a
    recorded sha256 the computed hash is reported and an :class:`UnverifiedDownloadWarning`
    is issued. Raises :class:`ZooError` when offline, on a hash mismatch, or for a missing
    packaged file.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    dest = local_path(entry, cache)
    if entry.packaged:
        if not dest.is_file():
            raise ZooError(_missing_packaged_message(entry, dest))
        return DownloadResult(dest, sha256_file(dest), verified=False, downloaded=False)
    if entry.url is None:
        raise ZooError(f"{entry.name}: no download URL is known; put the file at {dest}")
    downloaded = force or not dest.is_file()
    if downloaded:
        sha = _fetch(entry, dest, timeout, progress)
    else:
        sha = sha256_file(dest)
        if entry.sha256 is not None and sha != entry.sha256.lower():
            raise ZooError(f"{dest}: sha256 {sha} does not match the expected {entry.sha256}; delete it and run "
                           f"`pti download {entry.name}` again")
    verified = entry.sha256 is not None
    if not verified:
        warnings.warn(f"{dest}: UNVERIFIED: pti knows no published sha256 for {entry.name!r}; "
                      f"the file's sha256 is {sha}", UnverifiedDownloadWarning, stacklevel=2)
    return DownloadResult(dest, sha, verified=verified, downloaded=downloaded)


def _missing_packaged_message(entry: ZooEntry, path: Path) -> str:
    return (f"{path}: the {entry.name!r} generator is not there: this copy of pti ships without it; "
            f"pull or reinstall a release that includes it, train it with `pti train-demo --export {path}`, "
            f"or pass the path of another checkpoint")


def resolve_checkpoint(path_or_name: str | Path, kind: str, missing: str,
                       error: type[Exception] = ZooError) -> Path:
    """``path_or_name`` as a file: the path itself, or the local file of zoo entry ``path_or_name`` of this
    ``kind`` ('generator' or 'encoder'; downloaded if needed). A file of that name wins over the zoo.

    Raises ``error`` (the caller's exception class) for a zoo name of another kind (listing this kind's
    names), a failed download, or no such file (``missing`` follows "PATH: no such file ").
    """
    if isinstance(path_or_name, str) and path_or_name in ZOO and not Path(path_or_name).exists():
        entry = ZOO[path_or_name]
        if entry.kind != kind:
            names = ", ".join(n for n, e in ZOO.items() if e.kind == kind)
            article = "an" if kind[0] in "aeiou" else "a"
            raise error(f"{path_or_name!r} is a {entry.kind} in pti's zoo, not {article} {kind}; {kind}s: {names}")
        try:
            return resolve(path_or_name)
        except ZooError as exc:
            raise error(str(exc)) from None
    path = Path(path_or_name)
    if not path.is_file():
        raise error(f"{path}: no such file {missing}")
    return path


def resolve(name: str, cache: Path | None = None, allow_download: bool = True, progress: bool = True) -> Path:
    """Local file of zoo entry ``name``, downloading it first if needed (and allowed)."""
    entry = get_entry(name)
    path = local_path(entry, cache)
    if path.is_file():
        return path
    if entry.packaged:
        raise ZooError(_missing_packaged_message(entry, path))
    if not allow_download:
        raise ZooError(f"{path}: {name!r} is not downloaded yet; run `pti download {name}`")
    return download(entry, cache, progress=progress).path


def __getattr__(name: str) -> object:
    """Names that moved out of ``pti.zoo`` (``inversion_defaults``: :mod:`pti.core.config`), for one round."""
    from pti._moved import moved_name

    return moved_name(__name__, name)
