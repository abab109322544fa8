"""Every configuration value is checked against its range before any photo (issue 29, item 2; PTI #31).

The report: `pti run photos/ --locality --locality-interval 0` aligned and inverted every photo, then died in
tuning with a ZeroDivisionError and deleted the pivot; `--locality-num-samples 0` failed late with a reshape
error; `--locality-alpha -30` was accepted. The ranges are written once, next to the fields
(``pti.core.config.ranged``); the Python API raises ``ValueError`` and the command line exits 2 while parsing,
both naming the field or option and its range.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import torch

from conftest import make_tiny_generator
from pti.core.config import (InversionConfig, LocalityConfig, Range, TuningConfig, config_from_dict, field_range,
                        is_integer_field, validate)
from pti.fast.config import ExecutionConfig

CONFIGS = (InversionConfig, TuningConfig, LocalityConfig, ExecutionConfig)
PREFIX = {"InversionConfig": "inv", "TuningConfig": "tune", "LocalityConfig": "locality", "ExecutionConfig": "exec"}


def _numeric_fields():
    for cls in CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[f.name])) or {hints[f.name]}
            if kinds & {int, float} and bool not in kinds:
                yield pytest.param(cls, f, hints[f.name], id=f"{cls.__name__}.{f.name}")


def _outside(valid: Range, integer: bool) -> list:
    """Values just outside ``valid`` (and NaN/inf for float fields)."""
    step = 1 if integer else 0.5
    values = []
    if valid.low is not None:
        values.append(valid.low if valid.low_open else valid.low - step)
    if valid.high is not None:
        values.append(valid.high if valid.high_open else valid.high + step)
    if not integer:
        values += [math.nan, math.inf]
    else:
        values.append(1.5)  # not an integer
    return values


def _inside(valid: Range, integer: bool) -> list:
    """The range's own bounds where they belong to it (and a point just inside an open bound)."""
    values = []
    if valid.low is not None:
        values.append(valid.low + (1 if integer else 1e-6) if valid.low_open else valid.low)
    if valid.high is not None:
        values.append(valid.high - (1 if integer else 1e-6) if valid.high_open else valid.high)
    return [int(v) if integer else v for v in values]


@pytest.mark.parametrize("cls,f,annotation", list(_numeric_fields()))
def test_every_numeric_field_has_a_range_and_it_is_enforced(cls, f, annotation):
    valid = field_range(f)
    assert valid is not None, f"{cls.__name__}.{f.name}: write its range next to it (pti.core.config.ranged)"
    integer = is_integer_field(annotation)
    assert valid.error(f.default, integer, type(None) in typing.get_args(annotation)) is None  # the default is valid
    for value in _inside(valid, integer):
        assert valid.error(value, integer) is None, value
    for value in _outside(valid, integer):
        problem = valid.error(value, integer)
        assert problem and valid.describe(integer) in problem, (value, problem)
        if cls is ExecutionConfig:
            continue  # no checks at construction (pti.fast.config keeps its logic); the CLI checks it below
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.{f.name} must be "):
            cls(**{f.name: value})


@pytest.mark.parametrize("cls,f,annotation", list(_numeric_fields()))
def test_cli_refuses_a_value_outside_the_range_while_parsing(cls, f, annotation, capsys):
    """Exit 2 from argparse: nothing runs (no generator is loaded, no photo read: 'photo.png' does not exist)."""
    from pti.cli import main

    valid = field_range(f)
    integer = is_integer_field(annotation)
    option = f"--{PREFIX[cls.__name__]}-{f.name.replace('_', '-')}"
    bad = _outside(valid, integer)[0]
    with pytest.raises(SystemExit) as exc:
        main(["run", "photo.png", option, str(int(bad) if integer else bad)])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in last and valid.describe(integer) in last, last


@pytest.mark.parametrize("argv,message", [
    (["--locality", "--locality-interval", "0"], "argument --locality-interval: must be an integer >= 1, got 0"),
    (["--locality", "--locality-num-samples", "0"], "argument --locality-num-samples: must be an integer >= 1, got 0"),
    (["--locality", "--locality-alpha", "-30"], "argument --locality-alpha: must be a number > 0, got -30.0"),
    (["--tune-batch-size", "0"], "argument --tune-batch-size: must be an integer >= 1 or none, got 0"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 2**63), got -1"),
    # review of issue 29: a seed torch cannot take failed late, per photo ('Overflow when unpacking long long')
    (["--seed", "99999999999999999999999"], "argument --seed: must be an integer in [0, 2**63), got 99999999999999999999999"),
    (["--inv-seed", str(2 ** 63)], f"argument --inv-seed: must be an integer in [0, 2**63), got {2 ** 63}"),
    (["--tune-seed", "1" + "0" * 400], "argument --tune-seed: must be an integer in [0, 2**63), got 1" + "0" * 400),
    (["--dist-timeout-min", "inf"], "argument --dist-timeout-min: must be a number in (0, 1000000], got inf"),
    (["--dist-timeout-min", "nan"], "argument --dist-timeout-min: must be a number in (0, 1000000], got nan"),
    (["--dist-timeout-min", "-1"], "argument --dist-timeout-min: must be a number in (0, 1000000], got -1.0"),
    (["--dist-timeout-min", "1e30"], "argument --dist-timeout-min: must be a number in (0, 1000000], got 1e+30"),
    (["--multi-id", "--state-every-min", "-1"], "argument --state-every-min: must be a number >= 0, got -1.0"),
    (["--multi-id", "--state-every-min", "nan"], "argument --state-every-min: must be a number >= 0, got nan"),
])
def test_the_reported_options_are_refused_with_one_line(argv, message, tmp_path, capsys):
    from pti.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["run", str(photos), "-o", str(tmp_path / "run"), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pti run: error: {message} " in err, err  # one line, no usage block
    assert not (tmp_path / "run").exists()


def test_values_inside_the_range_still_parse():
    from pti.cli import build_parser
    from pti.commands._config_args import build_configs

    args = build_parser().parse_args(["run", "x.png", "--locality-interval", "3", "--locality-alpha", "0.5",
                                      "--tune-batch-size", "none", "--tune-lpips-threshold", "0",
                                      "--locality-truncation-psi", "1", "--inv-steps", "0", "--seed", "7"])
    inv, tune = build_configs(args)
    assert (tune.locality.interval, tune.locality.alpha, tune.batch_size, tune.lpips_threshold) == (3, 0.5, None, 0.0)
    assert (tune.locality.truncation_psi, inv.steps, args.seed) == (1.0, 0, 7)


def test_python_api_refuses_with_the_field_and_its_range():
    with pytest.raises(ValueError, match=r"LocalityConfig\.interval must be an integer >= 1, got 0"):
        LocalityConfig(interval=0)
    with pytest.raises(ValueError, match=r"LocalityConfig\.alpha must be a number > 0, got -30"):
        config_from_dict(TuningConfig, {"locality": {"alpha": -30}})
    with pytest.raises(ValueError, match=r"TuningConfig\.lr must be a number >= 0, got inf"):
        dataclasses.replace(TuningConfig(), lr=float("inf"))
    cfg = TuningConfig()
    cfg.locality.num_samples = 0  # assigned after construction: validate() and the entry points catch it
    with pytest.raises(ValueError, match=r"LocalityConfig\.num_samples must be an integer >= 1, got 0"):
        validate(cfg)


@pytest.mark.usefixtures("one_thread")
def test_entry_points_refuse_before_any_work(tmp_path):
    """project(), pivotal_tune() and process_images() check the configs first: the report's config reached
    tuning after every photo was inverted. Here nothing is written and no step runs."""
    from pti.images import write_image
    from pti.jobs.runner import RunOptions, process_images
    from pti.core.pivot import Pivot
    from pti.core.projector import project
    from pti.core.tuning import pivotal_tune

    G = make_tiny_generator(resolution=16)
    target = torch.zeros(1, 3, 16, 16)
    inv = InversionConfig(steps=1, w_avg_samples=10, perceptual_net="random-alex")
    inv.w_avg_samples = 0
    with pytest.raises(ValueError, match=r"InversionConfig\.w_avg_samples must be an integer >= 1"):
        project(G, target, inv, progress=False)
    tune = TuningConfig(steps=1, perceptual_net="random-alex")
    tune.locality.enabled, tune.locality.interval = True, 0
    steps = []
    with pytest.raises(ValueError, match=r"LocalityConfig\.interval must be an integer >= 1, got 0"):
        pivotal_tune(G, target, Pivot(w=torch.zeros(1, G.num_ws, G.w_dim)), tune, progress=False,
                     callback=lambda step, _: steps.append(step))
    assert steps == []
    write_image(target[0], tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"LocalityConfig\.interval must be an integer >= 1, got 0"):
        process_images(G, [tmp_path / "a.png"], tmp_path / "run", InversionConfig(), tune,
                       RunOptions(align=False, progress=False))
    assert not (tmp_path / "run").exists()


# --- review of issue 29: the gaps of item 2 ---------------------------------------------------------------------

def test_a_dict_for_a_nested_config_is_refused_naming_the_field():
    """The report: TuningConfig(locality={'interval': 0}) was accepted and left unchecked."""
    with pytest.raises(TypeError, match=r"TuningConfig\.locality must be a LocalityConfig, got dict"):
        TuningConfig(locality={"interval": 0})
    with pytest.raises(TypeError, match=r"TuningConfig\.locality must be a LocalityConfig"):
        TuningConfig(locality={"interval": 3})  # valid values too: config_from_dict converts them
    assert config_from_dict(TuningConfig, {"locality": {"interval": 3}}).locality.interval == 3


def test_seeds_end_below_2_63_and_the_largest_still_seeds_torch():
    """torch takes seeds below 2**64; the configs stop at 2**63 (a signed 64-bit integer, with room for the
    small offsets some seeds get, seed + k): the largest allowed seed seeds a generator, 2**64 fails there."""
    largest = 2 ** 63 - 1
    assert InversionConfig(seed=largest).seed == largest
    torch.Generator().manual_seed(largest + 5)
    with pytest.raises((RuntimeError, ValueError), match="Overflow"):
        torch.Generator().manual_seed(2 ** 64)  # what a 99999999999999999999999 seed reached per photo
    for bad in (2 ** 63, 10 ** 23, 10 ** 400):
        with pytest.raises(ValueError, match=r"InversionConfig\.seed must be an integer in \[0, 2\*\*63\)"):
            InversionConfig(seed=bad)
        with pytest.raises(ValueError, match=r"TuningConfig\.seed must be an integer in \[0, 2\*\*63\)"):
            TuningConfig(seed=bad)


@pytest.mark.parametrize("argv,message", [
    (["fit-boundaries", "--generator", "demo", "--out", "x.pt", "--samples", "-5"],
     "argument --samples: must be an integer >= 1, got -5"),
    (["fit-boundaries", "--generator", "demo", "--out", "x.pt", "--extreme-fraction", "0.7"],
     "argument --extreme-fraction: must be a number in (0, 0.5], got 0.7"),
    (["fit-boundaries", "--generator", "demo", "--out", "x.pt", "--heldout-fraction", "nan"],
     "argument --heldout-fraction: must be a number in (0, 1), got nan"),
    (["fit-boundaries", "--generator", "demo", "--out", "x.pt", "--seed", "-1"],
     "argument --seed: must be an integer in [0, 2**63), got -1"),
    (["align", "a.png", "b", "--size", "0"], "argument --size: must be an integer >= 1, got 0"),
    (["compare", "a.png", "--threads", "0"], "argument --threads: must be an integer >= 1, got 0"),
    (["compare", "a.png", "--dist-timeout-min", "inf"], "argument --dist-timeout-min: must be a number in (0, 1000000], got inf"),
    (["compare", "a.png", "--seed", "99999999999999999999999"],
     "argument --seed: must be an integer in [0, 2**63), got 99999999999999999999999"),
    (["bench", "--images", "0"], "argument --images: must be an integer >= 1, got 0"),
    (["styleclip-prepare", "--samples", "-1"], "argument --samples: must be an integer >= 1, got -1"),
    (["report", "--threads", "-2"], "argument --threads: must be an integer >= 1, got -2"),
    (["demo-quality", "--psi", "1", "inf"], "argument --psi: must be a number >= 0, got inf"),
    (["train-demo", "--g-lr", "0"], "argument --g-lr: must be a number > 0, got 0.0"),
    (["train-demo", "--style-mixing", "1.5"], "argument --style-mixing: must be a number in [0, 1], got 1.5"),
    (["smoke", "--resolution", "2"], "argument --resolution: must be an integer >= 4, got 2"),
])
def test_other_commands_refuse_meaningless_numbers_with_one_line(argv, message, capsys):
    """The report: `pti fit-boundaries --samples -5` died in torch.cat() after loading the generator."""
    from pti.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pti {argv[0]}: error: {message} " in err, err


def test_bounded_options_say_their_range_like_config_fields():
    """One mechanism: the commands' own options and the config fields describe and check a range alike."""
    import argparse

    from pti.commands._config_args import bounded
    from pti.core.config import make_range

    parse = bounded(float, gt=0, le=2)
    assert parse("2") == 2.0 and make_range(gt=0, le=2).describe(False) == "a number in (0, 2]"
    for bad in ("0", "2.5", "nan", "inf", "-inf", "1e400"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"must be a number in \(0, 2\]"):
            parse(bad)
    assert bounded(int, ge=1, optional=True)("none") is None


def test_learning_rate_help_and_check_agree(capsys):
    """The report: the help said 'a number > 0' while 0 was accepted and -1's error said '>= 0'."""
    from pti.cli import build_parser, main

    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]  # noqa: SLF001
    for option in ("--inv-lr", "--tune-lr"):
        action = next(a for a in run_parser._actions if option in a.option_strings)  # noqa: SLF001
        assert "0 " in action.help and "valid: a number >= 0 (default" in action.help, action.help
        args = build_parser().parse_args(["run", "x.png", option, "0"])
        assert getattr(args, f"{option[2:6].rstrip('-')}__lr") == 0.0
        with pytest.raises(SystemExit):
            main(["run", "x.png", option, "-1"])
        assert f"argument {option}: must be a number >= 0, got -1.0" in capsys.readouterr().err
