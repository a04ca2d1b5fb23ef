"""Which functions a cell defines and what each needs to be re-defined elsewhere."""

from __future__ import annotations

import ast
import functools
import symtable
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field

from dynagraph.tools.codeparse.normalize import normalized_hash
from dynagraph.tools.codeparse.parse import (
    BUILTIN_NAMES,
    FUNCTION_DEFS,
    bound_at_module_scope,
    parse_cell,
    walk_scope,
)


@dataclass
class ExtractedFunction:
    """A top-level function of a cell with everything needed to define it in another kernel."""

    name: str
    code: str
    signature: str
    docstring: str
    imports: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    free_names: list[str] = field(default_factory=list)
    ast_hash: str = ""


def function_names(cell: str) -> list[str]:
    """Names of the cell's top-level ``def``/``async def``, in order, each once."""
    parsed = parse_cell(cell)
    if parsed is None:
        return []
    return list(dict.fromkeys(s.name for s in parsed[0].body if isinstance(s, FUNCTION_DEFS)))


def class_names(cell: str) -> list[str]:
    """Names of the cell's top-level classes, in order, each once."""
    parsed = parse_cell(cell)
    if parsed is None:
        return []
    return list(dict.fromkeys(s.name for s in parsed[0].body if isinstance(s, ast.ClassDef)))


def defined_names(cell: str) -> set[str]:
    """Every name the cell binds at top level: defs, classes, assignments, imports, loops..."""
    parsed = parse_cell(cell)
    if parsed is None:
        return set()
    names: set[str] = set()
    for stmt in parsed[0].body:
        names |= bound_at_module_scope(stmt)
    return names


def doc_view(name: str, signature: str, docstring: str) -> str:
    """The text a function is embedded and its near neighbours found by: name, signature and
    full docstring. One definition for the library's records, the librarian's candidates and
    the executor's read-ahead, so that a vector embedded ahead is the one later looked up."""
    return f"{name}{signature}\n{docstring}".strip()


def doc_views(cell: str) -> list[str]:
    """:func:`doc_view` of each top-level function the cell defines (a name defined twice: its
    last definition), in order, as :func:`extract_functions` would give them, without resolving
    what each needs: the executor embeds them while the cell runs."""
    parsed = parse_cell(cell)
    if parsed is None:
        return []
    last = {node.name: node for node in parsed[0].body if isinstance(node, FUNCTION_DEFS)}
    return [
        doc_view(node.name, _signature(node), ast.get_docstring(node) or "")
        for node in parsed[0].body
        if isinstance(node, FUNCTION_DEFS) and last[node.name] is node
    ]


# --------------------------------------------------------------------------- extraction


class _CellIndex:
    """What each top-level statement of a cell binds and needs."""

    def __init__(self, tree: ast.Module, source: str) -> None:
        self.source = source
        self.defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.imports: list[tuple[int, ast.Import | ast.ImportFrom]] = []
        self.statements: list[tuple[int, ast.stmt]] = []
        for index, stmt in enumerate(tree.body):
            if isinstance(stmt, FUNCTION_DEFS):
                self.defs[stmt.name] = stmt
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                self.imports.append((index, stmt))
            else:
                self.statements.append((index, stmt))
        self.import_names = {
            a.asname or a.name.split(".")[0]
            for _, s in self.imports
            for a in s.names
            if a.name != "*"
        }
        self.binders: dict[str, list[int]] = {}
        self.mutators: dict[str, list[int]] = {}
        for position, (_, stmt) in enumerate(self.statements):
            for name in bound_at_module_scope(stmt):
                self.binders.setdefault(name, []).append(position)
            for name in _mutated_roots(stmt):
                self.mutators.setdefault(name, []).append(position)

    def import_lines(self, names: set[str]) -> list[str]:
        """The cell's import statements reduced to ``names``, aliases kept, in source order."""
        lines: list[str] = []
        for _, stmt in self.imports:
            kept = [
                a
                for a in stmt.names
                if (a.name == "*" and "*" in names)
                or (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__")
                or (a.asname or a.name.split(".")[0]) in names
            ]
            if kept:
                lines.append(ast.unparse(_with_names(stmt, kept)))
        return list(dict.fromkeys(lines))

    def statement_source(self, position: int) -> str:
        """The statement as written: a one-line statement exactly (``a = 1; b = 2`` gives
        ``a = 1``), a longer one as its whole lines (magics inside kept: kernels run IPython)."""
        stmt = self.statements[position][1]
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        lines = self.lines
        if start == stmt.end_lineno:  # ast's columns are UTF-8 byte offsets
            line = lines[start - 1].encode()
            return line[stmt.col_offset : stmt.end_col_offset].decode() or ast.unparse(stmt)
        return textwrap.dedent("\n".join(lines[start - 1 : stmt.end_lineno]))

    @functools.cached_property
    def lines(self) -> list[str]:
        """The source's lines as ``ast`` numbers them (at ``\\n``, ``\\r\\n`` and ``\\r`` only),
        split once: ``ast.get_source_segment`` splits the whole source at every call, which
        made a cell with a long one-line literal quadratic (0.55 MB: 8 s, 1.2 MB: 30 s)."""
        return self.source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _with_names(stmt: ast.Import | ast.ImportFrom, names: list[ast.alias]) -> ast.stmt:
    if isinstance(stmt, ast.Import):
        return ast.Import(names=names)
    return ast.ImportFrom(module=stmt.module, names=names, level=stmt.level)


def _mutated_roots(stmt: ast.stmt) -> set[str]:
    """Names a module-level statement changes in place: ``X[k] = v``, ``X.a += 1``, ``X.add(v)``."""
    roots: set[str] = set()
    for node in walk_scope([stmt]):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Expr) and _is_mutating_call(node.value):
            targets = [node.value.func]  # type: ignore[attr-defined]
        for target in targets:
            if isinstance(target, ast.Subscript | ast.Attribute) and (root := _root_name(target)):
                roots.add(root)
    return roots


#: Methods of list, dict, set and deque that change the object in place. Other method calls
#: count only with ``inplace=True`` (pandas): ``df.head()`` ending a cell is not a mutation.
MUTATING_METHODS = frozenset(
    {"append", "extend", "insert", "update", "add", "setdefault", "pop", "popitem", "remove"}
    | {"discard", "clear", "sort", "reverse", "appendleft", "extendleft"}
)


def _is_mutating_call(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    in_place = any(
        k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in node.keywords
    )
    return in_place or node.func.attr in MUTATING_METHODS


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Subscript | ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _needed_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement reads from module scope (``symtable`` does the scoping)."""
    try:
        table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    except SyntaxError:  # parses but does not compile (e.g. top-level `nonlocal`): approximate
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    augmented = {
        n.target.id
        for n in ast.walk(node)
        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)
    }
    needed = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        stack.extend(child.get_children())
        for symbol in child.get_symbols():
            name = symbol.get_name()
            if symbol.is_global() and (
                symbol.is_referenced() or (symbol.is_declared_global() and name in augmented)
            ):
                needed.add(name)
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        needed.add(node.target.id)
    return needed


def _first_use_order(node: ast.AST) -> dict[str, tuple[int, int]]:
    order: dict[str, tuple[int, int]] = {}
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            key = (n.lineno, n.col_offset)
            if n.id not in order or key < order[n.id]:
                order[n.id] = key
    return order


def _called_names(node: ast.AST) -> set[str]:
    return {
        n.func.id
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }


def _function_source(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return textwrap.dedent("\n".join(lines[start - 1 : node.end_lineno])) + "\n"


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"({ast.unparse(node.args)}){returns}"


def extract_functions(
    cell: str, *, known_names: Iterable[str] = (), context: Iterable[str] = ()
) -> list[ExtractedFunction]:
    """The cell's top-level functions (not methods, not nested defs), each with its imports,
    the module-level statements it reads, the functions it calls and its normalized hash.

    A name defined twice keeps its last definition (the one the kernel holds). ``known_names``
    are library functions: a function reading one lists it in ``calls``. ``context`` is what
    the kernel ran before the cell, in order (the library functions' imports and globals,
    earlier cells): a name the cell does not bind is resolved there as if it were written
    above the cell, so a function using ``symbols`` imported by an earlier cell or a library
    function carries that import. Only the cell's own functions are returned; a context
    source that does not parse is skipped. A cell that does not parse yields ``[]``.
    """
    alone = parse_cell(cell)
    if alone is None or not any(isinstance(node, FUNCTION_DEFS) for node in alone[0].body):
        return []  # nothing to extract: the context (every earlier cell) is not parsed
    prefix = _context_prefix(context)
    parsed = parse_cell(prefix + textwrap.dedent(cell)) if prefix else None
    offset = prefix.count("\n") if parsed is not None else 0
    tree, source = parsed or alone
    index = _CellIndex(tree, source)
    known = set(known_names)
    lines = source.splitlines()
    return [
        _extract_one(node, index, known, lines)
        for node in tree.body
        if isinstance(node, FUNCTION_DEFS) and index.defs[node.name] is node
        and node.lineno > offset
    ]  # fmt: skip


def _context_prefix(context: Iterable[str]) -> str:
    """The context sources that parse, dedented, one after the other (``""`` when none)."""
    parts = []
    for source in context:
        text = textwrap.dedent(source or "").strip("\n")
        if text.strip() and parse_cell(text) is not None:
            parts.append(text)
    return "\n".join(parts) + "\n" if parts else ""


def _extract_one(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    index: _CellIndex,
    known: set[str],
    lines: list[str],
) -> ExtractedFunction:
    imports: set[str] = set()
    statements: set[int] = set()
    calls: set[str] = set()
    free: set[str] = set()
    called = _called_names(node)
    order = _first_use_order(node)
    pending = sorted(_needed_names(node) - {node.name})
    seen: set[str] = set(pending) | {node.name}
    while pending:
        name = pending.pop(0)
        if name in index.defs:
            calls.add(name)
            continue
        if name in index.import_names:
            imports.add(name)
        positions = index.binders.get(name, []) + index.mutators.get(name, [])
        if name in index.binders:
            for position in positions:
                if position in statements:
                    continue
                statements.add(position)
                stmt = index.statements[position][1]
                called |= _called_names(stmt)
                for extra, where in _first_use_order(stmt).items():
                    order.setdefault(extra, (10**9, where[0]))
                for dependency in sorted(_needed_names(stmt) - seen):
                    seen.add(dependency)
                    pending.append(dependency)
        elif name in index.import_names or name in BUILTIN_NAMES:
            continue
        elif name in known:
            calls.add(name)
        else:
            free.add(name)
            if name in called:
                calls.add(name)
    if free and any(a.name == "*" for _, s in index.imports for a in s.names):
        imports.add("*")
    code = _function_source(lines, node)
    by_use = sorted(calls, key=lambda n: order.get(n, (10**9, 0)))
    return ExtractedFunction(
        name=node.name,
        code=code,
        signature=_signature(node),
        docstring=ast.get_docstring(node) or "",
        imports=index.import_lines(imports),
        globals=[index.statement_source(p) for p in sorted(statements)],
        calls=by_use,
        free_names=sorted(free, key=lambda n: order.get(n, (10**9, 0))),
        ast_hash=normalized_hash(code),
    )


# --------------------------------------------------------------------------- normalized hash
