"""The ``pti`` command line: a thin dispatcher over ``pti.commands.<name>`` modules.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). Modules are imported only when their command is
run (``--help`` of the top level imports them to list their arguments lazily, never torch).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Sequence

from pti import __version__

# command name -> module under pti.commands (kept in the order shown by --help)
COMMANDS: dict[str, str] = {
    "align": "align",
    "demo": "demo",
    "run": "run",
    "compare": "compare",
    "invert": "invert",
    "tune": "tune",
    "edit": "edit",
    "fit-boundaries": "fit_boundaries",
    "styleclip-prepare": "styleclip_prepare",
    "info": "info",
    "export": "export",
    "download": "download",
    "smoke": "smoke",
    "train-demo": "train_demo",
    "demo-quality": "demo_quality",
    "bench": "bench",
    "bench-ops": "bench_ops",
    "report": "report",
}


def _command_help(module_name: str) -> str:
    module = importlib.import_module(f"pti.commands.{module_name}")
    return getattr(module, "HELP", "")


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: a usage error is one line (exit 2) naming the option, not the whole usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pti",
        description="Pivotal Tuning Inversion for StyleGAN2: align, invert, tune and edit real photos.",
    )
    parser.add_argument("--version", action="version", version=f"pti {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"pti.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    formatter, warnings.formatwarning = warnings.formatwarning, _one_line_warning  # the command's warnings only
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("pti: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"pti: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatter


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the command line shows it: 'pti: warning: <message>' (no file, line or source line)."""
    return f"pti: warning: {message}\n"


# Errors caused by the user's input (a bad file, a missing checkpoint, a photo without a face, a learning
# rate at which the optimisation diverges):
# shown as one line instead of a traceback. Matched by class name so that --help imports nothing.
USER_ERRORS = {"CheckpointError", "UnsafeCheckpointError", "ZooError", "NoFaceFound", "ImageReadError",
               "DirectionMismatchError", "FileNotFoundError", "NotADirectoryError", "ConditioningError",
               "DivergenceError"}


def _is_user_error(exc: BaseException) -> bool:
    return any(cls.__name__ in USER_ERRORS for cls in type(exc).__mro__)


if __name__ == "__main__":
    raise SystemExit(main())
