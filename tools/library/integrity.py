"""Is a stored record still what the librarian admitted, and is defining it harmless?

Two checks, run on every read of a verifying library (``open_library`` turns it on) and by
``dynagraph library check``:

- **content**: the code still hashes to the record's ``ast_hash`` (``codeparse.normalized_hash``)
  and the id is still ``uuid5(ast_hash)``; the code defines the record's name and nothing else.
- **definition** (:func:`definition_problem`, also applied at admission): defining the record
  in a kernel runs its imports and its ``def`` only. Every ``imports`` entry is import
  statements; every ``globals`` entry binds literals (or defines a function or a class whose
  definition runs nothing); the ``def``'s decorators (an allow-list), defaults and annotations
  call nothing.

Why no stored digest over imports and globals: an unkeyed digest kept in the same row is
rewritten by whoever rewrites the row, exactly like ``ast_hash``. The shape rules hold whatever
an attacker recomputes: a tampered import can only import, a tampered global can only bind a
literal. What the hash adds is catching an edit that did not bother to recompute it (the
issue's ``UPDATE functions SET code=...``) and corruption; the sandbox keeps library.db out of
the kernels' reach (docs/architecture.md).
"""

from __future__ import annotations

import ast
import builtins
import keyword
from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from dynagraph.tools.codeparse import normalized_hash, parse_python

if TYPE_CHECKING:
    from dynagraph.tools.library.base import FunctionLibrary, FunctionRecord

__all__ = [
    "check_library",
    "definition_problem",
    "intact",
    "record_problem",
    "reserved_name",
]

#: Decorators whose application runs nothing but wrapping (matched on the last dotted part).
SAFE_DECORATORS = frozenset(
    {
        "cache",
        "lru_cache",
        "wraps",
        "cached_property",
        "total_ordering",
        "singledispatch",
        "contextmanager",
        "dataclass",
        "staticmethod",
        "classmethod",
        "property",
        "overload",
        "abstractmethod",
    }
)
#: Expressions allowed in defaults, annotations, decorator arguments and class bases.
_STATIC_EXPRS = (
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.BinOp,
    ast.UnaryOp,
    ast.Slice,
    ast.Starred,
    ast.expr_context,
    ast.operator,
    ast.unaryop,
)


def reserved_name(name: str) -> bool:
    """A name an alias must not rebind in a kernel (a keyword or a builtin such as ``open``)."""
    return keyword.iskeyword(name) or hasattr(builtins, name)


def taken_name(name: str, action_names: Collection[str] = ()) -> str | None:
    """Why ``name`` is not a library function's to take (None: it may be): reused, the
    function is defined in a task's kernel under its name, and would replace the keyword's,
    builtin's or action's there. The coder leaves such a record out of its hits (one stored
    before this rule)."""
    if name in action_names:
        return f"its name is the action {name}'s: reused, it would replace that action"
    if reserved_name(name):
        what = "keyword" if keyword.iskeyword(name) else "builtin"
        return f"its name is the {what} {name}'s: reused, it would replace {name}"
    return None


def record_problem(record: FunctionRecord) -> str | None:
    """Why ``record`` must not be defined or shown (None: it may)."""
    return _problem(
        record.id,
        record.name,
        record.code,
        record.ast_hash,
        tuple(record.imports),
        tuple(record.globals),
    )


@lru_cache(maxsize=4096)
def _problem(
    record_id: str,
    name: str,
    code: str,
    ast_hash: str,
    imports: tuple[str, ...],
    globals_: tuple[str, ...],
) -> str | None:
    from dynagraph.tools.library.base import record_id_for

    try:
        actual = normalized_hash(code)
    except Exception:  # noqa: BLE001 - code that cannot be hashed cannot match its hash
        actual = ""
    if actual != ast_hash:
        return "tampered: its code does not hash to its ast_hash"
    if record_id != record_id_for(ast_hash):
        return "tampered: its id is not uuid5 of its ast_hash"
    problem = definition_problem(code, list(imports), list(globals_), name=name)
    return f"unsafe definition: {problem}" if problem else None


def intact(records: Iterable[FunctionRecord]) -> list[FunctionRecord]:
    """The records that pass :func:`record_problem`, in order."""
    return [r for r in records if record_problem(r) is None]


# -- the definition rules ------------------------------------------------------------------------
def definition_problem(
    code: str, imports: Iterable[str] = (), globals_: Iterable[str] = (), *, name: str = ""
) -> str | None:
    """Why defining this function would run more than its imports and its ``def`` (None: it
    would not). ``name``, when given, is the one function ``code`` must define."""
    for line in imports:
        tree = _parse(line)
        if tree is None:
            return f"import line does not parse: {_short(line)}"
        if not tree.body or not all(_is_import(s) for s in tree.body):
            return f"import line is not only imports: {_short(line)}"
    for statement in globals_:
        tree = _parse(statement)
        if tree is None:
            return f"module-level statement does not parse: {_short(statement)}"
        for stmt in tree.body:
            why = _module_statement_problem(stmt)
            if why:
                return f"module-level statement {_short(statement)!r} {why}"
    tree = _parse(code)
    if tree is None:
        return "its code does not parse"
    defs = [s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(tree.body) != 1 or len(defs) != 1:
        return "its code is not exactly one def"
    if name and defs[0].name != name:
        return f"its code defines {defs[0].name}, not {name}"
    why = _def_problem(defs[0])
    return f"def {defs[0].name}: {why}" if why else None


def _parse(source: str) -> ast.Module | None:
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError):
        return None
    return tree if isinstance(tree, ast.Module) else None


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _is_import(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Import | ast.ImportFrom)


def _module_statement_problem(stmt: ast.stmt) -> str | None:
    """None for an import, a literal binding, a harmless def or class, ``pass``, a docstring,
    or a ``try`` made of those (``try: import x`` / ``except ImportError: x = None``)."""
    if _is_import(stmt) or isinstance(stmt, ast.Pass):
        return None
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return None
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        if not all(_plain_target(t) for t in targets):
            return "assigns to something other than a name"
        if stmt.value is not None and not _literal(stmt.value):
            return "is not a constant (only literal values may be bound at module level)"
        if isinstance(stmt, ast.AnnAssign) and not _static(stmt.annotation):
            return "has an annotation that runs code"
        return None
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        return _def_problem(stmt)
    if isinstance(stmt, ast.ClassDef):
        return _class_problem(stmt)
    if isinstance(stmt, ast.Try):
        handlers = [h.type for h in stmt.handlers if h.type is not None]
        if not all(_static(h) for h in handlers):
            return "catches something computed"
        inner = [*stmt.body, *stmt.orelse, *stmt.finalbody]
        inner += [s for h in stmt.handlers for s in h.body]
        return next((w for s in inner if (w := _module_statement_problem(s))), None)
    return f"is a {type(stmt).__name__} statement, which would run when defined"


def _plain_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Tuple | ast.List):
        return all(_plain_target(e) for e in target.elts)
    return isinstance(target, ast.Name)


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _static(node: ast.AST | None) -> bool:
    """An expression that looks values up and calls nothing (defaults, annotations, bases)."""
    if node is None:
        return True
    return all(isinstance(n, _STATIC_EXPRS) for n in ast.walk(node))


def _decorator_problem(decorators: list[ast.expr]) -> str | None:
    for deco in decorators:
        target, args = deco, []
        if isinstance(deco, ast.Call):
            target, args = deco.func, [*deco.args, *(k.value for k in deco.keywords)]
        last = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if last not in SAFE_DECORATORS or not _static(target) or not all(map(_literal, args)):
            return f"decorator @{_short(ast.unparse(deco), 40)} would run code when defined"
    return None


def _def_problem(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    why = _decorator_problem(node.decorator_list)
    if why:
        return why
    args = node.args
    defaults = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
    if not all(_static(d) for d in defaults):
        return "a default value runs code when defined"
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    annotations = [a.annotation for a in every if a is not None]
    if not all(_static(a) for a in [*annotations, node.returns]):
        return "an annotation runs code when defined"
    return None


def _class_problem(node: ast.ClassDef) -> str | None:
    why = _decorator_problem(node.decorator_list)
    if why:
        return why
    if node.keywords or not all(_static(b) for b in node.bases):
        return "class bases or keywords run code when defined"
    return next((w for s in node.body if (w := _module_statement_problem(s))), None)


# -- the whole library ------------------------------------------------------------------------
def check_library(
    library: FunctionLibrary, *, quarantine: bool = True
) -> list[tuple[FunctionRecord, str]]:
    """Every stored record that fails :func:`record_problem`, with why; with ``quarantine``,
    the active and archived ones are quarantined with that reason. Needs a backend that can
    list records unfiltered (``list_unverified``)."""
    from dynagraph.tools.library.base import LibraryError

    list_unverified = getattr(library, "list_unverified", None)
    if list_unverified is None:
        raise LibraryError(f"{type(library).__name__} cannot list unverified records")
    found = [(r, why) for r in list_unverified() if (why := record_problem(r))]
    if quarantine:
        for record, why in found:
            if record.status != "quarantined":
                library.set_status(record.id, "quarantined", f"library check: {why}")
    return found
