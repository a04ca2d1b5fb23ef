"""The package layout holds: imports run graphs -> nodes -> tools (evals beside nodes), nothing
named graphs/nodes/tools/evals is importable on its own, and no module grows past ~500 lines.

The import check walks the AST of every module, including imports inside functions and under
``TYPE_CHECKING``: a lazy import that runs the wrong way is still a wrong-way dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("graphs", "nodes", "tools", "evals")
# What each package may import from dynagraph (besides itself).
ALLOWED: dict[str, set[str]] = {
    "graphs": {"nodes", "tools", "evals"},
    "nodes": {"tools"},
    "evals": {"tools"},
    "tools": set(),
}
MAX_LINES = 500


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _dynagraph_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported package) for every import of a dynagraph package in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] in PACKAGES:
                found.append((node.lineno, f"top-level {parts[0]}"))
            elif parts[0] == "dynagraph" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_imports_run_one_way() -> None:
    wrong = []
    for package in PACKAGES:
        for path in _modules(package):
            for line, target in _dynagraph_imports(path):
                if target != package and target not in ALLOWED[package]:
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not wrong, "imports that run the wrong way:\n" + "\n".join(wrong)


def test_the_import_check_sees_a_wrong_way_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from dynagraph.graphs.run import run_task\n    import graphs.cli\n"
    )
    assert _dynagraph_imports(bad) == [(2, "graphs"), (3, "top-level graphs")]


def test_no_module_over_the_size_limit() -> None:
    big = [
        f"{path.relative_to(REPO)}: {count} lines"
        for package in PACKAGES
        for path in _modules(package)
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not big, "modules over the limit:\n" + "\n".join(big)


@pytest.mark.parametrize("name", PACKAGES)
def test_bare_package_names_are_not_importable(name: str, tmp_path: Path) -> None:
    """From a neutral folder, only dynagraph.* is installed: a user's tools.py never clashes."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"ModuleNotFoundError: No module named '{name}'" in proc.stderr


def test_every_package_folder_is_installed() -> None:
    """A package folder missing from pyproject's explicit list works in an editable install
    (the finder maps folders) but is silently left out of a wheel."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        "dynagraph." + ".".join(init.parent.relative_to(REPO).parts)
        for package in PACKAGES
        for init in (REPO / package).rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_code_is_parsed_only_through_the_thread_safe_parse() -> None:
    """CPython 3.11 fails ("AST constructor recursion depth mismatch") when two threads parse
    at once; every parse in the agent process goes through codeparse.parse_python's lock.
    Kernel-side files run alone in their kernel and are exempt."""
    allowed = {REPO / "tools" / "codeparse" / "parse.py"}
    unlocked = []
    for package in PACKAGES:
        for path in _modules(package):
            if path in allowed or "kernel_side" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            unlocked += [
                f"{path.relative_to(REPO)}:{node.lineno}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "parse"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "ast"
            ]
    assert not unlocked, "use codeparse.parse_python instead of ast.parse:\n" + "\n".join(unlocked)
