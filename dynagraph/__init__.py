"""dynagraph: an agent that writes and runs Python and keeps the functions it writes.

The public API, for scripts that invoke the agent::

    from dynagraph import run_task, load_settings, Context
    result = run_task("What is 17 * 23?", load_settings("configs/default.yaml"))
    print(result.answer, result.functions_created)

Everything is imported lazily (PEP 562): the kernel-side bootstrap imports
``dynagraph.tools.actions`` inside every Jupyter kernel, and that must not load LangGraph.
The packages themselves are ``dynagraph.graphs`` (composition root), ``dynagraph.nodes``
(the agent) and ``dynagraph.tools`` (machinery), imported in that one direction.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, str] = {
    "build_graph": "dynagraph.graphs.graph",
    "run_task": "dynagraph.graphs.run",
    "TaskResult": "dynagraph.graphs.run",
    "run_batch": "dynagraph.graphs.batch",
    "load_settings": "dynagraph.graphs.settings",
    "Settings": "dynagraph.graphs.settings",
    "Services": "dynagraph.graphs.services",
    "Context": "dynagraph.nodes.context",
    "DynagraphError": "dynagraph.tools.errors",
    "ConfigError": "dynagraph.tools.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dynagraph' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return __all__
