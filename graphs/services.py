"""The services nodes use, built once per graph from settings and passed to the nodes.

Everything is created lazily: importing ``graphs.graph`` (as LangGraph Studio does) costs
nothing and needs no API key; the first node that needs a library, a kernel or a model
builds it. Kernels live in a registry keyed by thread id, outside the graph state.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from dynagraph.graphs.scratch import VIEWS_FOLDER, ScratchKernels
from dynagraph.graphs.settings import Settings, dynagraph_home
from dynagraph.tools.actions import (
    AgentProxy,
    action_specs,
    kernel_bootstrap,
    start_agent_proxy,
)
from dynagraph.tools.embeddings import Embedder, make_embedder
from dynagraph.tools.errors import ConfigError
from dynagraph.tools.kernel import (
    DEFAULT_ENV_ALLOW,
    KernelPool,
    KernelRegistry,
    KernelSession,
    probes,
    reaper,
    scrubbed_env,
)
from dynagraph.tools.kernel.pool import POOL_SLOTS, remove_dead_slots
from dynagraph.tools.library import FunctionLibrary, open_library
from dynagraph.tools.models import ModelFactory
from dynagraph.tools.tempfolders import remove_dead, sweep_temp

log = logging.getLogger(__name__)

#: A thread id longer than this gets a folder named by a digest (file names: 255 bytes).
_PLAIN_ID_MAX = 100


def _remove_unused_folder(session: KernelSession, folder: Path) -> None:
    """After ``session`` has shut down: remove its task's ``folder`` if the session ran none
    of the task's cells and the folder is empty (a link to a pooled kernel's slot, under
    bubblewrap: the link and the empty slot). A folder with anything in it stays."""
    if session.cells_run:
        return
    try:
        if folder.is_symlink():
            slot = folder.resolve()
            if slot.is_dir():
                slot.rmdir()  # OSError when not empty: both stay
            folder.unlink()
        else:
            folder.rmdir()  # only an empty folder
    except OSError as exc:  # not empty, or gone already
        log.debug("task folder %s kept: %s", folder, exc)


class Services:
    """Library, embedder, kernels and chat models for one graph."""

    def __init__(self, settings: Settings, *, library: FunctionLibrary | None = None) -> None:
        self.settings = settings
        self._library = library
        self._lock = threading.Lock()
        self.models = ModelFactory(settings.models)
        self.kernels = KernelRegistry(self._new_kernel)
        self._kernel_pool: KernelPool | None = None
        self._bootstrap: str | None = None
        self._embed_worker: ThreadPoolExecutor | None = None
        self._closed = False
        self._bootstrap_lock = threading.Lock()

    # -- embeddings and library -------------------------------------------------------------
    @cached_property
    def embedder(self) -> Embedder:
        emb = self.settings.embeddings
        kwargs: dict[str, Any] = {}
        if emb.provider == "openai":
            kwargs = {
                "model": emb.model,
                "base_url": emb.base_url,
                "api_key_env": emb.api_key_env,
                "max_chars": emb.max_chars,
            }
        return make_embedder(emb.provider, **kwargs)

    def embed_ahead(self, texts: list[str]) -> None:
        """Embed passages in the background (one at a time, in order) into the embedder's
        cache: the planner sends the task's candidates while its model thinks, so the
        librarian's neighbour search and write find their vectors ready."""
        worker = self._ahead_worker()
        if worker is None:
            return
        for text in texts:  # one text a job: a step's query waits for one passage at most
            worker.submit(self.embedder.embed_documents, [text])  # a failure: embedded again later

    def prepare_search_ahead(self, text: str) -> None:
        """Have the library embed a search text in the background (opening a SQLite library
        there, off the caller's path, if it is not open yet; a Weaviate library only if it is
        open already): the planner sends the task's part of the coder's query while its first
        model request is out, so the first step's search embeds only the step's instruction.
        A hint: a failure is logged, the search reports its own."""
        worker = self._ahead_worker()
        if worker is not None:
            worker.submit(self._prepare_search, text)

    def _prepare_search(self, text: str) -> None:
        try:
            with self._lock:
                if self._closed:  # never reopen a library after close()
                    return
                if self._library is None and self.settings.library.backend != "sqlite":
                    return  # a server is not connected for a hint: a down one is tried once
                library = self._open_library()
            library.prepare_search(text)
        except Exception as exc:  # noqa: BLE001 - a hint in a background thread (docstring)
            log.debug("search text not prepared ahead: %r", exc)

    def _ahead_worker(self) -> ThreadPoolExecutor | None:
        """The one background thread of the work done ahead (None once closed)."""
        with self._lock:
            if self._closed:
                return None
            if self._embed_worker is None:
                self._embed_worker = ThreadPoolExecutor(1, thread_name_prefix="dynagraph-embed")
            return self._embed_worker

    @property
    def library(self) -> FunctionLibrary:
        with self._lock:
            return self._open_library()

    def _open_library(self) -> FunctionLibrary:
        """The library, opened on first use. Called with ``self._lock`` held."""
        if self._library is None:
            lib = self.settings.library
            if lib.backend == "sqlite":
                path = self.settings.path(lib.path)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # a file where a folder should be, no permission
                    in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
                    why = "a file is in the way" if in_the_way else exc.strerror
                    raise ConfigError(
                        f"cannot make the library's folder {path.parent} ({why or exc}); "
                        "set library.path"
                    ) from exc
                self._library = open_library("sqlite", path=path, embedder=self.embedder)
            else:
                self._library = self._open_weaviate(flush_on_open=True)
        return self._library

    def _open_weaviate(self, *, flush_on_open: bool) -> FunctionLibrary:
        """Weaviate behind a local outbox: admissions made while it is down are kept."""
        from dynagraph.tools.library.weaviate import WeaviateConfig
        from dynagraph.tools.library.weaviate_open import open_weaviate_library

        lib = self.settings.library
        library = open_weaviate_library(
            self.embedder,
            WeaviateConfig.from_mapping(lib.weaviate),
            self.settings.path(lib.outbox_path),
            flush_on_open=flush_on_open,
        )
        flushed = getattr(library, "last_flush", None)
        if flush_on_open and flushed is not None and getattr(flushed, "sent", 0):
            print(f"dynagraph: {flushed.summary()}", file=sys.stderr)
        return library

    def open_library_for_sync(self) -> FunctionLibrary:
        """The Weaviate library without the automatic flush (``library sync`` flushes itself)."""
        if self.settings.library.backend != "weaviate":
            raise ConfigError("library sync is for the weaviate backend (library.backend)")
        return self._open_weaviate(flush_on_open=False)

    # -- initial actions ----------------------------------------------------------------------
    def action_lines(self) -> list[str]:
        """The initial actions as the coder sees them (read and parsed once per Services)."""
        return list(self._action_lines)

    @cached_property
    def _action_lines(self) -> tuple[str, ...]:
        return tuple(spec.summary_line() for spec in action_specs(self.settings.actions))

    @cached_property
    def agent_proxy(self) -> AgentProxy:
        """The proxy that holds the API keys for the kernels (keyed search, vision, audio)."""
        return start_agent_proxy(self.settings.actions, models=self.settings.models)

    def kernel_bootstrap(self) -> str:
        """Source run in every new (or restarted) kernel: the probe recorder, then the actions.

        Built once (every kernel gets the very same source, run by its session at each start
        and restart): building it parses the action modules, which CPython 3.11 cannot
        do safely from several threads at once ("AST constructor recursion depth mismatch")."""
        with self._bootstrap_lock:
            if self._bootstrap is None:
                actions = kernel_bootstrap(self.settings.actions, proxy=self.agent_proxy)
                self._bootstrap = probes.BOOTSTRAP + "\n" + actions
            return self._bootstrap

    # -- kernels ------------------------------------------------------------------------------
    def workdir_for(self, thread_id: str) -> Path:
        """The task's folder under ``executor.workdir``: the thread id itself when it is a
        plain name, else its safe characters and a digest of the whole id. So ``..`` and
        ``.`` never name the home or the tasks' folder (an attack: a cell under bubblewrap
        wrote next to checkpoints.db), ``a/b`` and ``a_b`` get folders of their own, a name
        never begins with a dot (``.kernel-pool`` is the pool's), and a long id fits."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in thread_id)
        if safe != thread_id or not safe or safe.startswith(".") or len(safe) > _PLAIN_ID_MAX:
            digest = hashlib.sha256(thread_id.encode("utf-8", "surrogatepass")).hexdigest()
            safe = f"{safe.lstrip('.')[: _PLAIN_ID_MAX - 20] or 'thread'}-{digest[:16]}"
        return self.settings.path(self.settings.executor.workdir) / safe

    def sandbox_hidden(self) -> list[Path]:
        """What a sandboxed kernel must not see: DYNAGRAPH_HOME (library, checkpoints, outbox),
        the folder of the tasks' directories wherever ``executor.workdir`` puts it (the
        kernel's own directory is bound back) and the data files wherever they are
        configured, with their SQLite journals."""
        files = [self.settings.library.path, self.settings.library.outbox_path]
        files.append(self.settings.checkpoint_path)
        hidden = [dynagraph_home(), self.settings.path(self.settings.executor.workdir)]
        for value in files:
            path = self.settings.path(value)
            hidden += [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]
        return hidden

    def kernel_session(
        self,
        workdir: str | Path,
        *,
        share: tuple[tuple[Path, bool], ...] = (),
        views: tuple[tuple[Path, Path], ...] = (),
    ) -> KernelSession:
        """An unstarted task kernel with the executor's limits; the session runs the bootstrap
        (probe recorder + initial actions) itself, once per start and once per restart.
        ``share``: more folders a sandboxed kernel sees, ``(path, writable)``; ``views``:
        writable folders it sees at another path, ``(folder, path)`` (graphs/scratch.py)."""
        ex = self.settings.executor
        return KernelSession(
            workdir,
            env=scrubbed_env(allow=(*DEFAULT_ENV_ALLOW, *ex.env_allow)),
            output_limit=ex.output_limit,
            memory_limit_mb=ex.memory_limit_mb,
            sandbox=ex.sandbox,
            network=ex.network,
            grace_s=ex.grace,
            startup_timeout=ex.startup_timeout,
            bootstrap=self.kernel_bootstrap(),
            hide=self.sandbox_hidden(),
            share=(*share, *self.agent_proxy.kernel_shares()),  # its socket: works offline too
            views=views,
        )

    def _new_kernel(self, thread_id: str) -> KernelSession:
        """The thread's kernel: a warm one from the pool when there is one, else a new one
        (unstarted: the registry starts it outside its lock).

        The kernel is made (and its task folder created) while the planner's first model call
        is out (nodes/planner.py: start_kernels_ahead). A folder made here is removed again
        once the kernel is shut down, if the kernel ran none of the task's cells and the folder
        is still empty: a run stopped before its first cell (an unreachable endpoint) leaves
        nothing behind. A folder that was there before (a resumed thread's) is never removed."""
        workdir = self.workdir_for(thread_id)
        made_here = not (workdir.exists() or workdir.is_symlink())
        pool = self.kernel_pool
        session = pool.take(workdir) if pool is not None else self.kernel_session(workdir)
        if made_here:
            session.after_shutdown.append(partial(_remove_unused_folder, session, workdir))
        return session

    @property
    def kernel_pool(self) -> KernelPool | None:
        """The warm-kernel pool: started by start_kernel_pool(), or on first use when
        ``executor.pool_size`` is set above 0; None when there is none."""
        size = self.settings.executor.pool_size
        if self._kernel_pool is None and size:
            self.start_kernel_pool(size)
        return self._kernel_pool

    def start_kernel_pool(self, size: int) -> KernelPool | None:
        """Start warming `size` kernels now (before the first task needs one); 0: no pool."""
        if size > 0:
            self.kernel_bootstrap()  # built here, before task threads parse code (see there)
        with self._lock:
            if self._kernel_pool is None and size > 0:
                slots = self.settings.path(self.settings.executor.workdir) / POOL_SLOTS
                self._kernel_pool = KernelPool(self.kernel_session, size, slots)
            return self._kernel_pool

    @contextmanager
    def admission_lock(self) -> Iterator[None]:
        """Held while a librarian decides about and writes a task's functions.

        Two librarians deciding at once (the threads of a batch, or two processes) would both
        find "no such function" and both add it, or both store the same v2. An exclusive flock
        on a file next to the library serializes every thread and process of this machine:
        separate opens of one file conflict even within a process.
        """
        lib = self.settings.library
        if lib.backend == "sqlite":
            path = Path(f"{self.settings.path(lib.path)}.admission.lock")
        else:
            path = self.settings.path("${DYNAGRAPH_HOME}/library.admission.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def scratch_kernel(
        self, workdir: str | Path | None = None, *, cwd: str | Path | None = None
    ) -> KernelSession:
        """A started kernel for the librarian's probe replays: the task kernels' limits,
        sandbox and environment, bootstrapped like them (graphs/scratch.py: started ahead, or
        kept from an earlier task, or new). Hand it back with :meth:`release_scratch`.

        ``cwd``: the folder replays run in (the task's directory, or the folder of a file given
        to ``library add``). The sandbox hides /tmp and DYNAGRAPH_HOME: a task's folder is shown
        at its own path (writable, as the task's kernel had it), another folder read-only.
        ``workdir``: the kernel's folder when one is started for this caller alone."""
        return self.scratch.take(workdir, cwd)

    def release_scratch(
        self, session: KernelSession, then: Callable[[], None] | None = None
    ) -> None:
        """Done with a scratch kernel: kept warm for the next task or reaped in the background."""
        self.scratch.release(session, then)

    def prestart_scratch(self, cwd: str | Path) -> None:
        """Start the scratch kernel for the task running in ``cwd`` now, in the background (the
        planner asks once the task has a candidate), unless one is kept warm already."""
        self.scratch.prestart(cwd)

    def drop_scratch(self, cwd: str | Path) -> None:
        """Reap a scratch kernel started for ``cwd`` that nobody claimed (a no-op otherwise)."""
        self.scratch.drop(cwd)

    @cached_property
    def scratch(self) -> ScratchKernels:
        return ScratchKernels(self.settings, self.kernel_session, lambda: self.kernel_pool)

    def close(self) -> None:
        with self._lock:
            self._closed, worker = True, self._embed_worker
        if worker is not None:
            worker.shutdown(wait=False, cancel_futures=True)
        self.models.close()
        if self.__dict__.get("scratch") is not None:
            self.scratch.close()
        if self._kernel_pool is not None:
            self._kernel_pool.close()
        self.kernels.shutdown_all()
        reaper.drain()  # the scratch kernels and released task kernels being shut down too
        if self.__dict__.get("agent_proxy") is not None:
            self.agent_proxy.stop()
        with self._lock:
            if self._library is not None:
                self._library.close()
                self._library = None
        self.sweep_leftovers()

    def sweep_leftovers(self) -> None:
        """Remove the temporary folders (kernels', the proxy's, scratch kernels' and their
        views, the pool's slots) that agent processes killed before they could clean up left
        behind: their names carry their owner (tools/tempfolders.py), and only those of ended
        processes go. Run at close, after this process's own are gone, so a task never waits
        for it."""
        try:
            runs = self.settings.path(self.settings.executor.workdir)
            sweep_temp()
            remove_dead(runs.resolve() / VIEWS_FOLDER, "")
            remove_dead_slots(runs / POOL_SLOTS, runs)
        except Exception as exc:  # noqa: BLE001 - housekeeping must not fail a closing run
            log.debug("sweeping leftover folders failed: %r", exc)
