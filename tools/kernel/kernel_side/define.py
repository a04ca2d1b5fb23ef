"""Defining library functions, kernel side: several records in one cell, each on its own.

Shipped by tools/kernel/definitions.py (``define_code``), which calls :func:`define_all` with the
records' sources in dependency order. Each source runs as if it were a cell of its own: parsed,
passed through the shell's AST transformers (so the probe recorder wraps its ``def`` exactly as
it wraps a cell's), compiled under a file name registered in ``linecache`` (tracebacks and
``inspect.getsource`` show its lines). A source that fails (syntax, an import that is missing,
anything it raises) is reported and the next one still runs. One line is printed: the marker,
then JSON ``{"failed": {name: "ErrorName: message"}}``.

Each source runs in a namespace of its own, as an imported module's functions do: its imports
and module-level names (``RATE = 0.2``) are its own, so two library functions that each set
``RATE`` to another value, or import ``sqrt`` from ``math`` and from ``cmath``, each keep
theirs, and a cell that later sets ``RATE`` changes neither. The namespace starts with the
user namespace's ``__`` names (builtins, ``__name__``, the probe recorder) and the library
functions the source calls (``depends_on``, defined before it; of functions that call each
other, the first gets the second once it is defined). Only the function and its
aliases are bound in the user namespace; its imports and its classes too where the name is
free, so that a cell may use ``np`` as before and build the ``Box`` a function takes (a
recorded call's pickled ``Box`` is found there too), but never in place of a name the cell
already has. Records that define the same class (the same code, needing the same module-level
names: each function of a cell is stored with its own copy of the cell's ``Point``) share one
class object in a kernel (:func:`class_keys`), so a ``Point`` one returns is the ``Point``
another takes.
"""

from __future__ import annotations

from typing import Any


def define_all(shell: Any, sources: list, marker: str) -> None:
    """Run each ``(name, source, depends_on)`` of ``sources`` in a namespace of its own and
    bind its function in ``shell.user_ns``; print what failed."""
    import ast
    import json
    import linecache

    failed: dict = {}
    user_ns = shell.user_ns
    classes = user_ns.setdefault("__dynagraph_classes__", {})  # class key -> the class
    # name -> (its namespace, depends_on): a dependency defined later is bound in afterwards
    defined = user_ns.setdefault("__dynagraph_namespaces__", {})
    for index, (name, source, depends_on) in enumerate(sources):
        filename = f"<dynagraph library {index}: {name}>"
        try:
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            tree = ast.parse(source, filename)
            exported, offered = bound_names(tree, name)
            keys = class_keys(tree, name)
            known = {cls: classes[key] for cls, key in keys.items() if key in classes}
            tree.body = [
                stmt
                for stmt in tree.body
                if not (isinstance(stmt, ast.ClassDef) and stmt.name in known)
            ]
            tree = shell.transform_ast(tree)
            namespace = {k: v for k, v in user_ns.items() if k.startswith("__")}
            namespace.update({d: user_ns[d] for d in depends_on if d in user_ns})
            namespace.update(known)
            exec(compile(tree, filename, "exec"), namespace)
            for cls, key in keys.items():
                if cls not in known and isinstance(namespace.get(cls), type):
                    classes[key] = namespace[cls]
            defined[name] = (namespace, list(depends_on))
            if name in namespace and name not in exported:  # bound another way than a def
                exported.insert(0, name)
            for key in exported:
                user_ns[key] = namespace[key]
            for key in offered:
                if key in namespace:
                    user_ns.setdefault(key, namespace[key])
        except Exception as exc:  # one record must not stop the others
            failed[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
    for namespace, depends_on in defined.values():  # functions that call each other: the
        for dep in depends_on:  # first was defined before the second existed
            if dep not in namespace and dep in user_ns:
                namespace[dep] = user_ns[dep]
    print(marker + json.dumps({"failed": failed}))


def bound_names(tree: Any, name: str) -> tuple[list, list]:
    """What a record's source binds at its top level: (the function ``name`` and each
    ``alias = name``; the names its imports and its other classes bind)."""
    import ast

    exported, offered = [], []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if stmt.name == name:
                exported.append(name)
            elif isinstance(stmt, ast.ClassDef):
                offered.append(stmt.name)
        elif isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name):
            if stmt.value.id == name:
                exported += [t.id for t in stmt.targets if isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                if alias.name != "*":
                    offered.append(alias.asname or alias.name.split(".")[0])
    return list(dict.fromkeys(exported)), offered


def class_keys(tree: Any, name: str) -> dict:
    """{class name: key} for each class the record's source defines at its top level (but the
    function ``name`` itself). The key is the class's code and that of every other top-level
    statement it needs (imports, constants, helpers, transitively), normalized: two records
    that define a class with the same key get the same class object (:func:`define_all`), so
    a ``Point`` one function returns is the ``Point`` another takes, compares equal to and
    passes ``isinstance`` for. A class whose methods read another ``RATE`` gets another key."""
    import ast

    def bound(stmt: Any) -> set:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return {stmt.name}
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            return {a.asname or a.name.split(".")[0] for a in stmt.names}
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        return {
            n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)
        }

    def used(node: Any) -> set:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    others = [
        s
        for s in tree.body
        if not (isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and s.name == name)
    ]
    keys = {}
    for node in others:
        if not isinstance(node, ast.ClassDef) or node.name == name:
            continue
        needed, wanted = [], used(node)
        grew = True
        while grew:  # the statements binding a name the class (or one of those) uses
            grew = False
            for stmt in others:
                if stmt is not node and stmt not in needed and bound(stmt) & wanted:
                    needed.append(stmt)
                    wanted |= used(stmt)
                    grew = True
        ordered = [s for s in others if s in needed]
        keys[node.name] = "\n".join(ast.unparse(s) for s in [node, *ordered])
    return keys
