"""Defining library functions, kernel side: several records in one cell, each on its own.

Shipped by tools/kernel/definitions.py (``define_code``), which calls :func:`define_all` with the
records' sources in dependency order. Each source runs as if it were a cell of its own: parsed,
passed through the shell's AST transformers (so the probe recorder wraps its ``def`` exactly as
it wraps a cell's), compiled under a file name registered in ``linecache`` (tracebacks and
``inspect.getsource`` show its lines) and executed in the user namespace. A source that fails
(syntax, an import that is missing, anything it raises) is reported and the next one still runs.
One line is printed: the marker, then JSON ``{"failed": {name: "ErrorName: message"}}``.
"""

from __future__ import annotations

from typing import Any


def define_all(shell: Any, sources: list, marker: str) -> None:
    """Run each ``(name, source)`` of ``sources`` in ``shell.user_ns``; print what failed."""
    import ast
    import json
    import linecache

    failed: dict = {}
    for index, (name, source) in enumerate(sources):
        filename = f"<dynagraph library {index}: {name}>"
        try:
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            tree = ast.parse(source, filename)
            tree = shell.transform_ast(tree)
            exec(compile(tree, filename, "exec"), shell.user_ns)
        except Exception as exc:  # one record must not stop the others
            failed[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
    print(marker + json.dumps({"failed": failed}))
