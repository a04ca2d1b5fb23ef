"""The one reader of a function's parameters, from its code or its ``(a, b=2) -> int`` signature.

Every comparison the librarian makes on interfaces (which of two duplicates is more general,
whether two functions can take each other's calls, whether a generalization extends the
original, how wide a task-specific function's interface is) reads :class:`Parameters` from
here, parsed through ``codeparse.parse_python`` (the lock that CPython 3.11's parser needs when
tasks run in threads).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass

from dynagraph.tools.codeparse import parse_python, strip_magics

__all__ = ["Parameters", "parameters"]


@dataclass(frozen=True)
class Parameters:
    """What a function takes, by name and kind."""

    #: positional parameters in order (positional-only first)
    positional: tuple[str, ...]
    keyword_only: tuple[str, ...]
    #: how many of the last positional parameters have defaults
    positional_defaults: int
    #: every keyword-only parameter has a default
    keyword_defaults_all: bool
    var_positional: bool
    var_keyword: bool
    #: the parameter list as source (``a, b=2, *, c``), to write an adapter with it
    source: str

    @property
    def names(self) -> tuple[str, ...]:
        """Every named parameter (not ``*args`` / ``**kwargs``)."""
        return self.positional + self.keyword_only

    @property
    def count(self) -> int:
        """How many parameters, ``*args`` and ``**kwargs`` included."""
        return len(self.names) + self.var_positional + self.var_keyword

    @property
    def shape(self) -> tuple[int, int]:
        """(required positional, named): two functions of one shape can be called with each
        other's arguments."""
        return len(self.positional) - self.positional_defaults, len(self.names)

    def extends(self, old: Parameters) -> bool:
        """This function takes ``old``'s positional parameters first, and every extra one has a
        default: calls written for ``old`` bind unchanged."""
        if self.positional[: len(old.positional)] != old.positional:
            return False
        extra = len(self.positional) - len(old.positional)
        return extra <= self.positional_defaults and self.keyword_defaults_all


def parameters(signature_or_code: str) -> Parameters | None:
    """The parameters of the first function ``signature_or_code`` defines, or of a signature
    such as ``(a, b=2) -> int``; None when it does not parse or defines no function."""
    text = textwrap.dedent(signature_or_code).strip()
    is_code = text.startswith(("def ", "async def ", "@"))
    source = strip_magics(text) if is_code else f"def _f{text}: pass"
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError):
        return None
    node = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None
    )
    if node is None:
        return None
    args = node.args
    return Parameters(
        positional=tuple(a.arg for a in args.posonlyargs + args.args),
        keyword_only=tuple(a.arg for a in args.kwonlyargs),
        positional_defaults=len(args.defaults),
        keyword_defaults_all=all(d is not None for d in args.kw_defaults),
        var_positional=args.vararg is not None,
        var_keyword=args.kwarg is not None,
        source=ast.unparse(args),
    )
