"""KernelRegistry: the task kernels, keyed by thread id, outside graph state."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable

from dynagraph.tools.kernel import reaper
from dynagraph.tools.kernel.cell import CellCancelled
from dynagraph.tools.kernel.session import KernelSession

__all__ = ["KernelRegistry"]

log = logging.getLogger(__name__)


#: How long a kernel start still in progress is waited for: by shutdown_all(), by get() (a
#: prestart building the kernel it asks for) and by graphs/scratch.py's close().
PRESTART_JOIN_S = 30.0


class KernelRegistry:
    """Kernels keyed by thread id, outside graph state. One kernel per task; never reused.

    Graph state must stay serializable, so nodes find their task's kernel here by thread id.
    All kernels are shut down at interpreter exit.
    """

    def __init__(self, factory: Callable[[str], KernelSession]) -> None:
        self._factory = factory
        self._sessions: dict[str, KernelSession] = {}
        self._prestart_threads: set[threading.Thread] = set()
        #: prestarts that have not stored their session yet, each with the event it sets then
        #: (get() waits for it instead of racing it; release() takes it away: not wanted)
        self._registering: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        shutdown_all = weakref.WeakMethod(self.shutdown_all)
        atexit.register(lambda: (method := shutdown_all()) and method())

    def get(self, thread_id: str) -> KernelSession:
        """The thread's kernel, created and started on first use (a prestart in progress is
        waited for, not duplicated: two callers must never start two kernels for one task)."""
        with self._lock:
            registering = self._registering.get(thread_id)
        if registering is not None:
            registering.wait(PRESTART_JOIN_S)
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
            session.shutdown()  # no process to stop: its owner's hooks run before any retry
            raise
        return session

    def prestart(self, thread_id: str) -> None:
        """Build and start the thread's kernel in a background thread, so that it is up by the
        time the first cell needs it (the planner calls this before its model call: a slow model
        hides the kernel start). A no-op if the thread has a kernel. A start that fails is
        dropped quietly; get() then starts a new one and reports why it cannot."""
        with self._lock:
            if thread_id in self._sessions or thread_id in self._registering:
                return
            registered = self._registering[thread_id] = threading.Event()
            thread = threading.Thread(
                target=self._prestart,
                args=(thread_id, registered),
                name="dynagraph-kernel-prestart",
                daemon=True,
            )
            self._prestart_threads.add(thread)
        thread.start()

    def _prestart(self, thread_id: str, registered: threading.Event) -> None:
        session: KernelSession | None = None
        try:
            session = self._factory(thread_id)  # off the caller's thread: settings, sandbox probe
            with self._lock:
                wanted = self._registering.get(thread_id) is registered
                wanted = wanted and thread_id not in self._sessions
                if wanted:
                    self._sessions[thread_id] = session
                self._registered(thread_id, registered)
            if not wanted:  # released meanwhile, or get() made its own: not ours to start
                reaper.reap(session)
                return
            session.start()  # get() meanwhile waits on the session's lock, then finds it up
        except Exception as exc:  # the unstarted session stays: get() starts it or says why
            log.debug("kernel prestart for %s failed: %s", thread_id, exc)
        except CellCancelled:  # the process is stopping (a signal): its cleanup reaps the kernel
            log.debug("kernel prestart for %s stopped: the process is stopping", thread_id)
        finally:
            with self._lock:
                self._registered(thread_id, registered)
                self._prestart_threads.discard(threading.current_thread())

    def _registered(self, thread_id: str, registered: threading.Event) -> None:
        """The prestart that set up ``registered`` has stored its session (or given up): get()
        may go on. Called with the lock held."""
        if self._registering.get(thread_id) is registered:
            del self._registering[thread_id]
        registered.set()

    def peek(self, thread_id: str) -> KernelSession | None:
        with self._lock:
            return self._sessions.get(thread_id)

    def release(self, thread_id: str) -> None:
        """Forget the thread's kernel and shut it down in the background (reaper.py): the
        session refuses cells at once; reaper.drain() waits for the process to be gone. No-op
        if there is none; a start still running in prestart()'s thread is reaped when it ends."""
        with self._lock:
            session = self._sessions.pop(thread_id, None)
            registering = self._registering.pop(thread_id, None)  # its session: not wanted
        if registering is not None:
            registering.set()
        if session is not None:
            reaper.reap(session)

    def shutdown_all(self) -> None:
        """Shut every kernel down (in parallel) and return when they are gone.

        A kernel still starting in prestart()'s thread is waited for first: shutting it down
        (or leaving the interpreter) under a start in progress breaks its ZMQ sockets."""
        with self._lock:
            starting = list(self._prestart_threads)
        for thread in starting:
            thread.join(timeout=PRESTART_JOIN_S)
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            reaper.reap(session)
        if sessions:
            reaper.drain()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
