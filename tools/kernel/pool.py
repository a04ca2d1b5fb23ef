"""A pool of pre-warmed kernels, so that a task starts in milliseconds instead of a cold start.

A cold kernel costs ~0.4-1 s (starting ipykernel) plus the executor's bootstrap (~0.1 s, the
probe recorder and the initial actions, which every session runs itself at start). The pool
pays both in the background, one kernel at a time, and hands a ready kernel to a task.

Rules:

- **Never reused.** A kernel taken from the pool belongs to one task; releasing it shuts it
  down (KernelRegistry.release). Nothing is ever returned to the pool.
- **Refills do not starve running tasks.** One refill thread starts one kernel at a time, only
  while fewer than ``size`` kernels wait. A burst of takes beyond the pool gets cold kernels
  started by the callers rather than a queue behind the refill.
- **Workdirs.** A task's working directory is only known at take(). A pooled kernel starts in a
  slot directory ``<slot_root>/<uuid>``. Without a sandbox, take() moves the kernel into the
  task's directory (KernelSession.move_to: the kernel chdirs, restarts start there) and removes
  the empty slot. Under bwrap the writable bind is fixed when the sandbox starts, so the kernel
  stays in its slot and the task's directory is created as a symlink to the slot: files the task
  writes are reached through the task's path from the host. If the task's directory already
  exists (a resumed thread), a sandboxed kernel cannot use it: take() returns a cold kernel.
- **No orphans.** Kernels the pool holds are shut down by close() and at interpreter exit; if
  the process is killed, each kernel dies with it (PR_SET_PDEATHSIG, see launch.py).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dynagraph.tools.kernel import reaper
from dynagraph.tools.kernel.cell import CellCancelled
from dynagraph.tools.kernel.session import KernelSession
from dynagraph.tools.tempfolders import owned_prefix, remove_dead

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 30.0
#: The pool's slots, under executor.workdir (graphs/services.py).
POOL_SLOTS = ".kernel-pool"


@dataclass
class PoolStats:
    """Counters for tests, benchmarks and logs."""

    warmed: int = 0  # kernels the refill thread started
    taken_warm: int = 0  # takes served by a pooled kernel
    taken_cold: int = 0  # takes that got a new, unstarted kernel
    failed: int = 0  # refill starts that failed
    discarded: int = 0  # pooled kernels found dead or unusable at take()


class KernelPool:
    """Up to `size` started, bootstrapped kernels waiting for tasks.

    `make_session(workdir)` builds an unstarted KernelSession for a directory; the pool calls it
    for its slots and for cold takes. take() returns a session the caller owns and must shut
    down; it is started already when it came from the pool, and unstarted otherwise (call
    start(): a no-op for a warm kernel), so a cold start never happens under a caller's lock.
    """

    def __init__(
        self,
        make_session: Callable[[Path], KernelSession],
        size: int,
        slot_root: str | Path,
        *,
        start: bool = True,
    ) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, not {size}")
        self.size = size
        self.slot_root = Path(slot_root).resolve()
        self.stats = PoolStats()
        self._make_session = make_session
        self._ready: deque[KernelSession] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._takes_left: int | None = None
        self._thread: threading.Thread | None = None
        close = weakref.WeakMethod(self.close)
        atexit.register(lambda: (method := close()) and method())
        if start:
            self.start()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the refill thread (idempotent)."""
        with self._cond:
            if self._closed or self._thread is not None or self.size == 0:
                return
            self._thread = threading.Thread(
                target=self._refill, name="dynagraph-kernel-pool", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 90.0) -> None:
        """Shut down every waiting kernel and the one being warmed; stop refilling; remove the
        slots' folder if nothing is left in it."""
        with self._cond:
            self._closed = True
            waiting = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
            thread = self._thread
        for session in waiting:  # in parallel; close() returns when they are gone
            self._discard(session)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        reaper.drain(timeout)
        with contextlib.suppress(OSError):  # kept while a sandboxed task's files are in a slot
            self.slot_root.rmdir()

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- use --------------------------------------------------------------------------------------
    def limit_takes(self, count: int | None) -> None:
        """Expect at most `count` more takes (None: no limit): the pool never warms more
        kernels than will be taken, so a batch's last tasks leave no kernel started for nothing."""
        with self._cond:
            self._takes_left = None if count is None else max(count, 0)
            extra = self._trim()
            self._cond.notify_all()
        for session in extra:
            self._discard(session)

    def _target(self) -> int:
        """How many kernels should wait now. Call with the condition held."""
        if self._takes_left is None:
            return self.size
        return min(self.size, self._takes_left)

    def _trim(self) -> list[KernelSession]:
        """Waiting kernels beyond the target, removed. Call with the condition held."""
        extra = []
        while len(self._ready) > self._target():
            extra.append(self._ready.pop())
        return extra

    def wait_ready(self, count: int | None = None, timeout: float = 120.0) -> bool:
        """Block until `count` (default: size) kernels wait in the pool; False on timeout."""
        wanted = self._target() if count is None else min(count, self._target())
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < wanted and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return len(self._ready) >= wanted

    def take(self, workdir: str | Path) -> KernelSession:
        """A kernel for the task whose working directory is `workdir`: warm if one waits."""
        workdir = Path(workdir)
        while True:
            with self._cond:
                session = self._ready.popleft() if self._ready else None
                if self._takes_left is not None:
                    self._takes_left = max(self._takes_left - 1, 0)
                self._cond.notify_all()  # the refill thread tops the pool up
            if session is None:
                break
            if not session.is_alive():
                self.stats.discarded += 1
                self._discard(session)
                continue
            try:
                if self._assign(session, workdir):
                    self.stats.taken_warm += 1
                    return session
            except Exception as exc:
                log.warning("pooled kernel could not move to %s: %s", workdir, exc)
                self.stats.discarded += 1
                self._discard(session)
                continue
            with self._cond:  # still pristine: keep it for the next task
                self._ready.appendleft(session)
                extra = self._trim()
            for spare in extra:
                self._discard(spare)
            break
        self.stats.taken_cold += 1
        return self._make_session(workdir)

    # -- internals --------------------------------------------------------------------------------
    def _assign(self, session: KernelSession, workdir: Path) -> bool:
        """Give a pooled kernel the task's directory; False if this kernel cannot use it."""
        slot = session.workdir
        if session.sandbox == "bwrap":
            if workdir.exists() or workdir.is_symlink():
                return False
            workdir.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(slot, workdir, target_is_directory=True)
            except FileExistsError:  # another task took the name meanwhile
                return False
            return True
        session.move_to(workdir)
        with contextlib.suppress(OSError):
            slot.rmdir()  # empty unless the bootstrap wrote files; then it stays
        return True

    def _new_slot(self) -> Path:
        """A new slot's path, named after this process (see :func:`remove_dead_slots`)."""
        return self.slot_root / (owned_prefix("") + uuid.uuid4().hex[:12])

    def _discard(self, session: KernelSession) -> None:
        """Shut a kernel down in the background (reaper.py), then remove its slot."""
        slot = session.workdir
        then = None
        if slot.parent == self.slot_root:  # never taken: the slot holds nothing of a task
            then = functools.partial(shutil.rmtree, slot, ignore_errors=True)
        reaper.reap(session, then=then)

    def _refill(self) -> None:
        backoff = 1.0
        while True:
            with self._cond:
                while not self._closed and len(self._ready) >= self._target():
                    self._cond.wait()
                if self._closed:
                    return
            session: KernelSession | None = None
            try:
                session = self._make_session(self._new_slot())
                session.start()
            except CellCancelled:  # the process is stopping (Ctrl-C): no traceback, no retry
                if session is not None:
                    self._discard(session)
                return
            except Exception as exc:  # never let the refill thread die: back off and retry
                self.stats.failed += 1
                log.warning(
                    "kernel pool: a kernel did not start (%s); retrying in %.0f s", exc, backoff
                )
                if session is not None:
                    self._discard(session)
                with self._cond:
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = 1.0
            with self._cond:
                closed = self._closed
                wanted = not closed and len(self._ready) < self._target()
                self.stats.warmed += 1
                if wanted:
                    self._ready.append(session)
                    self._cond.notify_all()
            if not wanted:  # closed, or no longer needed while it started
                self._discard(session)
            if closed:
                return


def remove_dead_slots(slot_root: Path, runs: Path) -> int:
    """Remove the slots that pools of processes killed before their close() left in
    ``slot_root`` (tools/tempfolders.py: a slot is named after its process), except a slot a
    task's folder in ``runs`` links to: under bubblewrap a taken slot *is* that task's folder."""
    if not slot_root.is_dir():
        return 0

    @functools.cache
    def linked() -> frozenset[Path]:  # listed once, and only if a slot of a dead owner is found
        with contextlib.suppress(OSError):
            return frozenset(p.resolve() for p in runs.iterdir() if p.is_symlink())
        return frozenset()

    return remove_dead(slot_root, "", keep=lambda slot: slot.resolve() in linked())
