"""KernelSession: one ipykernel for one task; run a cell under limits, get an observation back.

The executor must never hang, never crash and never leak secrets because of what a cell does:

- every cell runs through our own receive loop (cell.py): timeout -> interrupt -> grace ->
  restart, a dead kernel noticed within 0.25 s and restarted;
- output is capped in the kernel (kernel_side/stream_cap.py) and again as it is received;
- every client exception (a cell can break the wire protocol) ends in a restart and a result;
- the process itself (limits, sandbox, scrubbed environment, death with the agent) is launch.py's.

The session alone runs the kernel's bootstrap (the probe recorder and the initial actions, handed
in by its owner): once after every start and once after every restart, before the on_restart
hooks, so a pooled kernel has paid for it before its task begins and nobody else runs it again.

One kernel per task, thrown away afterwards: ``%reset`` does not isolate tasks (cwd, env,
sys.path, patched modules and threads survive it).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynagraph.tools.kernel import kernel_side
from dynagraph.tools.kernel.capture import head_tail
from dynagraph.tools.kernel.cell import CellCancelled, CellRun, receive, refuse_if_stopping
from dynagraph.tools.kernel.environment import scrubbed_env
from dynagraph.tools.kernel.errors import BWRAP_INSTALL_HINT, KernelError
from dynagraph.tools.kernel.hardening import Sandbox, SandboxMode, resolve_sandbox
from dynagraph.tools.kernel.result import ExecutionResult

if TYPE_CHECKING:  # launch.py (jupyter_client, zmq) loads when a session is first built
    from dynagraph.tools.kernel.launch import KernelProcess

__all__ = ["Bootstrap", "KernelSession"]

log = logging.getLogger(__name__)


def describe_exit(code: int | None) -> str:
    """launch.describe_exit (loaded by then: a kernel process existed)."""
    from dynagraph.tools.kernel.launch import describe_exit as describe

    return describe(code)


#: The owner's bootstrap: source text, or a callable returning it (built on first start).
Bootstrap = str | Callable[[], str] | None


class KernelSession:
    """One ipykernel for one task: start it, run cells under limits, restart it when it is lost.

    Not for concurrent execute() calls from several threads (they are serialized by a lock);
    interrupt() may be called from any thread. `bootstrap` runs silently after every start and
    restart (see the module docstring); it must leave the kernel ready for the task's cells.
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        output_limit: int = 20_000,
        memory_limit_mb: int | None = None,
        sandbox: SandboxMode = "none",
        network: bool = True,
        grace_s: float = 2.0,
        startup_timeout: float = 60.0,
        python: str = sys.executable,
        bwrap: str = "bwrap",
        bootstrap: Bootstrap = None,
        hide: Sequence[str | Path] = (),
        share: Sequence[tuple[str | Path, bool]] = (),
        views: Sequence[tuple[str | Path, str | Path]] = (),
    ) -> None:
        if not network and sandbox == "none":
            raise ValueError("network=False needs sandbox='bwrap' (a network namespace)")
        choice = resolve_sandbox(sandbox, bwrap)  # "auto": bwrap if it runs here (hardening.py)
        if not network and choice.mode != "bwrap":
            raise KernelError(f"network=False needs a sandbox: {BWRAP_INSTALL_HINT}")
        from dynagraph.tools.kernel.launch import MIN_MEMORY_LIMIT_MB, LaunchSpec

        if memory_limit_mb is not None and memory_limit_mb < MIN_MEMORY_LIMIT_MB:
            raise ValueError(
                f"memory_limit_mb={memory_limit_mb} is below {MIN_MEMORY_LIMIT_MB}: an idle kernel "
                "already maps ~0.8 GB of virtual memory and would not start"
            )
        self.workdir = Path(workdir).resolve()
        self.output_limit = output_limit
        self.grace_s = grace_s
        #: how every start and restart launches the kernel (hide/share: see LaunchSpec)
        self.launch = LaunchSpec(
            env=dict(env) if env is not None else scrubbed_env(),
            memory_limit_mb=memory_limit_mb,
            sandbox=choice.mode,
            network=network,
            python=python,
            bwrap_path=choice.bwrap,
            startup_timeout=startup_timeout,
            hide=tuple(Path(p) for p in hide),
            share=tuple((Path(p), bool(w)) for p, w in share),
            views=tuple((Path(source), Path(at)) for source, at in views),
        )
        self.bootstrap = bootstrap
        self.restarts = 0
        #: cells run that were not silent (a caller's own cells), restarts included: 0 means
        #: this session has run none of its task's cells (a resumed task's new kernel)
        self.cells_run = 0
        self.on_restart: list[Callable[[KernelSession], None]] = []
        #: called once after shutdown() has stopped the kernel (an owner's folder to remove)
        self.after_shutdown: list[Callable[[], None]] = []
        self._process: KernelProcess | None = None
        self._lock = threading.RLock()
        self._image_count = 0
        self._in_hooks = False
        self._starting = False
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> KernelSession:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @property
    def sandbox(self) -> Sandbox:
        """What the kernel runs under, resolved: "bwrap" or "none"."""
        return self.launch.sandbox

    @property
    def pid(self) -> int | None:
        """Process id of the kernel (of bwrap, when sandboxed), or None if not running."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the kernel, wait until it answers and bootstrap it; KernelError if it fails.
        A no-op when it is started already."""
        with self._lock:
            if self._closed:
                raise KernelError("this kernel session was shut down; make a new one")
            if self._process is not None:
                return
            self.workdir.mkdir(parents=True, exist_ok=True)
            from dynagraph.tools.kernel.launch import KernelProcess

            self._process = KernelProcess(self.launch)
            try:
                self._process.start(self.workdir)
                self._run_startup()
            except Exception as exc:
                self._teardown()
                raise KernelError(f"kernel did not start: {exc}") from exc

    def _run_startup(self) -> None:
        """Our own setup (tracebacks, figures, the stream cap), then the owner's bootstrap."""
        self._starting = True  # failures now raise instead of restarting (no restart loops)
        try:
            limit = str(max(self.output_limit, 1000))
            setup = kernel_side.cell("startup", "install", "get_ipython()")
            setup += kernel_side.cell("stream_cap", "install", f"get_ipython(), {limit}")
            setup += kernel_side.cell("thread_parent", "install", "get_ipython()")
            setup += kernel_side.cell("cell_costs", "install", "get_ipython()")
            result = self._execute_once(setup, self.launch.startup_timeout, silent=True)
            if not result.ok():
                raise KernelError(f"kernel startup code failed: {result.to_observation(1000)}")
            source = self.bootstrap() if callable(self.bootstrap) else self.bootstrap
            if source:
                result = self._execute_once(source, self.launch.startup_timeout, silent=True)
                if not result.ok():
                    detail = result.error_value or result.to_observation(800)
                    raise KernelError(f"the kernel bootstrap failed: {detail}")
        finally:
            self._starting = False

    def move_to(self, workdir: str | Path) -> None:
        """Make `workdir` the kernel's working directory: cells run there, images are saved
        there, and a restart starts there.

        For a pooled kernel, started before its task (and so its directory) was known. Without a
        sandbox the running kernel changes directory. Under bwrap the writable bind is fixed
        when the sandbox starts, so this raises KernelError (see pool.py).
        """
        target = Path(workdir).resolve()
        with self._lock:
            if self.sandbox == "bwrap":
                raise KernelError("a sandboxed kernel cannot change its writable directory")
            if self._closed:
                raise KernelError("this kernel session was shut down; make a new one")
            target.mkdir(parents=True, exist_ok=True)
            if self._process is not None:
                result = self._execute_once(
                    f"__import__('os').chdir({str(target)!r})",
                    self.launch.startup_timeout,
                    silent=True,
                )
                if not result.ok():
                    raise KernelError(
                        f"the kernel could not change directory: {result.error_value}"
                    )
            self.workdir = target

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT, or an interrupt message under bwrap)."""
        process = self._process
        if process is not None:
            process.interrupt()

    def restart(self) -> None:
        """Restart the kernel (namespace lost): startup code, bootstrap, then on_restart hooks."""
        with self._lock:
            if self._process is None:
                self.start()
                return
            self._restart_kernel()

    def _restart_kernel(self) -> None:
        assert self._process is not None
        try:
            self._process.restart(self.workdir)  # move_to() may have moved it
        except Exception as exc:  # the manager is wedged: replace it with a fresh one
            log.warning("kernel restart failed (%s); starting a new kernel", exc)
            self._teardown()
            self.start()
        else:
            self._run_startup()
        self.restarts += 1
        self._run_hooks()

    def _run_hooks(self) -> None:
        if self._in_hooks:  # a hook's own cell forced a restart: don't recurse
            return
        self._in_hooks = True
        try:
            for hook in list(self.on_restart):
                try:
                    hook(self)
                except Exception:
                    log.exception("on_restart hook %r failed", hook)
        finally:
            self._in_hooks = False

    def shutdown(self) -> None:
        """Stop the kernel process and remove its runtime files for good. Safe to call twice."""
        locked = self._lock.acquire(timeout=10)
        try:
            self._closed = True
            self._teardown()
        finally:
            if locked:
                self._lock.release()
        hooks, self.after_shutdown = self.after_shutdown, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("after_shutdown hook %r failed", hook)

    def retire(self) -> None:
        """Refuse new cells from now on (KernelError, as after shutdown()) without waiting for
        the kernel to stop: the owner hands it to reaper.reap(), which shuts it down."""
        self._closed = True

    def _teardown(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.close()

    # ----------------------------------------------------------------- execution

    def execute(
        self,
        code: str,
        timeout: float | None = 60.0,
        *,
        silent: bool = False,
        output_limit: int | None = None,
        user_expressions: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Run one cell. Never raises for anything the cell does; see ExecutionResult.status.

        `output_limit` overrides the session's cap for this cell (the executor's own
        bookkeeping cells, whose output is data, not text for a model). `user_expressions`
        are evaluated by the kernel right after a cell that raised no error and come back in
        the same reply (ExecutionResult.user_expressions): data fetched without a round trip.

        `timeout` None means no limit. On timeout the cell is interrupted; if it is still running
        `grace_s` later, the kernel is restarted (namespace lost) and the on_restart hooks run.
        Raises KernelError only when called after shutdown().
        """
        with self._lock:
            if self._closed:
                raise KernelError("this kernel session was shut down; make a new one")
            started = time.monotonic()
            notes: list[str] = []
            try:
                if self._process is None:
                    self.start()
                elif not self.is_alive():
                    exit_code = self._process.exit_code()
                    self._restart_kernel()
                    notes.append(
                        f"the kernel had died before this cell ({describe_exit(exit_code)}); "
                        "it was restarted and the cell ran in the new kernel"
                    )
            except KernelError as exc:
                return ExecutionResult(
                    status="died",
                    error_name="KernelError",
                    error_value=str(exc),
                    duration_s=time.monotonic() - started,
                    notes=[f"the kernel could not be started: {exc}"],
                    namespace_lost=True,
                )
            if not silent:
                self.cells_run += 1
            result = self._execute_once(
                code,
                timeout,
                silent=silent,
                started=started,
                output_limit=output_limit,
                user_expressions=user_expressions,
            )
            if notes:
                result.restarted = result.namespace_lost = True
                result.notes[:0] = notes
            return result

    def _save_image(self, suffix: str, raw: bytes) -> str:
        folder = self.workdir / "outputs"
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self._image_count += 1
            path = folder / f"figure-{self._image_count}.{suffix}"
            if not path.exists():
                break
        path.write_bytes(raw)
        return str(path.relative_to(self.workdir))

    def _execute_once(
        self,
        code: str,
        timeout: float | None,
        *,
        silent: bool,
        started: float | None = None,
        output_limit: int | None = None,
        user_expressions: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        started = time.monotonic() if started is None else started
        limit = output_limit or self.output_limit
        assert self._process is not None
        client = self._process.client
        refuse_if_stopping()  # the process is stopping for good: send nothing to interrupt
        run: CellRun | None = None
        try:
            msg_id = client.execute(
                code,
                silent=silent,
                store_history=not silent,
                user_expressions=dict(user_expressions or {}),
                allow_stdin=False,
                stop_on_error=False,
            )
            run = CellRun(msg_id, limit, self._save_image)
            return self._receive(client, run, started, timeout)
        except CellCancelled:  # receive() interrupted the cell if it had to: not a second time
            raise  # (a second SIGINT landed in the next cell, or ended the kernel, exit 0)
        except KeyboardInterrupt:  # our own process was interrupted: pass it on to the kernel
            self.interrupt()
            raise
        except Exception as exc:
            log.warning("kernel messaging failed: %r; restarting the kernel", exc)
            run = run or CellRun("", limit, self._save_image)
            detail, _ = head_tail(f"{type(exc).__name__}: {exc}", 500)
            restarted = self._recover()
            return run.finish(
                "error",
                started,
                timeout,
                error_name="KernelMessagingError",
                error_value=detail,
                traceback=None,
                restarted=restarted,
                namespace_lost=True,
                notes=[
                    "the kernel's messages could not be read (did the cell patch json, the "
                    "kernel's session or sys.stdout?), so the kernel was restarted"
                    + ("" if restarted else "; the restart failed too")
                ],
            )

    def _receive(
        self, client: Any, run: CellRun, started: float, timeout: float | None
    ) -> ExecutionResult:
        """Run the receive loop, then turn how the cell ended into its result."""
        assert self._process is not None
        process = self._process
        ending, interrupted = receive(
            client,
            run,
            started=started,
            timeout=timeout,
            grace_s=self.grace_s,
            is_alive=self.is_alive,
            interrupt=process.interrupt,
        )
        status = "timeout" if interrupted else "ok"
        if ending == "done":
            return run.finish(status, started, timeout)
        if ending == "quiet":
            result = run.finish(status, started, timeout)
            result.notes.append("the kernel finished but its output may be incomplete")
            return result
        if ending == "stuck":
            restarted = self._recover()
            return run.finish("timeout", started, timeout, restarted=restarted, namespace_lost=True)
        exit_code = process.exit_code()  # "died"
        restarted = self._recover()
        note = f"the kernel process died ({describe_exit(exit_code)})"
        if not restarted:
            note += "; restarting it failed, the next cell will start a new kernel"
        return run.finish(
            "died", started, timeout, restarted=restarted, namespace_lost=True, notes=[note]
        )

    def _recover(self) -> bool:
        """Restart after a failure; False (and a fresh start on the next cell) if that fails too."""
        if self._starting:
            raise KernelError("the kernel failed while running its startup code")
        try:
            self._restart_kernel()
            return True
        except Exception as exc:
            log.error("kernel restart failed: %s", exc)
            self._teardown()
            return False
