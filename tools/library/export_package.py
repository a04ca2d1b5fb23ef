"""Write the library's active functions as an installable, tested Python package.

``export_package(library, "out", "mylib")`` writes::

    out/pyproject.toml
    out/README.md                one entry per function: signature, docstring, tags, uses
    out/mylib/__init__.py        each function imported from its module, dependencies first
    out/mylib/_fn_<name>.py      one module a function: its imports, the library functions it
                                 calls, its module-level names, its code (its names its own)
    out/tests/test_mylib.py      one pytest case per recorded call: arguments in, result out

A function goes in only with every function it calls, transitively: one that calls an archived,
quarantined, tampered or missing function is left out (its calls would fail with NameError),
and so is whatever calls it; the report names each one with the callee it lacks.

A recorded call becomes a test when its arguments and result are plain Python values (numbers,
strings, bytes, None, and lists, tuples, sets and dicts of them) written as literals
(export_literals.py: no code of the recorded values runs here); a call whose values are
anything else is listed at the end of the test file and in the README with the reason, never
dropped silently.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import keyword
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynagraph.tools.codeparse import class_names, parse_python
from dynagraph.tools.errors import InputError
from dynagraph.tools.kernel.kernel_side.define import class_keys
from dynagraph.tools.library.base import FunctionLibrary, FunctionRecord, LibraryError, newest
from dynagraph.tools.library.export_literals import literal_of_pickle
from dynagraph.tools.library.verified import refused_records

__all__ = ["ExportReport", "export_package", "package_name_ok"]

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass
class ExportReport:
    folder: Path
    name: str
    functions: list[str] = field(default_factory=list)
    tests: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (function, call, why)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (function, why)

    def summary(self) -> str:
        left = f", {len(self.skipped)} recorded calls not exported" if self.skipped else ""
        if self.left_out:
            left += f", {len(self.left_out)} functions left out"
        return (
            f"wrote package {self.name} to {self.folder}: {len(self.functions)} functions, "
            f"{self.tests} tests{left}"
        )


def package_name_ok(name: str) -> bool:
    """A name the package can be imported by: an identifier in lowercase, not a keyword, not
    a standard-library module's (``json`` would hide the real one from the functions) and not
    ``tests`` (the package's own tests folder)."""
    return (
        bool(_NAME_RE.match(name))
        and not keyword.iskeyword(name)
        and name not in sys.stdlib_module_names
        and name != "tests"
    )


def _call_source(name: str, probe: dict[str, Any]) -> tuple[str | None, str]:
    literal, why = literal_of_pickle(probe.get("args_b64"))
    if literal is None:
        return None, f"arguments: {why}"
    args, kwargs = ast.literal_eval(literal)
    parts = [repr(a) for a in args]
    if not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        return None, "arguments: keyword names that are not identifiers"
    parts += [f"{k}={v!r}" for k, v in kwargs.items()]
    call = f"{name}({', '.join(parts)})"
    return (f"asyncio.run({call})" if probe.get("is_async") else call), ""


# -- the package's files -----------------------------------------------------------------------
def _active_records(library: FunctionLibrary) -> list[FunctionRecord]:
    """The newest active record of each name (ties broken as every reader does: newest())."""
    by_name: dict[str, list[FunctionRecord]] = {}
    for record in library.list(status="active"):
        by_name.setdefault(record.name, []).append(record)
    chosen = [newest(records) for records in by_name.values()]
    return sorted((r for r in chosen if r is not None), key=lambda r: (r.created_at, r.name))


def _callee_status(library: FunctionLibrary, name: str) -> str:
    """What a called function that is not in the package is: archived, quarantined, ..."""
    record = library.get_by_name(name, include_inactive=True)
    if record is not None:
        return record.status if record.status != "active" else "not exported under that name"
    if refused_records(library, name):  # stored, but every read refuses it
        return "tampered (see `dynagraph library check`)"
    return "not in the library"


def complete_records(
    library: FunctionLibrary, records: list[FunctionRecord]
) -> tuple[list[FunctionRecord], list[tuple[str, str]]]:
    """``records`` less every one whose callees (``depends_on``, transitively) are not all
    among them (by name or alias), and ``(name, why)`` for each left out, naming the missing
    callee and its status. A cycle whose members are all there stays."""
    kept = {r.name: r for r in records}
    owner = {n: r.name for r in records for n in (*r.callable_aliases(), r.name)}
    lacks: dict[str, tuple[str, str, str]] = {}  # left out -> (callee, missing callee, status)
    changed = True
    while changed:
        changed = False
        present = {n for r in kept.values() for n in (r.name, *r.callable_aliases())}
        for record in list(kept.values()):
            callee = next((d for d in record.depends_on if d not in present), None)
            if callee is None:
                continue
            del kept[record.name]
            changed = True
            if owner.get(callee) in lacks:  # left out itself: the root is what it lacks
                lacks[record.name] = (callee, *lacks[owner[callee]][1:])
            else:
                lacks[record.name] = (callee, callee, _callee_status(library, callee))
    left_out = [
        (name, f"it calls {root}, which is {status}")
        if callee == root
        else (name, f"it needs {root} (through {callee}), which is {status}")
        for name, (callee, root, status) in lacks.items()
    ]
    return [r for r in records if r.name in kept], left_out


def dependency_order(records: list[FunctionRecord]) -> list[FunctionRecord]:
    """Every function after the functions it calls (cycles keep their creation order)."""
    by_name = {r.name: r for r in records}
    ordered: list[FunctionRecord] = []
    state: dict[str, str] = {}

    def visit(record: FunctionRecord) -> None:
        if state.get(record.name):
            return
        state[record.name] = "visiting"
        for dep in record.depends_on:
            if dep in by_name and state.get(dep) != "visiting":
                visit(by_name[dep])
        state[record.name] = "done"
        ordered.append(record)

    for record in records:
        visit(record)
    return ordered


def module_file(record: FunctionRecord) -> str:
    """The module that holds ``record`` in the package: ``_fn_<name>.py``."""
    return f"_fn_{record.name}"


def _function_module(
    record: FunctionRecord, owners: dict[str, FunctionRecord], shared: dict[str, str]
) -> str:
    """One function's own module: its imports, the library functions it calls (from their
    modules), its module-level names, its code, its aliases. A module each, as a task's
    kernel defines each in a namespace of its own: two functions that set ``RATE`` to other
    values, or one named ``json`` beside another's ``import json``, never meet. A class an
    earlier module defines the same way (``shared``: class name -> that module) is imported
    from it, as a kernel gives both one class object (kernel_side/define.py)."""
    calls = []
    for dep in dict.fromkeys(record.depends_on):
        owner = owners.get(dep)
        if owner is not None and owner.name != record.name:
            calls.append(f"from .{module_file(owner)} import {dep}")
    calls += [f"from .{module} import {cls}" for cls, module in shared.items()]
    aliases = [f"{a} = {record.name}" for a in record.callable_aliases()]
    own = [g.strip() for g in record.globals if g.strip() and not set(class_names(g)) & set(shared)]
    parts = [
        f'"""{record.name}: written and tested by a dynagraph agent."""',
        "\n".join(dict.fromkeys(i.strip() for i in record.imports if i.strip())),
        "\n".join(calls),
        "\n".join(own),
        "\n".join([record.code.strip(), *aliases]),
    ]
    return "\n\n\n".join(p for p in parts if p.strip()) + "\n"


def _shared_classes(records: list[FunctionRecord]) -> dict[str, dict[str, str]]:
    """Per function (dependencies first): {class: the module of an earlier function that
    defines the same class}, with the kernel's rule for the same class (``class_keys``)."""
    first: dict[str, str] = {}  # class key -> module
    out: dict[str, dict[str, str]] = {}
    for record in records:
        try:
            keys = class_keys(parse_python(record.kernel_source()), record.name)
        except SyntaxError:
            keys = {}
        out[record.name] = {cls: first[key] for cls, key in keys.items() if key in first}
        for key in keys.values():
            first.setdefault(key, module_file(record))
    return out


def _module_sources(records: list[FunctionRecord], name: str) -> dict[str, str]:
    """``{module name: source}``: ``__init__`` (each function imported from its own module,
    dependencies first) and one module a function."""
    owners = {r.name: r for r in records}
    owners.update({a: r for r in records for a in r.callable_aliases() if a not in owners})
    lines = [
        f"from .{module_file(r)} import {', '.join([r.name, *r.callable_aliases()])}"
        for r in records
    ]
    exported = [r.name for r in records] + [a for r in records for a in r.callable_aliases()]
    header = f'"""{name}: functions written and tested by dynagraph agents."""'
    init = "\n\n".join([header, "\n".join(lines), f"__all__ = {exported!r}"]) + "\n"
    modules = {"__init__": init}
    shared = _shared_classes(records)
    modules.update({module_file(r): _function_module(r, owners, shared[r.name]) for r in records})
    return modules


def _tests_source(records: list[FunctionRecord], name: str, report: ExportReport) -> str:
    cases: list[str] = []
    for record in records:
        for number, probe in enumerate(record.probes, 1):
            label = f"{record.name} call {number}: {probe.get('args_repr', '?')}"[:200]
            call, why = _call_source(record.name, probe)
            expected = None
            if call is not None and probe.get("raised"):
                kind = str(probe.get("raised_type") or "")
                if isinstance(getattr(builtins, kind, None), type) and issubclass(
                    getattr(builtins, kind), Exception
                ):
                    cases.append(
                        f"def test_{record.name}_{number}():\n"
                        f"    with pytest.raises({kind}):\n        {call}\n"
                    )
                    continue
                call, why = None, f"it raised {probe['raised']}, not a built-in exception"
            if call is not None:
                expected, why = literal_of_pickle(probe.get("result_b64"))
                if expected is None:
                    why = f"result: {why}"
            if call is None or expected is None:
                report.skipped.append((record.name, label, why))
                continue
            cases.append(f"def test_{record.name}_{number}():\n    assert {call} == {expected}\n")
    report.tests = len(cases)
    lines = [
        f'"""Recorded calls of {name}\'s functions: the arguments an agent passed, the result',
        'it got. Generated by `dynagraph library export --package`."""',
        "",
        "import asyncio  # noqa: F401  (async functions are called through it)",
        "",
        "import pytest  # noqa: F401",
        "",
        f"from {name} import *  # noqa: F403",
        "",
        "",
    ]
    body = "\n\n".join(cases)
    if report.skipped:
        notes = [f"#   {fn}: {label!r}: {why}" for fn, label, why in report.skipped]
        body += "\n\n# Recorded calls not written as tests (their values are not plain literals):\n"
        body += "\n".join(notes) + "\n"
    return "\n".join(lines) + "\n" + body


def _readme(records: list[FunctionRecord], name: str, report: ExportReport) -> str:
    lines = [
        f"# {name}",
        "",
        "Functions written, run and kept by dynagraph agents, exported "
        "with `dynagraph library export --package`. Each was admitted to the library after its "
        "recorded calls replayed; `tests/` replays them again.",
        "",
        "```bash",
        "pip install .",
        "pytest tests",
        "```",
        "",
        "## Functions",
        "",
    ]
    for record in records:
        tags = ", ".join(record.tags) or "none"
        lines += [f"### `{record.name}{record.signature}`", ""]
        lines += [record.docstring.strip() or "(no docstring)", ""]
        lines += [f"- capabilities (tags): {tags}", f"- uses: {record.uses} "
                  f"({record.successes} successful), recorded calls: {len(record.probes)}"]  # fmt: skip
        if record.depends_on:
            lines.append(f"- calls: {', '.join(record.depends_on)}")
        if record.origin_task:
            lines.append(f"- written for the task: {record.origin_task.strip()[:200]}")
        lines.append("")
    if report.left_out:
        lines += ["## Functions left out", ""]
        lines += [f"- `{fn}`: {why}" for fn, why in report.left_out]
        lines.append("")
    if report.skipped:
        lines += ["## Recorded calls not exported as tests", ""]
        lines += [f"- `{fn}`: {label} ({why})" for fn, label, why in report.skipped]
        lines.append("")
    return "\n".join(lines)


def _pyproject(records: list[FunctionRecord], name: str) -> str:
    import json

    deps = json.dumps(sorted(_distributions(records)))
    return "\n".join(
        [
            "[build-system]",
            'requires = ["setuptools>=61"]',
            'build-backend = "setuptools.build_meta"',
            "",
            "[project]",
            f'name = "{name.replace("_", "-")}"',
            'version = "0.1.0"',
            f'description = "{len(records)} functions exported from a dynagraph library"',
            'readme = "README.md"',
            'requires-python = ">=3.10"',
            f"dependencies = {deps}",
            "",
            "[project.optional-dependencies]",
            'test = ["pytest"]',
            "",
            "[tool.setuptools]",
            f'packages = ["{name}"]',
            "",
        ]
    )


def _distributions(records: list[FunctionRecord]) -> set[str]:
    """Distributions providing the non-standard modules the functions import (as installed
    here; a module no installed distribution provides is left out)."""
    from importlib.metadata import packages_distributions

    modules: set[str] = set()
    for record in records:
        for statement in record.imports:
            try:
                tree = parse_python(statement)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    owners = packages_distributions()
    found: set[str] = set()
    for module in modules - set(sys.stdlib_module_names):
        found.update(owners.get(module, [])[:1])
    return found


def _write_package(dest: Path, files: dict[Path, str]) -> None:
    """Write ``files`` (relative path -> text) under ``dest``. A new folder appears whole or not
    at all (written beside it, then renamed); an existing one (an earlier export) is written
    over in place. A folder that cannot be written is an :class:`InputError` naming it."""
    fresh = not dest.exists()
    target = dest.with_name(f".{dest.name}.partial-{os.getpid()}") if fresh else dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        for relative, text in files.items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_text(text, encoding="utf-8")
        if fresh:
            target.rename(dest)
    except OSError as exc:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise InputError(
            f"cannot write the package at {dest}: {exc.strerror or exc}; choose a writable folder"
        ) from exc


def export_package(
    library: FunctionLibrary, folder: str | Path, name: str = "dynagraph_functions"
) -> ExportReport:
    """Write the package (see the module docstring); returns what was written and skipped."""
    if not package_name_ok(name):
        raise InputError(
            f"package name {name!r}: use lowercase letters, digits and _, not a keyword, a "
            "standard-library module's name or tests"
        )
    active = _active_records(library)
    if not active:
        raise LibraryError("the library has no active function to export")
    complete, left_out = complete_records(library, active)
    if not complete:
        first, why = left_out[0]
        raise LibraryError(
            f"no active function can be exported whole: {first}: {why}"
            + (f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else "")
        )
    records = dependency_order(complete)
    dest = Path(folder)
    if dest.exists() and any(dest.iterdir()) and not (dest / "pyproject.toml").exists():
        raise InputError(f"{dest} is not empty and holds no package; choose a new folder")
    report = ExportReport(dest, name, [r.name for r in records], left_out=left_out)
    modules = _module_sources(records, name)
    for module, source in modules.items():
        try:
            parse_python(source)
        except SyntaxError as exc:
            raise LibraryError(f"the module {module} would not be valid Python: {exc}") from exc
    tests = _tests_source(records, name, report)
    files = {
        **{Path(name, f"{module}.py"): source for module, source in modules.items()},
        Path("tests", f"test_{name}.py"): tests,
        Path("README.md"): _readme(records, name, report),
        Path("pyproject.toml"): _pyproject(records, name),
    }
    earlier = _earlier_package_name(dest)
    _write_package(dest, files)
    for stale in (dest / name).glob("_fn_*.py"):  # an earlier export's function left out now
        if Path(name, stale.name) not in files:
            stale.unlink(missing_ok=True)
    if earlier is not None and earlier != name:
        _remove_package(dest, earlier)
    return report


def _earlier_package_name(dest: Path) -> str | None:
    """The package an earlier export wrote into ``dest`` (its pyproject's one package), if any."""
    try:
        text = (dest / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(r'^packages = \["([a-z0-9_]+)"\]$', text, re.MULTILINE)
    return found.group(1) if found and package_name_ok(found.group(1)) else None


def _remove_package(dest: Path, name: str) -> None:
    """Remove what an earlier export wrote under another ``--name``: its modules and its tests
    (pytest in the folder would still collect and run them). Files it did not write stay, and
    so does a folder that holds any."""
    folder = dest / name
    for path in [
        folder / "__init__.py",
        *folder.glob("_fn_*.py"),
        dest / "tests" / f"test_{name}.py",
    ]:
        path.unlink(missing_ok=True)
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
