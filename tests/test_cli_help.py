"""Every command-line option documents itself; config options are typed and documented by their dataclass field."""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing

import pytest

from pti.cli import build_parser, main
from pti.commands._config_args import PREFIXES, field_docs
from pti.core.config import InversionConfig, LocalityConfig, TuningConfig, config_from_dict, literal_choices
from pti.fast.config import ExecutionConfig

CONFIGS = (InversionConfig, TuningConfig, LocalityConfig, ExecutionConfig)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _literal_fields() -> list[tuple[str, str, tuple]]:
    """(option, field, choices) for every Literal-typed config field."""
    out = []
    for cls in CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            choices = literal_choices(hints[f.name])
            if choices is not None:
                out.append((f"--{PREFIXES[cls.__name__]}-{f.name.replace('_', '-')}", f.name, choices))
    return out


def test_every_option_of_every_command_has_a_help_text():
    bare_default = re.compile(r"\(?\s*default:?\s*[^()]*\)?\s*", re.IGNORECASE)
    checked = 0
    for name, parser in _subcommands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = (action.help or "").strip()
            label = f"pti {name} {'/'.join(action.option_strings) or action.dest}"
            assert text, f"{label} has no help text"
            assert not bare_default.fullmatch(text), f"{label}: help is only a default: {text!r}"
            # what it is, in words ("run folder", "no progress bars"), not only its default
            words = re.sub(r"\(default[^)]*\)", "", text).split()
            assert len(words) >= 2, f"{label}: help too short to say what it is: {text!r}"
            checked += 1
    assert checked > 150  # all commands were seen (run/invert/tune/demo carry ~50 config options each)


def test_config_option_help_is_the_field_docstring_with_its_default():
    parser = _subcommands()["run"]
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    for cls in CONFIGS:
        docs = field_docs(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            option = f"--{PREFIXES[cls.__name__]}-{f.name.replace('_', '-')}"
            assert helps[option].startswith(docs[f.name].replace("%", "%%")), option
            assert "(default: " in helps[option], option
    # the option the issue quotes: what it is and its unit, not only "default: 1"
    assert "every N steps" in helps["--exec-sync-every"] and "(default: 1)" in helps["--exec-sync-every"]
    assert "pixels" in helps["--inv-perceptual-resolution"]


@pytest.mark.parametrize("option,field,choices", _literal_fields())
def test_a_value_outside_a_literal_field_exits_2_listing_the_choices(option, field, choices, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "photo.png", option, "not-a-choice"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "invalid choice" in err and "not-a-choice" in err
    for choice in choices:
        assert repr(choice) in err or str(choice) in err, (option, choice, err)


def test_typed_options_parse_and_reach_the_configs():
    from pti.commands._config_args import build_configs, build_execution

    args = _subcommands()["run"].parse_args(
        ["x.png", "--inv-space", "w+", "--inv-steps", "7", "--inv-perceptual-resolution", "none",
         "--tune-lpips-threshold", "None", "--tune-batch-size", "2", "--locality-enabled", "true",
         "--locality-norm", "official", "--exec-precision", "bf16", "--inv-optimize-noise", "off"])
    inv, tune = build_configs(args)
    assert (inv.space, inv.steps, inv.perceptual_resolution, inv.optimize_noise) == ("w+", 7, None, False)
    assert (tune.lpips_threshold, tune.batch_size) == (None, 2)
    assert build_execution(args, "cpu").precision == "bf16"
    assert (tune.locality.enabled, tune.locality.norm) == (True, "official")
    for bad in (["--inv-steps", "1.5"], ["--locality-enabled", "maybe"], ["--tune-lr", "fast"]):
        with pytest.raises(SystemExit) as exc:
            _subcommands()["run"].parse_args(["x.png", *bad])
        assert exc.value.code == 2


def test_config_from_dict_rejects_values_outside_a_literal_field():
    with pytest.raises(ValueError, match=r"InversionConfig.space must be one of 'w', 'w\+', got 'z'"):
        config_from_dict(InversionConfig, {"space": "z"})
    with pytest.raises(ValueError, match="LocalityConfig.norm must be one of"):
        config_from_dict(TuningConfig, {"locality": {"norm": "l1"}})
    assert config_from_dict(TuningConfig, {"locality": {"norm": "official"}}).locality.norm == "official"


def test_a_command_warning_is_one_line(tmp_path):
    """The report: `pti run` and `pti align` printed Python's source line under each warning
    ('  outcomes = process_images(...)'). Run in a child process: pytest records warnings itself."""
    import subprocess
    import sys

    code = ("import warnings, pti.commands.info as m\n"
            "def run(args):\n"
            "    warnings.warn('2 photos were run without the edits', RuntimeWarning, stacklevel=2)\n"
            "    return 0\n"
            "m.run = run\n"
            "from pti.cli import main\n"
            "raise SystemExit(main(['info', 'demo']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "pti: warning: 2 photos were run without the edits\n", done.stderr
    # outside the command line, Python's own format is kept
    import warnings

    assert warnings.formatwarning is warnings._formatwarning_orig  # noqa: SLF001
