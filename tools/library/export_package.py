"""Write the library's active functions as an installable, tested Python package.

``export_package(library, "out", "mylib")`` writes::

    out/pyproject.toml
    out/README.md                one entry per function: signature, docstring, tags, uses
    out/mylib/__init__.py        imports, module-level names and functions, dependencies first
    out/tests/test_mylib.py      one pytest case per recorded call: arguments in, result out

A function goes in only with every function it calls, transitively: one that calls an archived,
quarantined, tampered or missing function is left out (its calls would fail with NameError),
and so is whatever calls it; the report names each one with the callee it lacks.

A recorded call becomes a test when its arguments and result are plain Python values (numbers,
strings, bytes, None, and lists, tuples, sets and dicts of them) written as literals. The
recorded pickles are read with an unpickler that refuses every class and callable, so no code
of the recorded values runs here; a call whose values are anything else is listed at the end of
the test file and in the README with the reason, never dropped silently.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import math
import os
import pickle
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynagraph.tools.codeparse import parse_python
from dynagraph.tools.errors import InputError
from dynagraph.tools.library.base import FunctionLibrary, FunctionRecord, LibraryError, newest
from dynagraph.tools.library.verified import refused_records

__all__ = ["ExportReport", "export_package", "literal_of_pickle", "package_name_ok"]

#: Plain values nested deeper or larger than this are not written as test literals.
MAX_LITERAL_NODES = 20_000
MAX_LITERAL_CHARS = 20_000
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
    return bool(_NAME_RE.match(name)) and not keyword.iskeyword(name)


# -- values: recorded pickles to literals, no code run ---------------------------------------
class _PlainUnpickler(pickle.Unpickler):
    """Loads only what pickle builds without looking anything up: no class, no callable
    (but ``complex``, which pickle can only rebuild by calling it with two numbers)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "complex"):
            return complex
        raise pickle.UnpicklingError(f"holds a {module}.{name} object")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("holds a persistent reference")


def _size_ok(value: Any) -> bool:
    """Walks the value as its repr would (shared parts counted each time), up to a bound."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_LITERAL_NODES:
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return True


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str | bytes):
        return True
    if isinstance(value, float | complex):
        parts = (value.real, value.imag) if isinstance(value, complex) else (value,)
        return all(math.isfinite(p) for p in parts)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_plain(v) for v in value)
    return False


def literal_of_pickle(b64: str | None) -> tuple[str | None, str]:
    """``(source, "")`` for a recorded value that is a plain literal, else ``(None, why)``."""
    import base64

    if not b64:
        return None, "it was not recorded (too large or not picklable)"
    try:
        value = _PlainUnpickler(io.BytesIO(base64.b64decode(b64))).load()
    except pickle.UnpicklingError as exc:
        return None, str(exc) or "it does not unpickle as plain values"
    except Exception as exc:  # a truncated or foreign pickle
        return None, f"it does not unpickle ({type(exc).__name__})"
    if not _size_ok(value) or not _plain(value):
        return None, "it is not made of plain Python values, or is too large"
    text = "set()" if isinstance(value, set) and not value else repr(value)
    if len(text) > MAX_LITERAL_CHARS:
        return None, "its literal would be too large"
    try:
        if text != "set()" and ast.literal_eval(text) != value:
            return None, "its repr does not read back as the same value"
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None, "its repr is not a Python literal"
    return text, ""


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


def _module_source(records: list[FunctionRecord], name: str) -> str:
    imports: list[str] = []
    body: list[str] = []
    seen_globals: set[str] = set()
    for record in records:
        imports += [i.strip() for i in record.imports if i.strip() not in imports]
        fresh = [g for g in record.globals if g.strip() and g.strip() not in seen_globals]
        seen_globals.update(g.strip() for g in fresh)
        aliases = [f"{a} = {record.name}" for a in record.callable_aliases()]
        body.append("\n".join([*fresh, record.code.strip(), *aliases]))
    exported = [r.name for r in records] + [a for r in records for a in r.callable_aliases()]
    header = f'"""{name}: functions written and tested by dynagraph agents."""'
    parts = [header, "\n".join(dict.fromkeys(imports)), f"__all__ = {exported!r}", *body]
    return "\n\n\n".join(p for p in parts if p.strip()) + "\n"


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
        raise InputError(f"package name {name!r}: use lowercase letters, digits and _")
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
    module = _module_source(records, name)
    try:
        parse_python(module)
    except SyntaxError as exc:
        raise LibraryError(f"the functions do not form a valid module: {exc}") from exc
    tests = _tests_source(records, name, report)
    files = {
        Path(name, "__init__.py"): module,
        Path("tests", f"test_{name}.py"): tests,
        Path("README.md"): _readme(records, name, report),
        Path("pyproject.toml"): _pyproject(records, name),
    }
    _write_package(dest, files)
    return report
