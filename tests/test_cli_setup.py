"""The command line entry points and the set-up script's one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pti
from pti.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pti {pti.__version__}"
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_python_dash_m_help_does_not_import_torch():
    code = ("import sys, runpy; sys.argv = ['pti', '--help']\n"
            "try:\n    runpy.run_module('pti', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'pti --help imported torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "usage: pti" in result.stdout


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.pkl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.pkl" in err and "\n" not in err and "Traceback" not in err


def _bootstrap(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "VENV": str(tmp_path / "venv")}
    return subprocess.run(["bash", str(ROOT / "tools" / "bootstrap.sh")], capture_output=True, text=True,
                          cwd=ROOT, env=env)


def test_setup_explains_missing_python(tmp_path):
    result = _bootstrap(tmp_path, "python-that-does-not-exist")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not found" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_explains_old_python(tmp_path):
    fake = tmp_path / "python3.8"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Python 3.8.10'; exit 0; fi\nexit 1\n")
    fake.chmod(0o755)
    result = _bootstrap(tmp_path, str(fake))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Python 3.8.10 is too old" in result.stderr


def test_setup_names_a_full_disk(tmp_path):
    """The CI's set-up once failed with pip's "No space left on device" cut to "Could not install packag";
    the one-line error now says the disk is full and how much the venv needs."""
    venv_python = ("#!/bin/sh\nif [ \"$1\" = -m ] && [ \"$2\" = pip ]; then\n"
                   "  echo 'ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device'\n"
                   "  exit 1\nfi\nexit 0\n")
    fake = tmp_path / "python3"
    # a Python that passes the version check and makes a venv whose python fails pip as a full disk does
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -m ] && [ \"$2\" = venv ]; then mkdir -p \"$3/bin\"; "
                    f"cat > \"$3/bin/python\" <<'PY'\n{venv_python}PY\nchmod +x \"$3/bin/python\"; fi\nexit 0\n")
    fake.chmod(0o755)
    result = _bootstrap(tmp_path, str(fake))
    assert result.returncode == 1, result.stderr
    err = result.stderr.strip()
    assert "\n" not in err and "no space left on device" in err and "needs ~7 GB" in err, err
    assert not (tmp_path / "venv" / ".pti-installed").exists()
