"""No event loop left behind by jupyter_client's blocking calls.

jupyter_client's blocking methods (``KernelManager.start_kernel``, ``is_alive``,
``shutdown_kernel``, ``interrupt_kernel``, ``restart_kernel``, ``KernelClient.wait_for_ready``)
run a coroutine on an event loop that jupyter_core creates for the calling thread (and context)
and never closes. Its selector and self-pipe (two AF_UNIX sockets) live until the thread's state
is collected, and then warn "unclosed event loop": every worker thread that ever touched a kernel
(LangGraph's per-run pool, a batch worker, a reaper) leaves one behind, collected later in an
unrelated place. :func:`thread_loop_closed` closes the loop such a call created, once it
returns; a loop the thread had before is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from jupyter_core import utils as _jupyter_utils

__all__ = ["closing_thread_loop", "thread_loop_closed"]

F = TypeVar("F", bound=Callable[..., Any])


def _current() -> asyncio.AbstractEventLoop | None:
    """The open loop jupyter_core keeps for this thread and context, if any."""
    holder = getattr(_jupyter_utils, "_loop", None)  # a ContextVar, private to jupyter_core
    loop = holder.get() if holder is not None else None
    return loop if loop is not None and not loop.is_closed() else None


def _close_current() -> None:
    loop = _current()
    if loop is None or loop.is_running():
        return
    _jupyter_utils._loop.set(None)
    with warnings.catch_warnings(), contextlib.suppress(RuntimeError):
        warnings.simplefilter("ignore", DeprecationWarning)
        if asyncio.get_event_loop_policy().get_event_loop() is loop:
            asyncio.set_event_loop(None)
    loop.close()


@contextlib.contextmanager
def thread_loop_closed() -> Iterator[None]:
    """Close, on the way out, the event loop jupyter_core created for this thread inside."""
    before = _current()
    try:
        yield
    finally:
        if before is None:
            _close_current()


def closing_thread_loop(method: F) -> F:
    """``method`` (a blocking jupyter_client call) run under :func:`thread_loop_closed`."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with thread_loop_closed():
            return method(*args, **kwargs)

    return call  # type: ignore[return-value]
