"""Code that runs inside the kernel process, kept as ordinary Python files.

Why files and not strings: they are linted, type-checked and importable host-side (tests call
``probe_recorder.results_equal`` directly), yet the kernel never imports dynagraph. Each module
is read as text with importlib.resources and shipped as a cell (:func:`cell`) that executes it in
a private namespace and calls one of its functions, so the kernel may run another interpreter
than the agent, and the user namespace gains only names starting with ``__dynagraph_``.
``launcher.py`` is the exception: it is the kernel process's ``python -c`` program.

Rules for these modules: standard library (and IPython objects passed in) only, imports inside
functions where a name must not leak into the kernel at module level, and nothing at import time
beyond definitions.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["cell", "source"]


@cache
def source(module: str) -> str:
    """The text of ``kernel_side/<module>.py``."""
    return resources.files(__name__).joinpath(f"{module}.py").read_text(encoding="utf-8")


def cell(
    modules: str | tuple[str, ...],
    function: str = "",
    args: str = "",
    exports: dict[str, str] | None = None,
) -> str:
    """A cell that runs ``modules`` (in order) in one private namespace, then calls its
    ``function`` with ``args`` (source text evaluated in the user namespace, e.g.
    ``"get_ipython(), 5"``), binds ``exports`` (user name -> name in the private namespace) and
    leaves no other name behind."""
    names = (modules,) if isinstance(modules, str) else modules
    lines = [f"__dynagraph_ns__ = {{'__name__': 'dynagraph_kernel_side_{names[-1]}'}}"]
    lines += [
        f"exec(compile({source(name)!r}, '<dynagraph:{name}>', 'exec'), __dynagraph_ns__)"
        for name in names
    ]
    if function:
        lines.append(f"__dynagraph_ns__[{function!r}]({args})")
    lines += [f"{user} = __dynagraph_ns__[{name!r}]" for user, name in (exports or {}).items()]
    lines.append("del __dynagraph_ns__")
    return "\n".join(lines) + "\n"
