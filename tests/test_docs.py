"""The docs cannot drift from the code (issue 33).

Every ``pti ...`` command line in README.md, docs/ and the other READMEs (fenced code blocks and
inline code spans; also ``python -m pti ...`` and ``torchrun ... -m pti ...``) must name a real
sub-command, and each of its ``--options`` must be one that sub-command's real argument parser
(:func:`pti.cli.build_parser`) has, spelled in full (argparse would accept an abbreviation; a doc
must not rely on it). Every relative link and image path in those files must resolve.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    """README.md, every page under docs/, and the READMEs of the project's folders."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += [p for p in (ROOT / "notebooks" / "README.md", ROOT / "tools" / "README.md",
                          ROOT / "pti" / "assets" / "README.md") if p.is_file()]
    return [f for f in files if f.is_file()]


_FENCE = re.compile(r"^(```|~~~)")
_INLINE = re.compile(r"`([^`\n]+)`")
# `pti CMD ...`, `python -m pti CMD ...`, `torchrun ... -m pti CMD ...`
_START = re.compile(r"(?:^|\s|-m\s+)pti\s+([a-z][a-z0-9-]*)(.*)$")
# Python in a fenced block: `from pti import ...`, `import pti ...` are not commands
_PYTHON = re.compile(r"^\s*(from|import)\s+pti\b")


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line number, 'pti CMD args...') for each command in fenced blocks and inline code spans."""
    found: list[tuple[int, str]] = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        candidates = [line] if in_fence else _INLINE.findall(line)
        for candidate in candidates:
            candidate = candidate.split(" # ")[0].strip()  # a trailing shell comment
            candidate = re.sub(r"^\$\s+", "", candidate)
            match = None if _PYTHON.match(candidate) else _START.search(candidate)
            if match and (in_fence or candidate.startswith(("pti ", "python -m pti", "torchrun"))):
                found.append((number, f"pti {match.group(1)}{match.group(2)}"))
    return found


def _parser_for(command: str):
    from pti.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return subparsers.choices.get(command)


def check_command(line: str) -> str | None:
    """An error text, or None when the sub-command and every option of ``line`` exist."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    command = tokens[1]
    if "/" in command:  # 'pti run/invert/demo': several commands named at once
        commands = command.split("/")
    else:
        commands = [command]
    for name in commands:
        sub = _parser_for(name)
        if sub is None:
            return f"no sub-command {name!r}"
        options = set(sub._option_string_actions)
        for token in tokens[2:]:
            token = token.strip("[](),;.")
            if not token.startswith("--") or token == "--":
                continue
            option = token.split("=", 1)[0]
            if option not in options:
                return f"`pti {name}` has no option {option}"
    return None


def _all_commands() -> list[tuple[str, int, str]]:
    return [(str(f.relative_to(ROOT)), n, line) for f in doc_files() for n, line in command_lines(f.read_text())]


def test_the_docs_name_commands():
    """The extraction finds the README's commands (else the drift test below would check nothing)."""
    found = [line for where, _, line in _all_commands() if where == "README.md"]
    assert any(line.startswith("pti run ") for line in found), found
    assert len(found) >= 5, found


def test_every_documented_command_and_option_exists():
    problems = [f"{where}:{n}: {line!r}: {error}" for where, n, line in _all_commands()
                if (error := check_command(line))]
    assert not problems, "\n".join(problems)


def test_the_check_fails_on_a_renamed_option_or_command():
    assert check_command("pti run photos/ --output runs/a") is None
    assert check_command("pti run photos/ --outptu runs/a") == "`pti run` has no option --outptu"
    assert check_command("pti runn photos/") == "no sub-command 'runn'"
    assert check_command("pti run photos/ --outp runs/a") is not None  # an abbreviation argparse would take


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HTML_SRC = re.compile(r"""<(?:img|a)\s[^>]*(?:src|href)=["']([^"']+)["']""")


def relative_links(text: str) -> list[str]:
    """Targets of markdown links/images and HTML src/href that are paths in this repository."""
    targets = _LINK.findall(text) + _HTML_SRC.findall(text)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", t, re.I)]


def test_every_relative_link_and_image_resolves():
    broken = []
    for f in doc_files():
        for target in relative_links(f.read_text()):
            path = target.split("#", 1)[0]
            if path and not (f.parent / path).exists():
                broken.append(f"{f.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path):
    text = "see [the page](docs/missing.md) and ![fig](figures/demo_astronaut.png) and [web](https://x.org)"
    assert relative_links(text) == ["docs/missing.md", "figures/demo_astronaut.png"]
    assert not (ROOT / "docs/missing.md").exists()


@pytest.mark.parametrize("text,expected", [
    ("```bash\npti run photos/ --output runs/a   # comment\n```", ["pti run photos/ --output runs/a"]),
    ("Use `pti edit RUN/PHOTO --direction smile` later.", ["pti edit RUN/PHOTO --direction smile"]),
    ("`torchrun --nproc_per_node=8 -m pti run --input photos/`", ["pti run --input photos/"]),
    ("`pti` alone and `the pti package` are not commands", []),
])
def test_command_extraction(text, expected):
    assert [line for _, line in command_lines(text)] == expected


def test_python_imports_in_code_blocks_are_not_commands():
    text = "```python\nfrom pti import project\nimport pti.stylegan2 as sg\n```\n```bash\npti run photos/\n```\n"
    assert command_lines(text) == [(6, "pti run photos/")]


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block runs as written on a real photo (matplotlib's grace_hopper.jpg, copied to
    photo.jpg), with the step counts cut to 20 + 10 so that it takes seconds; it writes smile.png."""
    import dataclasses
    import shutil

    import matplotlib.cbook
    from PIL import Image

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    code = blocks[0]
    for written, short in (('inversion_defaults("demo")', 'dataclasses.replace(inversion_defaults("demo"), steps=20)'),
                           ("TuningConfig()", "TuningConfig(steps=10)")):
        assert written in code
        code = code.replace(written, short)
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md python block", "exec"), {"dataclasses": dataclasses})
    assert Image.open(tmp_path / "smile.png").size == (64, 64)
