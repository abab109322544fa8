"""Expose every field of the config dataclasses as a command-line option.

``InversionConfig.steps`` -> ``--inv-steps``, ``TuningConfig.lr`` -> ``--tune-lr``,
``LocalityConfig.alpha`` -> ``--locality-alpha``; booleans take ``true``/``false``.
Only options given on the command line override the paper's defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

PREFIXES = {"InversionConfig": "inv", "TuningConfig": "tune", "LocalityConfig": "locality"}


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_optional(inner):
    def parse(text: str):
        return None if text.strip().lower() in ("none", "null", "") else inner(text)
    return parse


def _converter(annotation: Any):
    text = str(annotation)
    base = (bool if "bool" in text else int if "int" in text and "float" not in text
            else float if "float" in text else str)
    if base is bool:
        base = _parse_bool
    return _parse_optional(base) if "None" in text else base


def add_config_arguments(parser: argparse.ArgumentParser, *config_classes: type) -> None:
    """Add ``--<prefix>-<field>`` options for each (non-nested) field of ``config_classes``."""
    for cls in config_classes:
        prefix = PREFIXES[cls.__name__]
        group = parser.add_argument_group(f"{cls.__name__} (defaults: the paper's)")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            group.add_argument(f"--{prefix}-{f.name.replace('_', '-')}", dest=f"{prefix}__{f.name}",
                               type=_converter(hints[f.name]), default=argparse.SUPPRESS, metavar="V",
                               help=f"default: {default}")


def config_overrides(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The ``{field: value}`` given on the command line for one prefix."""
    head = f"{prefix}__"
    return {k[len(head):]: v for k, v in vars(args).items() if k.startswith(head)}


def build_configs(args: argparse.Namespace, inversion=None, tuning=None):
    """(InversionConfig, TuningConfig): the options given on the command line on top of the base
    configs ``inversion`` / ``tuning`` (default: the paper's settings)."""
    from pti.config import InversionConfig, TuningConfig, config_from_dict, config_to_dict

    inv_values = {**(config_to_dict(inversion) if inversion is not None else {}), **config_overrides(args, "inv")}
    inv = config_from_dict(InversionConfig, inv_values)
    tune_values = {**(config_to_dict(tuning) if tuning is not None else {}), **config_overrides(args, "tune")}
    tune_values["locality"] = {**tune_values.get("locality", {}), **config_overrides(args, "locality")}
    tune = config_from_dict(TuningConfig, tune_values)
    return inv, tune
