"""The librarian's scratch kernels: started ahead, kept warm between tasks, shown the task's folder.

Why: a new kernel costs 0.4-1 s of start (more on a busy machine) while a task's probe
replays take milliseconds; a process that runs many tasks (``dynagraph batch``, a long-lived
caller, the evals) paid that start in every librarian run.

- :meth:`ScratchKernels.take` hands out a kernel started ahead for the task's folder
  (:meth:`prestart`, asked by the planner once the task has a candidate), else the kernel kept
  from an earlier task, else a new one.
- :meth:`ScratchKernels.release` keeps a healthy kernel for the next task, for at most
  ``librarian.scratch_reuse`` tasks (0: a new kernel per task); any other is reaped in the
  background. At most one is kept; :meth:`close` reaps it.
- Isolation between tasks is the verifier's isolation between checks (tools/librarian/
  scratch.py): before each check the kernel's names are reset to what its bootstrap left. A
  kernel in which a replay replaced a value of a module it had at its baseline (a
  monkeypatched ``json.dumps`` or ``builtins.abs``) is not kept; other module state (a list
  changed in place) is shared, for at most ``scratch_reuse`` tasks.
- Under bubblewrap a kernel's binds are fixed when it starts, so a kept kernel cannot get the
  next task's folder by a bind: kernels for task folders are started with a private view folder
  bound at the path of ``executor.workdir``, and take() fills the view with the one task's
  folder (tools/kernel/views.py; a pooled task's folder is a link to its kernel's slot: the link
  and the slot's files are shown); release() empties it. The kernel sees that task's files at
  their own paths and no other task's. A folder elsewhere or one too big to mirror gets a new
  kernel with the folder bound directly, never kept.
"""

from __future__ import annotations

import shutil
import threading
import weakref
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from dynagraph.graphs.settings import Settings
from dynagraph.tools.background import in_background
from dynagraph.tools.kernel import KernelPool, KernelSession, reaper, resolve_sandbox
from dynagraph.tools.kernel.registry import PRESTART_JOIN_S
from dynagraph.tools.kernel.views import TooBigToMirror, mirror_folder
from dynagraph.tools.librarian.scratch import modules_changed
from dynagraph.tools.tempfolders import SCRATCH_PREFIX, private_folder

#: Builds an unstarted kernel with the executor's limits: (workdir, share=..., views=...).
SessionFactory = Callable[..., KernelSession]
#: Under executor.workdir: the views of the tasks' folders kept kernels see (bubblewrap).
VIEWS_FOLDER = ".scratch-views"


@dataclass
class _Kept:
    """What this class knows of a kernel it may keep."""

    view_root: Path | None  # bound at executor.workdir's path (bubblewrap), else None
    tasks: int = 0  # tasks it has served (released)


class ScratchKernels:
    """Scratch kernels for one Services (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        pool: Callable[[], KernelPool | None],
    ) -> None:
        self.settings = settings
        self._factory = session_factory
        self._pool = pool
        self._lock = threading.Lock()
        self._ahead: dict[str, Future[KernelSession]] = {}  # by task folder: prestart()
        self._dropped: set[Future[KernelSession]] = set()  # unclaimed, maybe still starting
        self._kept: KernelSession | None = None
        self._known: dict[int, _Kept] = {}  # id(session) -> what may be kept of it
        self._closed = False

    @property
    def runs(self) -> Path:
        return self.settings.path(self.settings.executor.workdir).resolve()

    @property
    def views(self) -> Path:
        """Where the kept kernels' views of the tasks' folders are made (under bubblewrap)."""
        return self.runs / VIEWS_FOLDER

    @property
    def sandboxed(self) -> bool:
        return resolve_sandbox(self.settings.executor.sandbox).mode == "bwrap"

    # -- handing out ------------------------------------------------------------------------------
    def take(
        self, workdir: str | Path | None = None, cwd: str | Path | None = None
    ) -> KernelSession:
        """A started, bootstrapped kernel whose replays can run in ``cwd``. ``workdir`` is the
        kernel's folder when a kernel is started for this caller alone (a folder outside the
        tasks' folders under bubblewrap); kernels that may be kept use folders of their own."""
        session = None
        if cwd is not None:
            with self._lock:
                ahead = self._ahead.pop(str(Path(cwd).resolve()), None)
            if ahead is not None and ahead.exception() is None:
                session = ahead.result()
        if session is None:
            with self._lock:
                session, self._kept = self._kept, None
            if session is not None and not session.is_alive():  # died while kept: replace it
                self._retire(session)
                session = None
        if session is None:
            session = self._start(workdir, cwd)
        if self._show(session, cwd):
            return session
        with self._lock:  # the folder cannot be shown in a view: a kernel that binds it
            keep = self._kept is None and not self._closed
            if keep:
                self._kept = session
        if not keep:
            self._retire(session)
        return self._start(workdir, cwd, keepable=False)

    def prestart(self, cwd: str | Path) -> None:
        """Start a scratch kernel for the task in ``cwd`` in a background thread, unless one is
        kept already; take(cwd=cwd) hands it over. Unclaimed: drop() reaps it."""
        key = str(Path(cwd).resolve())
        with self._lock:
            if key in self._ahead or self._kept is not None or self._closed:
                return
            # failed: take() starts a new one and says why
            self._ahead[key] = in_background(
                lambda: self._start(None, cwd), "dynagraph-scratch-prestart"
            )

    def drop(self, cwd: str | Path) -> None:
        """Reap a kernel started ahead for ``cwd`` that nobody claimed (a no-op otherwise)."""
        with self._lock:
            ahead = self._ahead.pop(str(Path(cwd).resolve()), None)
            if ahead is not None:
                self._dropped.add(ahead)
        if ahead is not None:
            ahead.add_done_callback(self._retire_started)

    def _retire_started(self, started: Future[KernelSession]) -> None:
        """Reap a dropped kernel once started (once: close() may ask again)."""
        with self._lock:
            if started not in self._dropped:
                return
            self._dropped.discard(started)
        if started.exception() is None:
            self._retire(started.result())

    def release(self, session: KernelSession, then: Callable[[], None] | None = None) -> None:
        """The caller is done with ``session``: kept for the next task when it may be, else
        reaped in the background; ``then`` runs once the caller's folder is no longer used."""
        kept = self._known.get(id(session))
        if kept is not None and kept.view_root is not None:  # all of it: what the task's
            self._hide(list(kept.view_root.iterdir()))  # replays wrote elsewhere in the view too
        reuse = self.settings.librarian.scratch_reuse
        keepable = kept is not None and kept.tasks + 1 < reuse and session.is_alive()
        keepable = keepable and not modules_changed(session)  # a replay patched a module
        with self._lock:
            keep = keepable and not self._closed and self._kept is None
            if keep:
                assert kept is not None
                kept.tasks += 1
                self._kept = session
        if keep:
            if then is not None:
                then()
            return
        self._retire(session, then)

    def close(self) -> None:
        """Reap every scratch kernel; starts still running (claimed or dropped) are waited for,
        as the registry's prestarts are: interpreter exit under a start in progress closes its
        ZMQ sockets under the thread polling them (weakref finalizers run at exit)."""
        with self._lock:
            self._closed = True
            self._dropped.update(self._ahead.values())
            self._ahead.clear()
            dropped = list(self._dropped)
            kept, self._kept = self._kept, None
        futures.wait(dropped, timeout=PRESTART_JOIN_S)
        for started in dropped:  # a done one is reaped now, one still starting when it is ready
            started.add_done_callback(self._retire_started)
        if kept is not None:
            self._retire(kept)

    # -- kernels ----------------------------------------------------------------------------------
    def _start(
        self, workdir: str | Path | None, cwd: str | Path | None, *, keepable: bool = True
    ) -> KernelSession:
        """A new started kernel. Keepable ones get their own folder and, under bubblewrap, a
        view; others (or a task folder a view cannot show) get ``cwd`` bound directly."""
        own = keepable or workdir is None
        # named after this process: a later one removes them if it is killed (tempfolders)
        folder = private_folder(SCRATCH_PREFIX) if own else Path(workdir)
        view_root: Path | None = None
        share: tuple[tuple[Path, bool], ...] = ()
        if self.sandboxed and cwd is not None and Path(cwd).is_dir():
            if keepable and self._viewable(Path(cwd)):
                view_root = private_folder("", parent=self.views)
            else:
                keepable = False
                share = ((Path(cwd), Path(cwd).resolve().is_relative_to(self.runs)),)
        pool = self._pool()
        if pool is not None and not self.sandboxed:  # warm and bootstrapped already
            session = pool.take(folder)
        elif view_root is not None:
            session = self._factory(folder, views=((view_root, self.runs),))
        else:
            session = self._factory(folder, share=share)
        for made in (folder if own else None, view_root):
            if made is not None:  # removed after the kernel, or at exit if never shut down
                session.after_shutdown.append(weakref.finalize(session, shutil.rmtree, made, True))
        try:
            session.start()
        except BaseException:
            session.shutdown()
            raise
        if keepable:
            self._known[id(session)] = _Kept(view_root)
        return session

    def _viewable(self, cwd: Path) -> bool:
        """A task's folder: directly under executor.workdir, itself or a link to a pooled
        kernel's slot below it (a pooled task under bubblewrap: tools/kernel/pool.py)."""
        runs = self.runs
        return cwd.parent.resolve() == runs and cwd.resolve().is_relative_to(runs)

    def _show(self, session: KernelSession, cwd: str | Path | None) -> bool:
        """Mirror ``cwd`` into the session's view, if it has one; False if it must be bound.
        A link to a slot is shown as the link and the slot's files, both at their paths."""
        kept = self._known.get(id(session))
        if kept is None or kept.view_root is None or cwd is None or not Path(cwd).is_dir():
            return True
        folder = Path(cwd)
        if not self._viewable(folder):
            return False
        real = folder.resolve()
        target = kept.view_root / real.relative_to(self.runs)
        shown = [target]
        try:
            shutil.rmtree(target, ignore_errors=True)
            mirror_folder(real, target)
            if folder.is_symlink():
                link = kept.view_root / folder.name
                link.unlink(missing_ok=True)
                link.symlink_to(folder.readlink(), target_is_directory=True)
                shown.append(link)
        except (TooBigToMirror, OSError):
            self._hide(shown)
            return False
        return True

    @staticmethod
    def _hide(shown: list[Path]) -> None:
        for path in shown:
            if path.is_symlink():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)

    def _retire(self, session: KernelSession, then: Callable[[], None] | None = None) -> None:
        self._known.pop(id(session), None)
        reaper.reap(session, then=then)
