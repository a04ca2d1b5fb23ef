"""The normalized-AST hash: two functions are the same code when their hashes are equal."""

from __future__ import annotations

import ast
import hashlib
import textwrap
from dataclasses import dataclass, field

from dynagraph.tools.codeparse.parse import (
    CodeParseError,
    bound_at_module_scope,
    parse_python,
    strip_magics,
    walk_scope,
)


def normalized_hash(code: str) -> str:
    """sha256 (hex) of the normalized AST of ``code`` (see the module docstring for what is
    ignored). Raises :class:`CodeParseError` if the code does not parse."""
    source = strip_magics(textwrap.dedent(code))
    try:
        tree = parse_python(source)
    except SyntaxError as exc:
        raise CodeParseError(f"cannot hash code that does not parse: {exc}") from exc
    remove_docstrings(tree)
    tree = _Normalizer().visit(tree)
    dumped = ast.dump(tree, annotate_fields=True, include_attributes=False)
    return hashlib.sha256(dumped.encode("utf-8")).hexdigest()


def remove_docstrings(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]


@dataclass
class _Scope:
    kind: str  # "function" | "class" | "comprehension"
    bound: set[str]
    keep: set[str]
    mapping: dict[str, str] = field(default_factory=dict)


def parameter_names(args: ast.arguments) -> list[str]:
    every = args.posonlyargs + args.args + args.kwonlyargs
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return [a.arg for a in every]


class _Normalizer(ast.NodeTransformer):
    """Renames local names canonically, scope by scope, following Python's scoping rules."""

    def __init__(self) -> None:
        self.scopes: list[_Scope] = []
        self.counter = 0
        self.top_name: str | None = None

    def resolve(self, name: str) -> str:
        last = len(self.scopes) - 1
        for depth in range(last, -1, -1):
            scope = self.scopes[depth]
            if scope.kind == "class" and depth != last:
                continue  # class bodies are not enclosing scopes for nested functions
            if name in scope.bound:
                if name in scope.keep or scope.kind == "class":
                    return name
                if name not in scope.mapping:
                    scope.mapping[name] = f"_v{self.counter}"
                    self.counter += 1
                return scope.mapping[name]
        return "_f" if name == self.top_name else name

    def _in_function(self) -> bool:
        return any(s.kind == "function" for s in self.scopes)

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.resolve(node.id)
        return node

    def _visit_list(self, nodes: list) -> None:
        for i, child in enumerate(nodes):
            if child is not None:
                nodes[i] = self.visit(child)

    def _visit_signature_outside(self, args: ast.arguments) -> None:
        """Defaults and annotations are evaluated in the enclosing scope."""
        self._visit_list(args.defaults)
        self._visit_list(args.kw_defaults)
        every = args.posonlyargs + args.args + args.kwonlyargs
        every += [a for a in (args.vararg, args.kwarg) if a is not None]
        for a in every:
            if a.annotation is not None:
                a.annotation = self.visit(a.annotation)

    def _enter_function(self, args: ast.arguments, body: list[ast.stmt], keep_params: bool) -> None:
        params = parameter_names(args)
        bound = set(params) | _scope_bindings(body)
        imported = {
            a.asname or a.name.split(".")[0]
            for n in walk_scope(body)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        }
        keep = (set(params) if keep_params else set()) | imported
        self.scopes.append(_Scope("function", bound, keep))
        every = args.posonlyargs + args.args + args.kwonlyargs
        every += [a for a in (args.vararg, args.kwarg) if a is not None]
        for a in every:
            a.arg = self.resolve(a.arg)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self._visit_list(node.decorator_list)
        self._visit_signature_outside(node.args)
        if node.returns is not None:
            node.returns = self.visit(node.returns)
        saved_top = self.top_name
        if not self.scopes:
            self.top_name, node.name = node.name, "_f"
        elif self.scopes[-1].kind != "class":
            node.name = self.resolve(node.name)
        self._enter_function(node.args, node.body, keep_params=not self._in_function())
        self._visit_list(node.body)
        self.scopes.pop()
        self.top_name = saved_top
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self._visit_signature_outside(node.args)
        self._enter_function(node.args, [], keep_params=False)
        self.scopes[-1].bound |= _scope_bindings([node.body])
        node.body = self.visit(node.body)
        self.scopes.pop()
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._visit_list(node.decorator_list)
        self._visit_list(node.bases)
        self._visit_list(node.keywords)
        if self.scopes and self.scopes[-1].kind != "class":
            node.name = self.resolve(node.name)
        self.scopes.append(_Scope("class", _scope_bindings(node.body), set()))
        self._visit_list(node.body)
        self.scopes.pop()
        return node

    def _visit_comprehension(self, node: ast.AST, parts: list[str]) -> ast.AST:
        generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        generators[0].iter = self.visit(generators[0].iter)
        targets = {
            n.id
            for g in generators
            for n in ast.walk(g.target)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        self.scopes.append(_Scope("comprehension", targets, set()))
        for i, generator in enumerate(generators):
            generator.target = self.visit(generator.target)
            if i:
                generator.iter = self.visit(generator.iter)
            self._visit_list(generator.ifs)
        for part in parts:
            setattr(node, part, self.visit(getattr(node, part)))
        self.scopes.pop()
        return node

    def visit_ListComp(self, node: ast.ListComp) -> ast.AST:
        return self._visit_comprehension(node, ["elt"])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> ast.AST:
        return self._visit_comprehension(node, ["key", "value"])

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
        # The current scope does not bind these names, so they resolve to the enclosing binding.
        node.names = [self.resolve(n) for n in node.names]
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = self.resolve(node.name)
        return self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.AST:
        if node.name:
            node.name = self.resolve(node.name)
        return self.generic_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.AST:
        if node.rest:
            node.rest = self.resolve(node.rest)
        return self.generic_visit(node)


def _scope_bindings(body: list[ast.stmt] | list[ast.expr]) -> set[str]:
    """Names bound in one function/class scope, minus those declared global or nonlocal."""
    bound: set[str] = set()
    declared: set[str] = set()
    for stmt in body:
        bound |= bound_at_module_scope(stmt)  # type: ignore[arg-type]
        for node in walk_scope([stmt]):
            if isinstance(node, ast.Global | ast.Nonlocal):
                declared.update(node.names)
    return bound - declared


# --------------------------------------------------------------------------- task-specific?

#: Numbers too common to say anything about the task they came from.
