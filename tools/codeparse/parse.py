"""Parsing cells safely: the thread-safe ``ast.parse`` and the removal of IPython syntax."""

from __future__ import annotations

import ast
import builtins
import io
import re
import textwrap
import threading
import tokenize
from collections.abc import Iterable, Iterator

from dynagraph.tools.errors import InputError

_PARSE_LOCK = threading.Lock()


def parse_python(source: str, mode: str = "exec", filename: str = "<unknown>") -> ast.AST:
    """``ast.parse`` behind a process-wide lock.

    CPython 3.11's AST-to-object conversion keeps its recursion counter per interpreter, not
    per thread: two threads parsing at once (concurrent tasks in ``dynagraph batch``) can fail
    with "SystemError: AST constructor recursion depth mismatch". Parsing is fast; serialize it.
    """
    with _PARSE_LOCK:
        return ast.parse(source, filename=filename, mode=mode)


#: Cell magics whose body is Python (the header line is dropped, the body analysed).
PYTHON_BODY_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "python"})
#: Names IPython puts in every namespace; reading them is not a dependency.
IPYTHON_NAMES = frozenset({"get_ipython", "display", "In", "Out", "exit", "quit"})
BUILTIN_NAMES = frozenset(dir(builtins)) | IPYTHON_NAMES

FUNCTION_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
_MAGIC_ASSIGNMENT = re.compile(r"[A-Za-z_][\w.,\s]*=\s*[%!]")
_HELP_LINE = re.compile(r"\?{0,2}[\w.\[\]]+\?{0,2}")


class CodeParseError(InputError, ValueError):
    """The code is not valid Python (after removing IPython magics)."""


# --------------------------------------------------------------------------- IPython magics


def strip_magics(cell: str) -> str:
    """The cell with IPython-only lines removed, so that ``ast.parse`` accepts it.

    A cell that already parses is returned unchanged (``%`` at the start of a continuation line
    is the modulo operator, not a magic). Line numbers are preserved: removed top-level lines
    become empty, removed indented lines become ``pass``.
    """
    try:
        parse_python(cell)
        return cell
    except SyntaxError:
        pass
    lines = cell.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in PYTHON_BODY_CELL_MAGICS:
            return ""
        lines[first] = ""
    continuation = _continuation_lines("\n".join(lines))
    out = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if number not in continuation and _is_ipython_line(stripped):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass" if indent else "")
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if cell.endswith("\n") else "")


def _is_ipython_line(stripped: str) -> bool:
    if not stripped or stripped.startswith("#"):
        return False
    if stripped[0] in "%!":
        return True
    if _MAGIC_ASSIGNMENT.match(stripped):  # files = !ls, t = %timeit -o f()
        return True
    return "?" in (stripped[0], stripped[-1]) and bool(_HELP_LINE.fullmatch(stripped))


def _continuation_lines(source: str) -> set[int]:
    """Line numbers that continue a logical line: inside a string, brackets, or after ``\\``."""
    lines = source.splitlines()
    inside: set[int] = {i + 2 for i, line in enumerate(lines) if line.rstrip().endswith("\\")}
    depth = 0
    last_row = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            (start_row, _), (end_row, _) = tok.start, tok.end
            if depth > 0 and start_row > last_row:
                inside.add(start_row)
            inside.update(range(start_row + 1, end_row + 1))
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth = max(0, depth - 1)
            last_row = end_row
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return inside


def parse_cell(cell: str) -> tuple[ast.Module, str] | None:
    """The cell's AST (magics removed) and the dedented cell text it came from (magics kept:
    :func:`strip_magics` keeps line numbers, so AST positions index the original lines)."""
    original = textwrap.dedent(cell)
    try:
        return parse_python(strip_magics(original)), original
    except SyntaxError:
        return None


# --------------------------------------------------------------------------- names in a cell


def bound_at_module_scope(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the module (not inside nested scopes)."""
    bound: set[str] = set()
    for node in walk_scope([stmt]):
        if isinstance(node, FUNCTION_DEFS + (ast.ClassDef,)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.alias) and node.name != "*":
            bound.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            bound.add(node.target.id)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound


SCOPE_NODES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def walk_scope(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Walk nodes of one scope: nested function/class/lambda bodies are not entered, but the
    nodes themselves are yielded (their names bind in this scope); walrus targets inside
    comprehensions are found, since they bind in the enclosing scope."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            stack.extend(n for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
        elif not isinstance(node, SCOPE_NODES):
            stack.extend(ast.iter_child_nodes(node))
