"""Jupyter kernels for the executor and the librarian: run model-written cells under limits.

One concern per module:

- ``session.py``: KernelSession (start, execute, interrupt -> grace -> restart, shutdown; it
  alone runs the bootstrap, once per start and once per restart);
- ``launch.py``: the kernel process (kernelspec, RLIMIT_AS, bubblewrap, death with the agent);
- ``environment.py``: the scrubbed environment kernels get;
- ``hardening.py``: which sandbox a kernel gets (``auto`` probes bubblewrap once) and the agent
  process made non-dumpable so kernels cannot read its /proc entries;
- ``cell.py``: one cell on the wire (receive loop, messages collected into a result);
- ``capture.py``: head + tail capture, ANSI stripping, HTML to text;
- ``result.py``: ExecutionResult and its rendering as an observation;
- ``registry.py``: kernels keyed by thread id; ``pool.py``: pre-warmed kernels;
- ``reaper.py``: kernel shutdowns in background threads, waited for at exit;
- ``definitions.py``: the one cell that defines a step's library functions, each on its own;
- ``views.py``: a task's folder mirrored (hard links) for a kernel started before the task;
- ``probes.py``: probe install / fetch / replay cells and their decoding, agent side;
- ``kernel_side/``: the code that runs inside kernels, as real Python files;
- ``settings.py``: the ``executor`` settings section; ``errors.py``: KernelError.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are loaded on first use (PEP 562): see _WHERE
    from dynagraph.tools.kernel.capture import OutputCapture, head_tail, html_to_text
    from dynagraph.tools.kernel.environment import DEFAULT_ENV_ALLOW, scrubbed_env
    from dynagraph.tools.kernel.errors import BWRAP_INSTALL_HINT, KernelError
    from dynagraph.tools.kernel.hardening import resolve_sandbox
    from dynagraph.tools.kernel.pool import KernelPool
    from dynagraph.tools.kernel.registry import KernelRegistry
    from dynagraph.tools.kernel.result import NAMESPACE_LOST_NOTE, ExecutionResult
    from dynagraph.tools.kernel.session import KernelSession

#: name -> module that defines it. Importing this package costs nothing: ``dynagraph --help``
#: and the settings (``tools.kernel.settings``) must not load jupyter_client and zmq. The rest
#: of a module is imported from the module itself (``tools.kernel.probes``, ``.cell``, ...).
_WHERE = {
    **dict.fromkeys(("OutputCapture", "head_tail", "html_to_text"), "capture"),
    **dict.fromkeys(("DEFAULT_ENV_ALLOW", "scrubbed_env"), "environment"),
    **dict.fromkeys(("BWRAP_INSTALL_HINT", "KernelError"), "errors"),
    "resolve_sandbox": "hardening",
    "KernelPool": "pool",
    "KernelRegistry": "registry",
    **dict.fromkeys(("NAMESPACE_LOST_NOTE", "ExecutionResult"), "result"),
    "KernelSession": "session",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BWRAP_INSTALL_HINT",
    "DEFAULT_ENV_ALLOW",
    "NAMESPACE_LOST_NOTE",
    "ExecutionResult",
    "KernelError",
    "KernelPool",
    "KernelRegistry",
    "KernelSession",
    "OutputCapture",
    "head_tail",
    "html_to_text",
    "resolve_sandbox",
    "scrubbed_env",
]
