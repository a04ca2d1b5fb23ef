"""Output of a thread belongs to the cell that started it; run after every (re)start.

ipykernel tags every output message with a parent header: the calling thread's own one if it
set one (``set_thread_parent``, a context variable), else the *current* cell's. So a thread an
earlier cell left running (a ticker, a watcher) speaks for whatever cell runs now, and its
output would be shown as that cell's. Here every thread started from now on takes the parent of
the thread that started it (the cell running at ``start()``), and every job handed to a
``ThreadPoolExecutor`` takes the parent of the code that submitted it (pool threads outlive
cells). The host then sees a late thread's output under the earlier cell's id, and reports it
as background output, never as the current cell's (tools/kernel/cell.py).
"""

from __future__ import annotations

from typing import Any


def install(shell: Any) -> None:
    import contextlib
    import sys
    import threading
    from concurrent.futures import thread as futures_thread

    if getattr(threading.Thread.start, "_dynagraph_parent", False):
        return  # a restart reruns the startup code in a new process; this guards a rerun

    def targets() -> list[Any]:
        found = [sys.stdout, sys.stderr, getattr(shell, "display_pub", None)]
        return [t for t in found if hasattr(t, "set_thread_parent")]

    def current() -> list[tuple[Any, Any]]:
        return [(target, target.parent_header) for target in targets()]

    def adopt(parents: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        return [(target, target.set_thread_parent(parent)) for target, parent in parents]

    def restore(tokens: list[tuple[Any, Any]]) -> None:
        for target, token in tokens:
            with contextlib.suppress(Exception):
                target.reset_thread_parent(token)

    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        parents = current()
        run = self.run

        def run_as_starter() -> None:
            adopt(parents)  # this thread's own context: nothing to reset
            run()

        self.run = run_as_starter  # type: ignore[method-assign]
        original_start(self)

    start._dynagraph_parent = True  # type: ignore[attr-defined]
    threading.Thread.start = start  # type: ignore[method-assign]

    original_submit = futures_thread.ThreadPoolExecutor.submit

    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        parents = current()

        def call_as_submitter(*call_args: Any, **call_kwargs: Any) -> Any:
            tokens = adopt(parents)
            try:
                return fn(*call_args, **call_kwargs)
            finally:
                restore(tokens)

        return original_submit(self, call_as_submitter, *args, **kwargs)

    futures_thread.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
