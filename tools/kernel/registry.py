"""KernelRegistry: the task kernels, keyed by thread id, outside graph state."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable

from dynagraph.tools.kernel.session import KernelSession

__all__ = ["KernelRegistry"]

log = logging.getLogger(__name__)


class KernelRegistry:
    """Kernels keyed by thread id, outside graph state. One kernel per task; never reused.

    Graph state must stay serializable, so nodes find their task's kernel here by thread id.
    All kernels are shut down at interpreter exit.
    """

    def __init__(self, factory: Callable[[str], KernelSession]) -> None:
        self._factory = factory
        self._sessions: dict[str, KernelSession] = {}
        self._lock = threading.Lock()
        shutdown_all = weakref.WeakMethod(self.shutdown_all)
        atexit.register(lambda: (method := shutdown_all()) and method())

    def get(self, thread_id: str) -> KernelSession:
        """The thread's kernel, created and started on first use."""
        with self._lock:
            session = self._sessions.get(thread_id)
            if session is None:
                session = self._factory(thread_id)
                self._sessions[thread_id] = session
        try:
            session.start()
        except Exception:
            with self._lock:
                if self._sessions.get(thread_id) is session:
                    del self._sessions[thread_id]
            raise
        return session

    def peek(self, thread_id: str) -> KernelSession | None:
        with self._lock:
            return self._sessions.get(thread_id)

    def release(self, thread_id: str) -> None:
        """Shut the thread's kernel down and forget it (no-op if there is none)."""
        with self._lock:
            session = self._sessions.pop(thread_id, None)
        if session is not None:
            session.shutdown()

    def shutdown_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            try:
                session.shutdown()
            except Exception as exc:
                log.warning("kernel shutdown failed: %s", exc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
