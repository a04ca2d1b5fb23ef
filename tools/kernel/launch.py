"""The kernel process: a kernelspec built in code, launched under limits, optionally sandboxed.

- jupyter_client 8 ignores ``kernel_cmd``: the kernel runs from a kernelspec we build, whose
  program is ``kernel_side/launcher.py`` (PR_SET_PDEATHSIG, RLIMIT_AS, then ipykernel).
- It talks over ipc sockets in a private 0700 runtime dir: no ports to race for, nothing other
  users can reach, and the same paths work inside the bubblewrap sandbox, where that dir is bound.
- Its environment is the session's (scrubbed: environment.py), its cwd the task's workdir.
- It dies with the agent process, even on SIGKILL: PR_SET_PDEATHSIG (and bwrap's
  ``--die-with-parent``) fire when the *thread* that forked the child exits, so every kernel is
  forked by one process-lifetime launcher thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynagraph.tools.kernel import kernel_side
from dynagraph.tools.kernel.discard import Closing, discard_kernel
from dynagraph.tools.kernel.hardening import Sandbox, protect_agent_process
from dynagraph.tools.kernel.loops import closing_thread_loop, thread_loop_closed
from dynagraph.tools.kernel.orphans import kill_tree, process_tree
from dynagraph.tools.procfs import start_time
from dynagraph.tools.tempfolders import KERNEL_PREFIX, private_folder
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

__all__ = ["MIN_MEMORY_LIMIT_MB", "KernelProcess", "LaunchSpec", "describe_exit"]

log = logging.getLogger(__name__)

MIN_MEMORY_LIMIT_MB = 1024  # an idle kernel already maps ~0.8 GB of virtual memory
SHUTDOWN_WAIT_S = 1.0  # graceful exit, then SIGTERM at half of it, SIGKILL at the end
SHUTDOWN_POLL_S = 0.01
NEVER_ZERO_COPY = 2**62  # bytes: a message part never reaches it (see _GivenSpecKernelManager)
KERNEL_FLAGS = (
    "--HistoryManager.enabled=False",
    "--InteractiveShell.colors=nocolor",
    "--InteractiveShell.xmode=Plain",
    # ipykernel sleeps 0.5 ms after every cell so that a client that stops at the reply has
    # the last output; ours waits for the idle status, which the kernel sends after the
    # flushed outputs on the same socket (tools/kernel/cell.py). 2.47 -> 2.0-2.2 ms a round
    # trip (bench/README.md 13f).
    "--Kernel._execute_sleep=0",
)


#: the kernel's sockets are <runtime folder>/kernel-ipc-<port> (ipc transport)
_SOCKET_NAME = "/kernel-ipc-99999"


def runtime_folder() -> Path:
    """A new private folder for one kernel's connection file, log and ipc sockets: in the
    temp folder (``TMPDIR``), or in ``/tmp`` when a socket's path there would be too long for
    the system (zmq: "File name too long", and the kernel would not start). Its name carries
    this process as its owner, so a later process removes it if this one is killed before it
    could (tools/tempfolders.py)."""
    return private_folder(KERNEL_PREFIX, socket_name=_SOCKET_NAME)


def _strictly_inside(path: Path, folders: Sequence[Path]) -> bool:
    """Whether ``path`` lies inside one of ``folders`` (not being one of them)."""
    return any(path != folder and path.is_relative_to(folder) for folder in folders)


class _LauncherThread:
    """Forks every kernel process from one daemon thread that lives as long as this process.

    Kernels are started from pool refill threads, batch workers and server worker threads, any
    of which may end while the kernel is still in use; forked from here, a kernel dies exactly
    when this process does.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="dynagraph-kernel-launcher", daemon=True
                )
                self._thread.start()
        self._jobs.put((job, future))
        return future

    def _serve(self) -> None:
        while True:
            job, future = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:
                    future.set_exception(exc)


_LAUNCHER = _LauncherThread()  # process-wide by nature: see the class docstring


class _GivenSpecKernelManager(KernelManager):
    """A KernelManager with a kernelspec built in code rather than looked up on disk, whose
    kernel processes are forked by the process-lifetime launcher thread."""

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        self._given_spec = spec
        super().__init__(**kwargs)
        # Every message copied, never sent zero-copy. jupyter_client sends a message with a
        # part over 64 KiB (a startup or definitions cell) zero-copy, which starts pyzmq's
        # garbage-collector thread; libzmq's I/O thread then signals it when it frees the
        # message, and at interpreter exit pyzmq closes that thread's socket under it: a
        # batch process aborted at exit with "Assertion failed: pfd.revents & POLLIN
        # (src/signaler.cpp:238)". Copying 100 KiB costs microseconds. (The client shares
        # this session: KernelManager.client() passes it on.)
        self.session.copy_threshold = NEVER_ZERO_COPY

    @property
    def kernel_spec(self) -> KernelSpec:  # type: ignore[override]
        return self._given_spec

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        launch = super()._async_launch_kernel  # the local provisioner's Popen; it never awaits
        await asyncio.wrap_future(_LAUNCHER.submit(lambda: asyncio.run(launch(kernel_cmd, **kw))))

    # The blocking calls we make, each closing the event loop it made for its thread (loops.py)
    start_kernel = closing_thread_loop(KernelManager.start_kernel)
    restart_kernel = closing_thread_loop(KernelManager.restart_kernel)
    shutdown_kernel = closing_thread_loop(KernelManager.shutdown_kernel)
    interrupt_kernel = closing_thread_loop(KernelManager.interrupt_kernel)
    is_alive = closing_thread_loop(KernelManager.is_alive)

    # Shutdown. ipykernel 7 sometimes hangs joining its control thread after it has answered
    # the shutdown request (upstream race: its log stops at "Closing control thread"), and
    # jupyter_client then waits shutdown_wait_time / 2 (2.5 s by default) before SIGTERM: one
    # task in four paid ~2.6 s. Our kernels are thrown away, so the grace is short
    # (SHUTDOWN_WAIT_S / 2 before SIGTERM), polled every SHUTDOWN_POLL_S rather than 0.1 s,
    # and no SIGINT precedes the shutdown request (an idle kernel ignores it; a busy one is
    # SIGTERMed after the grace anyway).
    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:  # set by shutdown_kernel; reset when a kernel starts
            return
        await super()._async_interrupt_kernel()

    async def _async_finish_shutdown(
        self, waittime: float | None = None, pollinterval: float = 0.1, restart: bool = False
    ) -> None:
        poll = min(pollinterval, SHUTDOWN_POLL_S)
        await super()._async_finish_shutdown(waittime, poll, restart)


def manager_alive(km: KernelManager) -> bool:
    """Whether the kernel's process runs. The local provisioner's process is asked directly:
    ``KernelManager.is_alive`` answers the same through a new event loop each call (~0.4 ms,
    and it is asked before every cell); any other provisioner keeps its own poll."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if isinstance(process, subprocess.Popen):
        return process.poll() is None
    try:
        return bool(km.is_alive())
    except Exception:
        return False


def describe_exit(code: int | None) -> str:
    """An exit code in words, for notes to the model ("killed by SIGKILL")."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128:  # bwrap and shells report a child's signal as 128 + n
        with contextlib.suppress(ValueError):
            return f"exit code {code} ({signal.Signals(code - 128).name}?)"
    return f"exit code {code}"


@dataclass(frozen=True)
class LaunchSpec:
    """How a session's kernel processes are launched; KernelSession builds it once, resolved
    and validated, and every start and restart uses it."""

    env: Mapping[str, str]
    memory_limit_mb: int | None
    sandbox: Sandbox  # resolved (hardening.resolve_sandbox)
    network: bool
    python: str
    bwrap_path: str | None  # the bwrap executable, when sandboxed
    startup_timeout: float
    # under the sandbox only: folders/files replaced by empty ones, folders bound at their
    # own path (path, writable) besides the workdir, and writable folders bound at another
    # path (host folder, path in the sandbox); see KernelProcess._bwrap_argv
    hide: tuple[Path, ...] = ()
    share: tuple[tuple[Path, bool], ...] = ()
    views: tuple[tuple[Path, Path], ...] = ()


class KernelProcess:
    """One started ipykernel process and its client, until close(); restart() keeps the object.

    Knows nothing about cells: KernelSession runs them through ``client``.
    """

    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.km: KernelManager | None = None
        self.client: Any = None
        self._clients: list[Any] = []  # the open client, for the finalizer (discard_kernel)
        self.runtime_dir: Path | None = None
        self._log_file: Any = None
        self._finalizer: weakref.finalize | None = None
        self._closing = Closing()  # shared with the finalizer
        self._started: str | None = None  # the kernel process's start time (procfs)

    @property
    def pid(self) -> int | None:
        """Process id of the kernel (of bwrap, when sandboxed), or None if not running."""
        provisioner = self.km.provisioner if self.km is not None else None
        return getattr(provisioner, "pid", None)

    def start(self, workdir: Path) -> None:
        """Start the kernel in `workdir` and wait until it answers. On failure, raises with
        the kernel's log appended; the caller then close()s."""
        protect_agent_process()  # once per process, before the first kernel exists
        self.runtime_dir = runtime_folder()
        self._log_file = open(self.runtime_dir / "kernel.log", "ab")  # noqa: SIM115
        km = _GivenSpecKernelManager(
            self._kernel_spec(workdir),
            transport="ipc",
            connection_file=str(self.runtime_dir / "kernel.json"),
            shutdown_wait_time=SHUTDOWN_WAIT_S,
        )
        self.km = km
        self._closing = Closing()
        self._finalizer = weakref.finalize(
            self,
            discard_kernel,
            km,
            self.runtime_dir,
            self._clients,
            self._log_file,
            self._closing,
        )
        try:
            km.start_kernel(
                env=self._kernel_env(),
                cwd=str(workdir),
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
            )
            self._started = start_time(self.pid) if self.pid else None
            self._open_client()
        except Exception as exc:
            detail = self.log_tail()
            raise RuntimeError(f"{exc}" + (f"; kernel log: {detail}" if detail else "")) from exc

    def restart(self, workdir: Path) -> None:
        """A new kernel process in `workdir` (namespace lost), same manager and sockets' dir."""
        assert self.km is not None
        self._close_client()
        background = self._background_processes()
        self.km.restart_kernel(now=True, cwd=str(workdir))
        kill_tree(background)
        self._started = start_time(self.pid) if self.pid else None
        self._open_client()

    def _background_processes(self) -> dict[int, str]:
        """What the kernel's cells started that still runs, to end with the kernel. Under
        bubblewrap nothing: the sandbox's PID namespace ends with its init (orphans.py). Nor
        below a pid that is no longer the kernel's (it ended and the pid was given again)."""
        pid = self.pid
        if self.spec.sandbox == "bwrap" or pid is None or start_time(pid) != self._started:
            return {}
        return process_tree(pid)

    def _open_client(self) -> None:
        assert self.km is not None
        client = self.km.client()
        client.start_channels()
        self.client = client
        self._clients[:] = [client]
        with thread_loop_closed():
            client.wait_for_ready(timeout=self.spec.startup_timeout)

    def _close_client(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.stop_channels()
            self.client = None
            self._clients.clear()

    def is_alive(self) -> bool:
        return self.km is not None and manager_alive(self.km)

    def interrupt(self) -> None:
        """SIGINT, or an interrupt message under bwrap; failures are logged, not raised."""
        if self.km is not None:
            try:
                self.km.interrupt_kernel()
            except Exception as exc:
                log.warning("kernel interrupt failed: %s", exc)

    def exit_code(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None) if self.km else None
        return getattr(process, "returncode", None)

    def log_tail(self, limit: int = 1500) -> str:
        if self.runtime_dir is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self.runtime_dir / "kernel.log").read_bytes()[-limit:]
            return text.decode("utf-8", "replace").strip()
        return ""

    def close(self) -> None:
        """Stop the kernel and remove its runtime files. Safe to call twice, and beside the
        finalizer running at exit (discard.Closing)."""
        with self._closing.lock:
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            if self._closing.done:  # the finalizer closed it: forget what it closed
                self.client, self.km, self._log_file, self.runtime_dir = None, None, None, None
                self._clients.clear()
                return
            self._close()
            self._closing.done = True  # a finalizer already under way finds nothing to do

    def _close(self) -> None:
        self._close_client()
        background = self._background_processes() if self.km is not None else {}
        km, self.km = self.km, None
        if km is not None:
            try:
                km.shutdown_kernel(now=not manager_alive(km))
            except Exception as exc:
                log.warning("kernel shutdown failed (%s); killing it", exc)
                with contextlib.suppress(Exception):
                    km.shutdown_kernel(now=True)
        kill_tree(background)
        if self._log_file is not None:
            with contextlib.suppress(Exception):
                self._log_file.close()
            self._log_file = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    # -- the command line ---------------------------------------------------------------------
    def _kernel_spec(self, workdir: Path) -> KernelSpec:
        spec = self.spec
        limit = (spec.memory_limit_mb or 0) * 1024 * 1024
        parent = 0 if spec.sandbox == "bwrap" else os.getpid()
        argv = [spec.python, "-c", kernel_side.source("launcher"), str(limit), str(parent)]
        argv += ["-f", "{connection_file}", *KERNEL_FLAGS]
        if spec.sandbox == "bwrap":
            argv = self._bwrap_argv(workdir) + argv
        return KernelSpec(
            argv=argv,
            display_name="dynagraph",
            language="python",
            interrupt_mode="message" if spec.sandbox == "bwrap" else "signal",
        )

    def _bwrap_argv(self, workdir: Path) -> list[str]:
        """bubblewrap: read-only system, private /tmp, hidden folders, writable workdir, own PID
        namespace (its /proc shows no process of the agent), no network if asked.

        Order matters (later mounts cover earlier ones): the system read-only, empty tmpfs over
        /tmp and over every hidden folder (DYNAGRAPH_HOME: the library, checkpoints, outbox;
        the folder of the tasks' directories), the interpreter's paths bound back read-only if
        those hid them (and hidden folders inside those hidden again), then the runtime dir,
        the workdir and the shared folders bound back at their own paths, then hidden files
        masked with an empty file and hidden folders inside a bound folder hidden again; last,
        the hidden folders' tmpfs made read-only (but not a folder a view is bound at). The
        runtime dir (connection file, ipc sockets) is bound at the same path so client and
        kernel agree on it; JPY_PARENT_PID is unset because ipykernel would see
        pid 1 as its parent in the new PID namespace and exit; --die-with-parent replaces that
        check.
        """
        assert self.spec.bwrap_path is not None and self.runtime_dir is not None
        work, runtime = workdir, self.runtime_dir
        argv = [self.spec.bwrap_path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        hidden_dirs = [p for p in self._hidden() if p.is_dir()]
        for path in hidden_dirs:
            argv += ["--tmpfs", str(path)]
        python_paths = self._python_paths_hidden_by(hidden_dirs)  # e.g. a venv under /tmp
        for path in python_paths:
            argv += ["--ro-bind", path, path]
        for path in hidden_dirs:  # e.g. DYNAGRAPH_HOME inside a script's folder under /tmp
            if _strictly_inside(path, [Path(p) for p in python_paths]):
                argv += ["--tmpfs", str(path)]
        binds = [(p, p, w) for p, w in [(runtime, True), (work, True), *self.spec.share]]
        binds += [(source, at, True) for source, at in self.spec.views]
        # a folder bound inside another bound folder is bound after it (a later mount covers an
        # earlier one): the runtime dir under a TMPDIR inside a read-only shared folder stays
        # writable, a read-only share inside the workdir stays read-only
        binds.sort(key=lambda bind: len(bind[1].parts))
        for source, at, writable in binds:
            argv += ["--bind" if writable else "--ro-bind", str(source), str(at)]
        bound = [at.resolve() for _, at, _ in binds]
        for path in self._hidden():
            if path.is_dir() and _strictly_inside(path, bound):
                argv += ["--tmpfs", str(path)]  # hidden inside a bound folder: hide it again
            elif path.is_file() and not any(path.is_relative_to(d) for d in hidden_dirs):
                argv += ["--ro-bind", str(self._empty_file()), str(path)]
        for path in hidden_dirs:  # an empty *read-only* folder: creating files there fails too
            if path not in bound:  # a folder bound at that very path (a view) keeps its mode
                argv += ["--remount-ro", str(path)]
        argv += ["--chdir", str(work)]
        argv += ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        argv += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        argv += ["--unsetenv", "JPY_PARENT_PID"]
        if not self.spec.network:
            argv.append("--unshare-net")
        return [*argv, "--"]

    def _empty_file(self) -> Path:
        """A read-only empty file to mask hidden files with (the host's /dev/null cannot be
        opened in the sandbox: mounts in a user namespace are nodev)."""
        assert self.runtime_dir is not None
        empty = self.runtime_dir / "empty"
        if not empty.exists():
            empty.touch(mode=0o444)
        return empty

    def _hidden(self) -> list[Path]:
        """The existing paths to hide, resolved, never ``/`` or ``/tmp`` itself (paths under
        /tmp too: the private /tmp would let a cell create files at their paths)."""
        found: list[Path] = []
        for raw in self.spec.hide:
            path = raw.resolve()
            if path.exists() and path not in (Path("/"), Path("/tmp")) and path not in found:
                found.append(path)
        return found

    def _python_paths_hidden_by(self, hidden_dirs: Sequence[Path]) -> list[str]:
        """The interpreter's prefix and import paths that the private /tmp or a hidden folder
        would hide.

        A checkout (and its venv) may live under /tmp, as CI clones do; the sandbox mounts a
        fresh tmpfs there, so those paths are bound back read-only.
        """
        candidates = {sys.prefix, sys.base_prefix, str(Path(self.spec.python).resolve().parent)}
        candidates.update(p for p in sys.path if p)
        covers = [Path("/tmp"), *hidden_dirs]
        found: list[str] = []
        for raw in sorted(candidates):
            path = Path(raw).resolve()
            if path.exists() and path != covers[0] and any(path.is_relative_to(c) for c in covers):
                found.append(str(path))
        # bind a folder once: drop paths inside another bound path
        return [p for p in found if not _strictly_inside(Path(p), [Path(q) for q in found])]

    def _kernel_env(self) -> dict[str, str]:
        env = dict(self.spec.env)
        if self.spec.sandbox == "bwrap":  # HOME is read-only in the sandbox: caches go to the tmpfs
            env.setdefault("XDG_CACHE_HOME", "/tmp/.cache")
            env.setdefault("MPLCONFIGDIR", "/tmp/.matplotlib")
        return env
