"""The layout of a run folder: which images a job takes, where their results and failure records go,
and when a result counts as finished (see :mod:`pti.jobs.runner` for the process that writes them).

``RUN/<name>/`` holds one image's results, ``RUN/.<name>.partial/`` its staging folder and
``RUN/.failures/<name>.json`` the record of its last failure. ``metrics.json`` lists every result
file (``"files"``: path relative to the image folder, e.g. ``edits/smile_3.png`` -> size in bytes).

A finished result whose inputs changed and whose redo failed is stale: it is moved to
``RUN/.stale/<name>/`` (:func:`set_aside_stale`, with ``stale.json`` saying why), so that it is never
counted as finished nor edited as if it were this run's; a later success of the photo removes it.
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pti.images import IMAGE_EXTENSIONS

Stage = Literal["invert", "tune"]
#: per-image failure records live here inside the run folder
FAILURES_DIR = ".failures"
#: finished results whose inputs changed and whose redo failed live here (see set_aside_stale)
STALE_DIR = ".stale"


@dataclass
class ImageOutcome:
    """What happened to one image in this run. ``name`` is its output folder name (the file stem)."""

    name: str
    status: Literal["done", "skipped", "failed"]
    seconds: float = 0.0
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    redone: tuple[str, ...] = ()  # a finished result processed again, and why (see what_changed)

    def brief(self) -> dict[str, Any]:
        """The outcome without its metrics (small enough to send between ranks)."""
        return {"name": self.name, "status": self.status, "seconds": self.seconds, "error": self.error,
                "file": self.file, "redone": list(self.redone)}


def list_images(source: str | Path) -> list[Path]:
    """One image file, or the image files of a folder sorted by name (raises if none).

    Hidden files (names starting with '.', e.g. macOS ``._photo.jpg``) are left out.
    """
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder")
    files = sorted((p for p in source.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
                   key=lambda p: p.name)
    if not files:
        raise FileNotFoundError(f"{source}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def output_name(path: Path) -> str:
    """The name of an image's output folder: its file stem."""
    return path.stem


def check_unique_names(paths: Sequence[Path]) -> None:
    """Raise ``ValueError`` when two images would share an output folder (``a.png`` and ``a.jpg``)."""
    seen: dict[str, Path] = {}
    clashes = []
    for p in paths:
        other = seen.setdefault(output_name(p), p)
        if other is not p:
            clashes.append(f"{other.name} and {p.name}")
    if clashes:
        raise ValueError(f"{paths[0].parent}: these images would share an output folder (same name without "
                         f"extension): {'; '.join(clashes)}; rename one of each pair")


def read_metrics(out_dir: Path) -> dict[str, Any] | None:
    """The image's metrics.json if it is complete and finished, else None (corrupt counts as absent)."""
    try:
        data = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "done" else None


def _manifest_ok(out_dir: Path, files: Any) -> bool:
    if not isinstance(files, dict):
        return False
    for name, size in files.items():
        try:
            if (out_dir / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def completes(out_dir: Path, metrics: dict[str, Any] | None, stage: Stage) -> bool:
    """True when ``metrics`` (``out_dir``'s metrics.json as :func:`read_metrics` gave it) is a complete result
    for ``stage`` (a 'tune' result also finishes 'invert'): the stage matches and every file of its manifest is
    in ``out_dir`` with its recorded size. For a caller that needs the record whether or not it is finished."""
    if metrics is None or not (metrics.get("stage") == stage or (stage == "invert" and metrics.get("stage") == "tune")):
        return False
    return _manifest_ok(out_dir, metrics.get("files"))


def finished_metrics(out_dir: Path, stage: Stage) -> dict[str, Any] | None:
    """The parsed metrics.json of ``out_dir`` when it holds a complete result for ``stage`` (see
    :func:`completes`), else None: the finished test and the record in one read of the file."""
    metrics = read_metrics(out_dir)
    return metrics if completes(out_dir, metrics, stage) else None


def is_finished(out_dir: Path, stage: Stage) -> bool:
    """True when ``out_dir`` holds a complete result for ``stage`` (a 'tune' result also finishes 'invert')."""
    return finished_metrics(out_dir, stage) is not None


#: what a differing "made_from" entry of metrics.json means (see pti.jobs.runner.made_from_record)
CHANGE_NAMES = {"generator": "generator changed", "photo_sha256": "photo changed", "align": "alignment changed",
                "face_index": "alignment changed", "class_index": "class changed", "init": "pivot start changed",
                "encoder": "pivot start changed"}
#: the reason given for a result whose metrics.json has no "made_from" record
NOT_RECORDED = "inputs not recorded (made by an older pti)"


def what_changed(metrics: dict[str, Any], made_from: dict[str, Any], config: dict[str, Any],
                 ignore: Sequence[str] = ()) -> list[str]:
    """Why a finished result (its ``metrics``) is not what this run would make: [] when it is.

    ``made_from``: the record this run would write (keys of :data:`CHANGE_NAMES`; those in ``ignore`` are
    not compared); ``config``: the config sections that count, e.g. ``{"inversion": {...}}``, compared with
    the result's ``"config"``. A result without a ``"made_from"`` record gives ``[NOT_RECORDED]``.
    Reasons are in :data:`CHANGE_NAMES` order, without repeats ('tuning settings changed', ...).
    """
    recorded = metrics.get("made_from")
    if not isinstance(recorded, dict):
        return [NOT_RECORDED]
    reasons = [CHANGE_NAMES[key] for key, value in made_from.items()
               if key not in ignore and recorded.get(key) != value]
    done_config = metrics.get("config") or {}
    reasons += [f"{section} settings changed" for section, value in config.items() if done_config.get(section) != value]
    return list(dict.fromkeys(reasons))


def failure_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / FAILURES_DIR / f"{name}.json"


def error_text(exc: Exception) -> str:
    """A failed photo's error as recorded: ``Type: message``, plus the last frames of the traceback for errors that
    are not the expected kinds (bad input, I/O, a diverged optimisation). Call it inside the ``except`` block."""
    message = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (ValueError, FileNotFoundError, RuntimeError, OSError)):
        message += "\n" + traceback.format_exc(limit=3)
    return message


def record_failure(run_dir: Path, outcome: ImageOutcome, stage: Stage, worker: dict[str, Any] | None) -> None:
    """Write ``<run>/.failures/<name>.json`` with the error text (atomically)."""
    from pti.io_utils import atomic_write_json

    atomic_write_json({"name": outcome.name, "file": outcome.file, "stage": stage, "error": outcome.error,
                       "seconds": outcome.seconds, "worker": worker or {}, "time": time.time()},
                      failure_path(run_dir, outcome.name))


def read_failure(run_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(failure_path(run_dir, name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stale_dir(final: Path) -> Path:
    """Where a stale result of ``final`` is kept: ``<run>/.stale/<name>``."""
    return final.parent / STALE_DIR / final.name


def set_aside_stale(final: Path, reasons: Sequence[str], error: str) -> Path:
    """Move the finished result ``final`` (made from other inputs: ``reasons``, e.g. 'generator changed')
    whose redo failed with ``error`` to :func:`stale_dir`, replacing an older stale copy, and write
    ``stale.json`` ({"reasons", "error", "time"}) there; returns the new folder."""
    import shutil

    from pti.io_utils import atomic_write_json

    target = stale_dir(final)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    final.rename(target)
    atomic_write_json({"reasons": list(reasons), "error": error, "time": time.time()}, target / "stale.json")
    return target


def stale_note(final: Path) -> str | None:
    """One line saying that the result of the photo folder ``final`` was set aside as stale, where and why
    (for ``pti edit RUN/PHOTO`` on such a folder), or None when there is no stale result."""
    try:
        data = json.loads((stale_dir(final) / "stale.json").read_text())
    except (OSError, ValueError):
        return None
    reasons = ", ".join(data.get("reasons") or []) or "inputs changed"
    first = str(data.get("error", "")).partition("\n")[0]
    return (f"{final}: its result is stale ({reasons}, and the redo failed: {first}); the old result is in "
            f"{stale_dir(final)}; run the photo again")


def staging_dir(final: Path) -> Path:
    """Where an image is processed before it becomes ``final``: ``<run>/.<name>.partial``."""
    return final.parent / f".{final.name}.partial"


def manifest(out_dir: Path) -> dict[str, int]:
    """The result files of an image folder (``metrics.json`` and hidden files excepted, subfolders included):
    ``{relative POSIX path: size in bytes}``, sorted by path."""
    files = {}
    for f in sorted(Path(out_dir).rglob("*")):
        rel = f.relative_to(out_dir)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts) and rel.as_posix() != "metrics.json":
            files[rel.as_posix()] = f.stat().st_size
    return files


def render_settings(photo_dir: Path) -> tuple[str, bool]:
    """How the run rendered the tuned generator of the photo folder ``photo_dir`` (its ``reconstruction.png``):
    ``(noise_mode, use_pivot_noise)`` of the tuning config that ``photo_dir/metrics.json`` records
    (``config.tuning``), else :class:`pti.core.config.TuningConfig`'s defaults ``('const', False)``.
    For ``pti edit`` and ``pti export``, which render or export that generator as the run did."""
    from pti.io_utils import read_json_object

    tuning = (read_json_object(Path(photo_dir) / "metrics.json").get("config") or {}).get("tuning")
    tuning = tuning if isinstance(tuning, dict) else {}
    return str(tuning.get("noise_mode", "const")), bool(tuning.get("use_pivot_noise", False))
