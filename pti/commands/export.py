"""``pti export RUN/PHOTO --format nvidia``: a run's tuned generator and pivot in NVIDIA's formats.

Writes ``tuned_nvidia.pt`` (the tuned generator as a state dict in NVIDIA's parameter names plus the
constructor arguments of stylegan2-ada-pytorch's ``training.networks.Generator``; a plain
``torch.load(weights_only=True)`` file, see :mod:`pti.stylegan2.export`) and ``projected_w.npz``
(the pivot in NVIDIA's projector format) into ``--output`` (default ``RUN/PHOTO/export``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export a run's tuned generator and pivot for NVIDIA's StyleGAN2-ADA code (state dict .pt, projected_w.npz)"
FORMATS = ("nvidia",)
GENERATOR_FILE = "tuned_nvidia.pt"
PIVOT_FILE = "projected_w.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photo", help="a photo folder of a `pti run` made with --save-generator (RUN/PHOTO: its "
                                      "tuned.safetensors and pivot.pt) or --multi-id (RUN/tuned.safetensors)")
    parser.add_argument("--format", choices=FORMATS, default="nvidia",
                        help="nvidia: stylegan2-ada-pytorch (training.networks.Generator state dict + "
                             "projected_w.npz)")
    parser.add_argument("--output", default=None, help="output folder (default: RUN/PHOTO/export)")


class _UsageError(ValueError):
    """Missing or unusable inputs: exit status 2 with this message."""


def _inputs(folder: Path) -> tuple[Path, Path]:
    """(tuned generator, pivot.pt) of a photo folder; raises :class:`_UsageError` saying what is missing. The tuned
    generator is ``RUN/PHOTO/tuned.safetensors`` or, for a ``--multi-id`` run, ``RUN/tuned.safetensors``
    (:func:`pti.editing.run_edits.tuned_generator_file`)."""
    from pti.editing.run_edits import no_tuned_weights_message, tuned_generator_file

    if not folder.is_dir():
        raise _UsageError(f"{folder}: no such folder; give a photo folder of a `pti run` (RUN/PHOTO)")
    pivot = folder / "pivot.pt"
    if not pivot.is_file():
        raise _UsageError(f"{folder}: no pivot.pt here; give a photo folder of a `pti run` (RUN/PHOTO)")
    tuned = tuned_generator_file(folder)
    if tuned is None:
        raise _UsageError(no_tuned_weights_message(folder, ", then export"))
    return tuned, pivot


def run(args: argparse.Namespace) -> int:
    from pti.commands.edit import unwritable_reason
    from pti.core.pivot import Pivot
    from pti.jobs.folder import render_settings
    from pti.stylegan2.checkpoints import CheckpointError, load
    from pti.stylegan2.export import export_nvidia_generator, export_projected_w

    folder = Path(args.photo)
    out = Path(args.output) if args.output else folder / "export"
    try:
        if out.exists() and not out.is_dir():
            raise _UsageError(f"--output {out}: a file, not a folder; give a folder for {GENERATOR_FILE} and "
                              f"{PIVOT_FILE}")
        problem = unwritable_reason(out / GENERATOR_FILE)
        if problem:
            raise _UsageError(f"--output {out}: {problem}")
        tuned, pivot_path = _inputs(folder)
        G = load(tuned).eval()
        pivot = Pivot.load(pivot_path)
        pivot.check_fits(G, what=f"generator {tuned}")
    except (_UsageError, CheckpointError, ValueError) as exc:
        print(f"pti export: {exc}", file=sys.stderr)
        return 2
    _, use_pivot_noise = render_settings(folder)  # as the run rendered its reconstruction
    noise = pivot.noise_maps() if use_pivot_noise else None
    try:
        g_file = export_nvidia_generator(G, out / GENERATOR_FILE, noise=noise)
        w_file = export_projected_w(pivot.w, out / PIVOT_FILE)
    except OSError as exc:  # a folder that cannot be made, no permission, a full disk
        print(f"pti export: cannot write into {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {g_file} (training.networks.Generator state dict"
          f"{', pivot noise in noise_const' if noise else ''}) and {w_file} ([1, {G.num_ws}, {G.w_dim}])")
    print("load in stylegan2-ada-pytorch: ckpt = torch.load(PATH, weights_only=True); "
          "G = training.networks.Generator(**ckpt['init_kwargs']).eval(); G.load_state_dict(ckpt['state_dict']); "
          f"img = G.synthesis(torch.from_numpy(np.load('{PIVOT_FILE}')['w']), noise_mode='const')")
    return 0
