"""Command-line options generated from the config dataclasses: one option per field, typed and documented by it.

``InversionConfig.steps`` -> ``--inv-steps``, ``TuningConfig.lr`` -> ``--tune-lr``,
``LocalityConfig.alpha`` -> ``--locality-alpha``, ``pti.fast.ExecutionConfig.sync_every`` -> ``--exec-sync-every``
(with ``--fast``: a preset, :func:`pti.fast.fast_preset`). The option's type comes from the field's resolved
annotation (``typing.get_type_hints``): ``int``, ``float``, ``str``, ``bool`` (``true``/``false``),
``X | None`` (also accepts ``none``) and ``Literal[...]`` (argparse ``choices``: any other value exits
with status 2 and a message listing them). A value outside the field's range (``pti.core.config.ranged``)
exits with status 2 while the options are parsed, naming the option and the range. The help text is
the field's attribute docstring in :mod:`pti.core.config`, followed by the range and the default, so it is
written once. Only options given on the command line override the base configs.

Own code rather than a library such as tyro: those name options after the dataclass path
(``--inversion.steps``) and spell booleans as flags, which would rename the options users have.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from typing import Any, Callable

PREFIXES = {"InversionConfig": "inv", "TuningConfig": "tune", "LocalityConfig": "locality", "ExecutionConfig": "exec"}


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_optional(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("none", "null", "") else inner(text)
    parse.__name__ = getattr(inner, "__name__", "value")  # argparse names the type in its error messages
    return parse


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the attribute docstrings (a string right under a field) in ``cls``'s source.

    Whitespace is collapsed to single spaces. Raises ``OSError`` when the source cannot be read.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for stmt, nxt in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _in_range(parse: Callable[[str], Any], valid: Any, integer: bool, optional: bool) -> Callable[[str], Any]:
    """``parse``, then refuse a value outside the field's :class:`~pti.core.config.Range` while argparse parses
    (exit 2 before anything runs: 'argument --locality-interval: must be an integer >= 1, got 0')."""
    def parse_checked(text: str) -> Any:
        value = parse(text)
        problem = valid.error(value, integer, optional)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    parse_checked.__name__ = getattr(parse, "__name__", "value")
    return parse_checked


def _argument_kwargs(annotation: Any, where: str, valid: Any = None) -> dict[str, Any]:
    """argparse ``type``, ``choices`` and ``metavar`` for a field annotation (and its range ``valid``)."""
    from pti.core.config import is_integer_field, literal_choices

    args = typing.get_args(annotation)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if optional else annotation
    choices = literal_choices(annotation)
    if choices is not None:
        kinds = {type(c) for c in choices}
        if len(kinds) != 1:
            raise TypeError(f"{where}: a Literal of one type is needed for a command-line option, got {annotation}")
        kind = kinds.pop()
        parse = _parse_bool if kind is bool else kind
        return {"type": _parse_optional(parse) if optional else parse,
                "choices": list(choices) + ([None] if optional else []), "metavar": None}
    parsers = {bool: (_parse_bool, "true|false"), int: (int, "INT"), float: (float, "FLOAT"), str: (str, "TEXT")}
    if base not in parsers:
        raise TypeError(f"{where}: no command-line type for annotation {annotation}")
    parse, metavar = parsers[base]
    if valid is not None:
        parse = _in_range(parse, valid, is_integer_field(annotation), optional)
    if optional:
        return {"type": _parse_optional(parse), "metavar": f"{metavar}|none"}
    return {"type": parse, "metavar": metavar}


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def add_config_arguments(parser: argparse.ArgumentParser, *config_classes: type) -> None:
    """Add ``--<prefix>-<field>`` options for each (non-nested) field of ``config_classes``.

    A field's range (``pti.core.config.ranged``) is checked by the option's parser and shown in its help."""
    from pti.core.config import field_range, is_integer_field

    for cls in config_classes:
        prefix = PREFIXES[cls.__name__]
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        origin = "the official code's" if prefix == "exec" else "the paper's"
        group = parser.add_argument_group(f"{cls.__name__} (--{prefix}-*; defaults: {origin})", summary)
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            where = f"{cls.__name__}.{f.name}"
            if not docs.get(f.name):
                raise ValueError(f"{where} has no docstring: write one under the field (it is the option's help)")
            default = f.default if f.default is not dataclasses.MISSING else None
            valid = field_range(f)
            kwargs = _argument_kwargs(hints[f.name], where, valid)
            optional = type(None) in typing.get_args(hints[f.name])
            allowed = f"; valid: {valid.describe(is_integer_field(hints[f.name]), optional)}" if valid else ""
            text = f"{docs[f.name]}{allowed} (default: {_show(default)})".replace("%", "%%")
            group.add_argument(f"--{prefix}-{f.name.replace('_', '-')}", dest=f"{prefix}__{f.name}",
                               default=argparse.SUPPRESS, help=text, **kwargs)


def bounded(kind: type, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, optional: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` for a command's own numeric option (``kind``: int or float) with a range, by the
    same mechanism as the config fields (:func:`pti.core.config.make_range`; NaN and inf are always refused):
    ``type=bounded(int, ge=1)``. ``optional``: 'none' also parses (as None). A refused value's error names
    the range in words, as a config field's does."""
    from pti.core.config import make_range

    parse = _in_range(kind, make_range(ge, gt, le, lt), kind is int, optional)
    return _parse_optional(parse) if optional else parse


def seed_type() -> Callable[[str], Any]:
    """The argparse ``type`` of a seed option: the range of the configs' ``seed`` field, an integer in
    [0, 2**63) (:data:`pti.core.config.SEED_END`), written once on the field."""
    from pti.core.config import InversionConfig

    return option_type(InversionConfig, "seed")


def option_type(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse ``type`` of field ``name`` of ``cls`` (its range checked), for an option named otherwise
    (``pti run --seed``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    from pti.core.config import field_range

    return _argument_kwargs(typing.get_type_hints(cls)[name], f"{cls.__name__}.{name}", field_range(f))["type"]


def config_overrides(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The ``{field: value}`` given on the command line for one prefix."""
    head = f"{prefix}__"
    return {k[len(head):]: v for k, v in vars(args).items() if k.startswith(head)}


def build_configs(args: argparse.Namespace, inversion=None, tuning=None):
    """(InversionConfig, TuningConfig): the options given on the command line on top of the base
    configs ``inversion`` / ``tuning`` (default: the paper's settings)."""
    from pti.core.config import InversionConfig, TuningConfig, config_from_dict, config_to_dict

    inv_values = {**(config_to_dict(inversion) if inversion is not None else {}), **config_overrides(args, "inv")}
    inv = config_from_dict(InversionConfig, inv_values)
    tune_values = {**(config_to_dict(tuning) if tuning is not None else {}), **config_overrides(args, "tune")}
    tune_values["locality"] = {**tune_values.get("locality", {}), **config_overrides(args, "locality")}
    tune = config_from_dict(TuningConfig, tune_values)
    return inv, tune


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fast`` and the ``--exec-*`` options of :class:`pti.fast.ExecutionConfig`."""
    from pti.fast.config import ExecutionConfig

    parser.add_argument("--fast", action="store_true",
                        help="use pti.fast's preset execution (CUDA: bf16, channels_last, fused Adam, syncs every 25 "
                             "steps; CPU: foreach Adam, syncs every 25 steps); --exec-* options override it")
    add_config_arguments(parser, ExecutionConfig)


def build_execution(args: argparse.Namespace, device_type: str, base=None):
    """The :class:`pti.fast.ExecutionConfig` given by ``--exec-*`` on top of ``--fast``'s preset for
    ``device_type`` ('cuda' or 'cpu'), or else on top of ``base`` (default: the core's execution)."""
    from pti.core.config import config_from_dict, config_to_dict
    from pti.fast.config import ExecutionConfig, check_execution, fast_preset

    start = fast_preset(device_type) if getattr(args, "fast", False) else base
    values = config_to_dict(start) if start is not None else {}
    execution = config_from_dict(ExecutionConfig, {**values, **config_overrides(args, "exec")})
    check_execution(execution)
    return execution


def device_type(device: str) -> str:
    """'cuda' or 'cpu' for a ``--device`` value ('auto': cuda when available)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"
