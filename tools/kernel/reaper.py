"""Kernel shutdowns off the caller's path: a task's answer never waits for its kernels to exit.

A graceful kernel shutdown takes 0.1-0.5 s (ipykernel tears down its threads and sockets, the
interpreter exits), more on a busy machine. ``reap(session)`` closes the session for its owner
at once (a further cell raises KernelError) and shuts the kernel down in a background thread;
``drain()`` waits for every reap still running, and runs at interpreter exit, so nothing is left
behind: no kernel process, no runtime folder. A kernel whose process is killed outright still
dies with it (PR_SET_PDEATHSIG, launch.py).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable

from dynagraph.tools.kernel.session import KernelSession

__all__ = ["drain", "pending", "reap"]

log = logging.getLogger(__name__)

_lock = threading.Condition()
_running: set[threading.Thread] = set()


def reap(session: KernelSession, then: Callable[[], None] | None = None) -> None:
    """Shut ``session`` down in the background, then call ``then`` (cleanup of its folder);
    the session refuses new cells from now on."""
    session.retire()
    thread = threading.Thread(
        target=_shutdown, args=(session, then), name="dynagraph-kernel-reaper", daemon=True
    )
    with _lock:
        _running.add(thread)
    thread.start()


def _shutdown(session: KernelSession, then: Callable[[], None] | None) -> None:
    try:
        try:
            session.shutdown()
        except Exception as exc:
            log.warning("kernel shutdown failed: %s", exc)
        if then is not None:
            try:
                then()
            except Exception as exc:
                log.warning("cleanup after a kernel shutdown failed: %s", exc)
    finally:  # drain() must not wait for a thread that is gone
        with _lock:
            _running.discard(threading.current_thread())
            _lock.notify_all()


def pending() -> int:
    """How many shutdowns are still running."""
    with _lock:
        return len(_running)


def drain(timeout: float = 30.0) -> bool:
    """Wait until every reap has finished; False if some were still running at ``timeout``."""
    deadline = time.monotonic() + timeout
    with _lock:
        while _running:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _lock.wait(left)
    return True


atexit.register(drain)
