"""The tree shows the layers, and imports flow one way (issue 33; ../shared/DESIGN.md, docs/layout.md).

Every module under ``pti/`` is parsed with :mod:`ast` (nothing is imported), and every ``import pti...`` /
``from pti... import ...`` counts: at module level, inside functions (lazy imports) and under
``if TYPE_CHECKING:``. ``from pti.a import b`` counts as an import of ``pti.a.b`` when that is a module,
else of ``pti.a``. Strings handed to ``importlib.import_module`` (the lazy maps of ``pti/__init__.py`` and
``pti/fast/__init__.py``, ``pti.cli.COMMANDS``) are not imports here: they are resolved by name at call time
and each points downwards.

Layers, top to bottom: cli and commands/ · the applications beside them (apps/, bench/, train/) · jobs/ · fast/
· the pipeline (editing/, encoders/, alignment, metrics) · core/ (the paper) · stylegan2/ · stylegan2/ops/.
"""
from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

from pti import _moved

PKG = Path(__file__).resolve().parents[1] / "pti"

# The paper's core (pti/core/), the pipeline above it, and the small utilities every layer uses.
CORE = ("pti.core", "pti.alignment", "pti.metrics", "pti.encoders", "pti.editing",
        "pti.images", "pti.labels", "pti.io_utils", "pti.progress", "pti.zoo")
# What sits above the core and the pipeline: nothing in CORE may import any of these, lazily or not.
ABOVE_CORE = ("pti.fast", "pti.jobs", "pti.commands", "pti.cli", "pti.__main__", "pti.apps",
              "pti.bench", "pti.bench_presets", "pti.train")
# The old module paths (pti/_moved.py answers for them for one round, with a DeprecationWarning).
MOVED = _moved.MOVED
# What pti/stylegan2 (outside ops/) may import from the rest of pti:
#  - pti itself, for __version__ only (written into exported files' metadata; see test_root_package_...);
#  - pti.io_utils, the atomic writes;
#  - pti.zoo: stylegan2.checkpoints.load() accepts a zoo name ('demo', 'ffhq') and resolves it lazily. pti.zoo
#    imports only pti.progress (the zoo's per-generator projector lr is read by pti.core.config, not the other
#    way round). An exception by design, kept explicit here.
STYLEGAN2_MAY_IMPORT = ("pti", "pti.io_utils", "pti.zoo")


def module_name(path: Path, root: Path) -> str:
    """``pti/jobs/runner.py`` -> ``pti.jobs.runner``; ``pti/jobs/__init__.py`` -> ``pti.jobs``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse_tree(root: Path) -> dict[str, tuple[Path, ast.Module]]:
    """Every module of the package at ``root``: name -> (file, parsed tree)."""
    return {module_name(p, root): (p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p)))
            for p in sorted(root.rglob("*.py"))}


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same package: first line that imports it}, lazy imports included."""
    modules = parse_tree(root)
    top = root.name
    graph: dict[str, dict[str, int]] = {}
    for name, (path, tree) in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: dict[str, int] = {}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                if target.split(".")[0] == top:
                    found.setdefault(target, node.lineno)
        graph[name] = found
    return graph


def within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    """Whether ``module`` is one of ``prefixes`` or inside one of them; the root package (``"pti"``, no dot)
    matches only itself, so allowing it does not allow the whole package."""
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or ("." in p and module.startswith(p + ".")) for p in prefixes)


def violations(graph: dict[str, dict[str, int]], importers: tuple[str, ...], forbidden: tuple[str, ...],
               allowed: tuple[str, ...] = ()) -> list[str]:
    """'importer:line imports target' for each import by a module in ``importers`` of a module in
    ``forbidden`` (everything when ``forbidden`` is empty) that is not in ``allowed``."""
    return [f"{module}:{line} imports {target}"
            for module, targets in sorted(graph.items()) if within(module, importers)
            for target, line in sorted(targets.items())
            if (not forbidden or within(target, forbidden)) and not within(target, allowed)]


def unit(module: str, root_name: str = "pti") -> str:
    """The subpackage (or top-level module) a module belongs to; stylegan2/ops counts as its own."""
    parts = module.split(".")
    if parts[1:3] == ["stylegan2", "ops"]:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """A cycle between units (subpackages and top-level modules), as [a, b, ..., a], or None.
    The root package (``pti/__init__.py``, imported for ``__version__``) is left out."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if "." not in module:
            continue
        for target in targets:
            if "." in target and unit(target) != unit(module):
                edges.setdefault(unit(module), set()).add(unit(target))
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(PKG)


def test_layers_are_folders():
    """Each layer with several modules is a folder, and no old path is left as a file (the import hook
    answers for them)."""
    for layer in ("core", "apps", "jobs", "fast", "commands", "editing", "encoders", "stylegan2", "stylegan2/ops"):
        assert (PKG / layer / "__init__.py").is_file(), layer
    for old, new in MOVED.items():
        assert (PKG / (new.split(".", 1)[1].replace(".", "/") + ".py")).is_file(), new
        assert not (PKG / (old.split(".")[1] + ".py")).exists(), f"{old} is a file again; pti/_moved.py answers for it"
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "_moved.py", "alignment.py", "bench_presets.py", "cli.py",
                   "images.py", "io_utils.py", "labels.py", "metrics.py", "progress.py", "zoo.py"], top


def test_ops_import_nothing_else_of_pti(graph):
    assert violations(graph, ("pti.stylegan2.ops",), (), allowed=("pti.stylegan2.ops",)) == []


def test_stylegan2_imports_only_its_own_and_small_utilities(graph):
    assert violations(graph, ("pti.stylegan2",), (), allowed=("pti.stylegan2", *STYLEGAN2_MAY_IMPORT)) == []


def test_root_package_is_imported_only_for_its_version():
    """``from pti import X`` where X is not a module must be ``__version__`` (the root's other names are a
    lazy facade over the layers, for users; inside the package, import the module that defines them)."""
    modules = parse_tree(PKG)
    bad = [f"{name}:{node.lineno} imports {alias.name} from pti"
           for name, (_, tree) in modules.items() for node in ast.walk(tree)
           if isinstance(node, ast.ImportFrom) and node.module == "pti" and not node.level
           for alias in node.names if f"pti.{alias.name}" not in modules and alias.name != "__version__"]
    assert bad == []


def test_core_and_pipeline_never_import_upwards(graph):
    assert violations(graph, CORE, ABOVE_CORE + tuple(MOVED)) == []


def test_fast_never_imports_jobs_or_commands(graph):
    above_fast = tuple(m for m in ABOVE_CORE if m != "pti.fast")
    assert violations(graph, ("pti.fast",), above_fast + tuple(MOVED)) == []


def test_jobs_never_import_commands_or_applications(graph):
    above_jobs = tuple(m for m in ABOVE_CORE if m not in ("pti.fast", "pti.jobs"))
    assert violations(graph, ("pti.jobs",), above_jobs + tuple(MOVED)) == []


def test_nothing_in_the_package_uses_the_old_paths(graph):
    """The old paths are for users' code for one round; the package itself imports the new ones."""
    users = tuple(m for m in graph if not within(m, tuple(MOVED)))
    assert violations(graph, users, tuple(MOVED)) == []


def test_no_import_cycle_between_subpackages(graph):
    assert find_cycle(graph) is None


def test_the_checks_can_fail(tmp_path):
    """A synthetic package with a lazy upward import inside a function, an import under TYPE_CHECKING,
    a relative import and a cycle between two subpackages: each check reports it."""
    pkg = tmp_path / "pti"
    for folder in ("stylegan2", "jobs", "commands", "core"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "io_utils.py").write_text("")
    (pkg / "stylegan2" / "networks.py").write_text(
        "from pti.io_utils import x\n\ndef f():\n    from pti.jobs.runner import run_one\n")
    (pkg / "jobs" / "runner.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pti.commands import run\n"
        "from . import helper\n")
    (pkg / "jobs" / "helper.py").write_text("")
    (pkg / "commands" / "run.py").write_text("import pti.jobs.runner\n")
    (pkg / "core" / "config.py").write_text("from pti import jobs\n")
    g = import_graph(pkg)
    assert g["pti.jobs.runner"] == {"pti.commands.run": 3, "pti.jobs.helper": 4}
    assert violations(g, ("pti.stylegan2",), (), allowed=("pti.stylegan2", *STYLEGAN2_MAY_IMPORT)) == [
        "pti.stylegan2.networks:4 imports pti.jobs.runner"]
    assert violations(g, ("pti.jobs",), ("pti.commands",)) == ["pti.jobs.runner:3 imports pti.commands.run"]
    assert violations(g, ("pti.core.config",), ABOVE_CORE) == ["pti.core.config:1 imports pti.jobs"]
    assert find_cycle(g) in (["pti.commands", "pti.jobs", "pti.commands"], ["pti.jobs", "pti.commands", "pti.jobs"])
    (pkg / "commands" / "run.py").write_text("")
    assert find_cycle(import_graph(pkg)) is None


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_warn_and_re_export(old):
    """``import pti.runner`` still works for one round: a DeprecationWarning naming the new path, attributed to
    the importing line, and the new module itself, whose name and spec stay its own."""
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shim = importlib.import_module(old)
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning) and old in str(w.message)]
    assert len(ours) == 1 and MOVED[old] in str(ours[0].message), [str(w.message) for w in caught]
    assert ours[0].filename == __file__
    assert shim is new and new.__name__ == MOVED[old] and new.__spec__.name == MOVED[old]
    sys.modules.pop(old, None)


def test_unknown_paths_are_not_answered():
    """The hook answers only for MOVED: a misspelt module is still a ModuleNotFoundError."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pti.projectr")


def test_moved_names_warn_and_resolve():
    """``from pti.zoo import inversion_defaults`` (moved to pti.core.config) works for one round and warns on
    the importing line; other missing names are still AttributeErrors."""
    from pti.core.config import inversion_defaults

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from pti.zoo import inversion_defaults as old
    assert old is inversion_defaults
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning) and "inversion_defaults" in str(w.message)]
    assert len(ours) == 1 and "pti.core.config" in str(ours[0].message) and ours[0].filename == __file__
    for module, name in _moved.MOVED_NAMES:
        assert getattr(importlib.import_module(_moved.MOVED_NAMES[(module, name)]), name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        importlib.import_module("pti.zoo").not_a_name


def test_python_dash_m_old_path_runs_the_new_module():
    """``python -m pti.report`` (an old path) runs pti.apps.report's code as __main__ (runpy asks the loader for
    it), with the warning; it used to be an AttributeError from the hook."""
    import subprocess

    done = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-m", "pti.report"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pti.report moved to pti.apps.report" in done.stderr
