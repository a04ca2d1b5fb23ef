"""Work started now in a daemon thread of its own, its result (or exception) a ``Future``.

Why not a ThreadPoolExecutor: these jobs start kernels and define functions in them ahead of
need (graphs/scratch.py, nodes/executor.py); a pool's worker threads are joined at
interpreter exit, while a daemon thread leaves that to the owners' own close(), which waits
for what must finish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

__all__ = ["in_background"]


def in_background(job: Callable[[], T], name: str) -> Future[T]:
    """Run ``job`` in a new daemon thread called ``name``; its Future holds what it returns or
    raises (BaseException included: a KeyboardInterrupt there is the job's outcome too)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(job())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
