"""Finding the actions a module defines, and how the coder sees them.

Everything here reads source with ``ast`` and never imports the user's files in the agent process:
their imports may exist only in the kernel, and running them on the host would be a side effect.
A module's actions are the names in its ``__all__`` when it defines one, else its public top-level
functions; only functions are listed (a class or constant in ``__all__`` is defined, not listed).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dynagraph.tools.codeparse import parse_python
from dynagraph.tools.errors import ConfigError

Origin = Literal["builtin", "user"]

#: Kernel-side modules of the builtin actions, in load order (helpers first).
BUILTIN_MODULE_NAMES = ("_common", "answer", "text", "media", "files", "web", "archive", "search")
PACKAGE = "dynagraph.tools.actions"
PACKAGE_DIR = Path(__file__).resolve().parent


class ActionsConfigError(ConfigError, ValueError):
    """The actions configuration cannot be used; the message is one line naming the fix."""


@dataclass(frozen=True)
class ActionSpec:
    """One action as the coder sees it beside the library hits.

    ``origin`` is ``"user"`` for the user's own tools: the librarian must never dedupe,
    generalize or replace them (they are not library records).
    """

    name: str
    signature: str
    docstring: str
    source_module: str
    origin: Origin = "builtin"

    def summary_line(self) -> str:
        """``name(signature) -> type: first docstring line``, like a library hit."""
        doc = self.docstring.strip().splitlines()[0].strip() if self.docstring.strip() else ""
        return f"{self.name}{self.signature}: {doc}" if doc else f"{self.name}{self.signature}"


@dataclass(frozen=True)
class ActionModule:
    """Source of one module of actions, as it will run in the kernel."""

    label: str  # how it is named to people: "tools.actions.files" or the user's entry
    filename: str  # the file name tracebacks show in the kernel
    module_name: str  # the module object it runs as in the kernel
    source: str
    names: tuple[str, ...]  # what it exports into the kernel's namespace
    specs: tuple[ActionSpec, ...]
    origin: Origin


def builtin_module_paths() -> list[Path]:
    return [PACKAGE_DIR / f"{name}.py" for name in BUILTIN_MODULE_NAMES]


def builtin_action_modules() -> list[ActionModule]:
    """The builtin modules with their in-package imports blanked (they share one namespace)."""
    modules = []
    for path in builtin_module_paths():
        source = path.read_text(encoding="utf-8")
        tree = parse_python(source, filename=str(path))
        label = f"{PACKAGE}.{path.stem}"
        modules.append(
            ActionModule(
                label=label,
                filename=f"<dynagraph-actions {path.name}>",
                module_name="dynagraph_actions",
                source=_blank_package_imports(source, tree),
                names=tuple(exported_names(tree)),
                specs=tuple(specs_from_tree(tree, label, "builtin")),
                origin="builtin",
            )
        )
    return modules


def user_action_modules(extra: list[str]) -> list[ActionModule]:
    """The user's tool files, each run as its own module in the kernel."""
    modules = []
    for index, entry in enumerate(extra):
        path = resolve_user_entry(entry)
        try:
            source = path.read_text(encoding="utf-8")
            tree = parse_python(source, filename=str(path))
        except (OSError, UnicodeDecodeError, SyntaxError) as exc:
            raise ActionsConfigError(
                f"actions.extra: cannot read {entry!r} ({path}): {type(exc).__name__}: {exc}"
            ) from None
        modules.append(
            ActionModule(
                label=entry,
                filename=str(path),
                module_name=f"dynagraph_user_tools_{index}_{_identifier(path.stem)}",
                source=source,
                names=tuple(exported_names(tree)),
                specs=tuple(specs_from_tree(tree, entry, "user")),
                origin="user",
            )
        )
    return modules


def resolve_user_entry(entry: str) -> Path:
    """A ``.py`` path (relative to the agent's cwd) or an importable module name -> its file."""
    candidate = Path(entry).expanduser()
    if entry.endswith(".py") or "/" in entry or "\\" in entry or candidate.is_file():
        if candidate.is_file():
            return candidate.resolve()
        raise ActionsConfigError(f"actions.extra: no file {entry!r} (from {Path.cwd()})")
    try:
        spec = importlib.util.find_spec(entry)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ActionsConfigError(
            f"actions.extra: {entry!r} is neither a .py file nor an importable Python module"
        )
    return Path(spec.origin).resolve()


def exported_names(tree: ast.Module) -> list[str]:
    """``__all__`` if the module assigns a literal one, else its public top-level functions."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, ast.Assign | ast.AnnAssign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in targets
        ):
            try:
                names = ast.literal_eval(node.value)
            except ValueError:
                break
            return [str(name) for name in names]
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
    ]


def specs_from_tree(tree: ast.Module, label: str, origin: Origin) -> list[ActionSpec]:
    """ActionSpecs of the exported top-level functions, in ``exported_names`` order."""
    functions = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    specs = []
    for name in exported_names(tree):
        node = functions.get(name)
        if node is not None:
            specs.append(
                ActionSpec(name, signature_of(node), ast.get_docstring(node) or "", label, origin)
            )
    return specs


def signature_of(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``(a: int, b: str = 'x') -> bool``, formatted the way ``inspect.signature`` prints it."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    parts = []
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        parts.append(_parameter(arg, default))
        if args.posonlyargs and index == len(args.posonlyargs) - 1:
            parts.append("/")
    if args.vararg is not None:
        parts.append("*" + _parameter(args.vararg, None))
    elif args.kwonlyargs:
        parts.append("*")
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        parts.append(_parameter(arg, default))
    if args.kwarg is not None:
        parts.append("**" + _parameter(args.kwarg, None))
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return f"({', '.join(parts)}){returns}"


def _parameter(arg: ast.arg, default: ast.expr | None) -> str:
    text = arg.arg
    if arg.annotation is not None:
        text += f": {ast.unparse(arg.annotation)}"
    if default is not None:
        text += (" = " if arg.annotation is not None else "=") + ast.unparse(default)
    return text


def _blank_package_imports(source: str, tree: ast.Module) -> str:
    """Blank ``from tools.actions... import`` lines, keeping line numbers for tracebacks."""
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (
            node.level > 0 or (node.module or "").startswith(PACKAGE)
        ):
            for number in range(node.lineno - 1, (node.end_lineno or node.lineno)):
                lines[number] = "\n"
    return "".join(lines)


def _identifier(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text)
    return cleaned or "tools"
