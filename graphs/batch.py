"""Many tasks at once: ``dynagraph batch TASKS.jsonl --concurrency N [--out RESULTS.jsonl]``.

Input: one JSON object per line, ``{"id": ..., "task": ...}`` (``id`` optional: the line number).
Output: one JSON object per task (id, task, answer, status, error, steps, functions created and
reused, usage, seconds, thread_id), appended to ``--out`` as each task finishes, or printed.

Tasks run in a thread pool, each with its own thread id and so its own kernel; the services
(library, models, embedder) are shared, and a warm kernel pool (``executor.pool_size``, default
concurrency + 1) spares each task a cold kernel start. Resumable: tasks whose id already has a
final line (status ``done`` or ``failed``) in ``--out`` are skipped; a task that raised (status
``error``: an unreachable endpoint, a crash) is run again next time, and its new line
supersedes the old one (readers keep the last line per id).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dynagraph.graphs.run import TaskResult, preflight, run_task
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import Settings
from dynagraph.nodes.context import Context
from dynagraph.nodes.planner import task_problem
from dynagraph.tools.errors import DynagraphError, InputError
from dynagraph.tools.kernel import BWRAP_INSTALL_HINT, KernelError

FINAL_STATUSES = ("done", "failed")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a batch: still a KeyboardInterrupt (the command exits 130 or
    143), carrying the summary of what finished, for the command's last line."""

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__("the batch was stopped")
        self.summary = summary


class BatchInputError(InputError, ValueError):
    """The tasks file cannot be used; the message names the line."""


@dataclass(frozen=True)
class BatchTask:
    id: str
    task: str


def read_tasks(path: str | Path) -> list[BatchTask]:
    """The tasks of a JSON Lines file; blank lines are skipped, ids must be unique."""
    path = Path(path)
    lines = _jsonl_lines(path, "tasks file")
    tasks: list[BatchTask] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchInputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            raise BatchInputError(f'{path}:{number}: expected {{"id": ..., "task": "..."}}')
        problem = task_problem(data["task"])
        if problem is not None:
            raise BatchInputError(f"{path}:{number}: the task cannot be run: {problem}")
        task_id = str(data["id"]) if data.get("id") is not None else str(number)
        if task_id in seen:
            raise BatchInputError(f"{path}:{number}: id {task_id!r} appears twice")
        seen.add(task_id)
        tasks.append(BatchTask(task_id, data["task"]))
    return tasks


def _jsonl_lines(path: Path, what: str) -> list[str]:
    """The lines of a JSON Lines file, split at newlines only: ``str.splitlines`` also splits
    at U+2028, U+0085 and the like, which JSON leaves raw inside strings (text pasted from a
    web page), so a task holding one was refused and its result never counted as done."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise BatchInputError(f"{path}:{line}: not UTF-8 text; save the {what} as UTF-8") from exc
    except OSError as exc:
        raise BatchInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    return [line.removesuffix("\r") for line in text.split("\n")]


def check_results_path(path: str | Path) -> None:
    """One line for an ``--out`` that cannot be appended to, before any task runs."""
    path = Path(path)
    if path.is_dir():
        raise BatchInputError(f"--out {path} is a folder; give a file path")
    if not path.parent.is_dir():
        raise BatchInputError(f"--out {path}: its folder {path.parent} does not exist")


def finished_ids(path: str | Path | None) -> set[str]:
    """Ids with a final result in a results file (a torn last line, from a crash, is ignored)."""
    if path is None or not Path(path).exists():
        return set()
    latest: dict[str, str] = {}
    for line in _jsonl_lines(Path(path), "results file"):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            latest[str(row["id"])] = str(row.get("status"))
    return {task_id for task_id, status in latest.items() if status in FINAL_STATUSES}


def result_row(
    task: BatchTask, result: TaskResult | None, error: str | None, seconds: float, thread_id: str
) -> dict[str, Any]:
    """The output line of one task."""
    if result is None:
        return {
            "id": task.id,
            "task": task.task,
            "answer": None,
            "status": "error",
            "error": error,
            "steps": 0,
            "functions_created": [],
            "functions_reused": [],
            "usage": {},
            "seconds": round(seconds, 3),
            "thread_id": thread_id,
        }
    return {
        "id": task.id,
        "task": task.task,
        "answer": result.answer,
        "status": result.status,
        "error": result.error,
        "steps": len(result.steps),
        "functions_created": result.functions_created,
        "functions_reused": result.functions_reused,
        "usage": result.usage,
        "seconds": round(seconds, 3),
        "thread_id": result.thread_id,
    }


class BatchSetupError(DynagraphError):
    """Every task a batch ran broke on the same kind of problem as ``run``'s exit 2 (an
    unreachable endpoint, a refused key, a kernel that cannot start): the message is the first
    task's one line."""

    exit_code = 2


@dataclass
class BatchSummary:
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    error: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    #: tasks that raised a configuration or endpoint problem (exit_code 2, as ``run`` exits),
    #: and the first one's line
    setup_errors: int = 0
    setup_problem: str | None = None

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.error

    @property
    def all_setup_errors(self) -> bool:
        """Every task run (none skipped counts) broke on a configuration or endpoint problem."""
        return self.finished > 0 and self.setup_errors == self.finished

    def note_problem(self, exc: BaseException) -> None:
        """Count a task's exception that ``run`` would exit 2 for."""
        if isinstance(exc, DynagraphError) and exc.exit_code == 2:
            self.setup_errors += 1
            if self.setup_problem is None:
                text = str(exc).strip()
                self.setup_problem = text.splitlines()[0] if text else type(exc).__name__

    def count(self, status: str) -> None:
        if status == "done":
            self.done += 1
        elif status == "failed":
            self.failed += 1
        else:
            self.error += 1

    def line(self) -> str:
        rate = self.finished / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"batch: {self.total} tasks: {self.done} done, {self.failed} failed, "
            f"{self.error} error, {self.skipped} skipped (already finished); "
            f"{self.seconds:.1f} s, {rate:.2f} tasks/s"
        )
        return text + (" (interrupted)" if self.interrupted else "")


class ProgressBar:
    """Progress on stderr: one redrawn bar on a terminal, one line per finished task otherwise
    (so a log file does not fill with carriage returns)."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.started = time.monotonic()
        self.summary = BatchSummary()

    def update(self, row: dict[str, Any]) -> None:
        self.summary.count(row["status"])
        if self.stream is None:
            return
        done = self.summary.finished
        if self.tty:
            filled = self.WIDTH * done // max(self.total, 1)
            elapsed = time.monotonic() - self.started
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            s = self.summary
            self.stream.write(
                f"\r[{bar}] {done}/{self.total}  done {s.done}  failed {s.failed}  "
                f"error {s.error}  {elapsed:.1f} s"
            )
        else:
            width = len(str(self.total))
            why = f": {str(row['error'])[:200]}" if row.get("error") else ""
            self.stream.write(
                f"[{done:>{width}}/{self.total}] {row['id']}: {row['status']} "
                f"in {row['seconds']:.1f} s{why}\n"
            )
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty and self.summary.finished:
            self.stream.write("\n")
            self.stream.flush()


def _open_results(path: Path) -> TextIO:
    """Open for appending; a line torn by a crash is closed first, so it stays one bad line."""
    torn = False
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            torn = f.read(1) != b"\n"
    handle = path.open("a", encoding="utf-8")
    if torn:
        handle.write("\n")
    return handle


def _thread_id(task: BatchTask) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task.id)[:40]
    return f"batch-{safe}-{uuid.uuid4().hex[:8]}"


def run_batch(
    tasks: Iterable[BatchTask],
    settings: Settings,
    *,
    concurrency: int = 2,
    out: str | Path | None = None,
    results: TextIO | None = None,
    progress: TextIO | None = None,
    services: Services | None = None,
    context: Context | None = None,
    pool_size: int | None = None,
    runner: Callable[..., TaskResult] = run_task,
) -> BatchSummary:
    """Run `tasks`, `concurrency` at a time; write one result line per task.

    Lines go to `out` (appended; ids already finished there are skipped) or, without `out`, to
    `results` (default stdout). `pool_size` warm kernels are kept (default: the config's
    ``executor.pool_size``, else concurrency + 1). Before any task runs, raises ConfigError when
    a model key is missing and KernelError when the bwrap sandbox is asked for but missing; a
    task that raises becomes an ``error`` line and the others go on (the summary counts those
    that raised a configuration or endpoint problem: ``all_setup_errors``).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    tasks = list(tasks)
    if out is not None:  # a folder, a missing folder, a file that is not text: one line now
        check_results_path(out)
    done_before = finished_ids(out)
    todo = [t for t in tasks if t.id not in done_before]
    context = context or Context()
    own_services = services is None
    services = services or Services(settings)
    bar = ProgressBar(len(todo), progress)
    summary = bar.summary
    summary.total, summary.skipped = len(tasks), len(tasks) - len(todo)
    started = time.monotonic()
    sink = _open_results(Path(out)) if out is not None else None
    stream = sink or results or sys.stdout
    try:
        if todo:
            if settings.executor.sandbox == "bwrap" and shutil.which("bwrap") is None:
                raise KernelError(BWRAP_INSTALL_HINT)  # before any model call, not once per task
            preflight(services, context)
            size = pool_size if pool_size is not None else settings.executor.pool_size
            size = min(concurrency + 1 if size is None else size, len(todo))
            pool = services.start_kernel_pool(size)
            if pool is not None:  # no kernels warmed for tasks that will never come:
                # a task takes one for its cells and one for its librarian's probe replays
                pool.limit_takes(len(todo) * (2 if context.use_library else 1))

            def one(task: BatchTask) -> tuple[dict[str, Any], Exception | None]:
                thread_id = _thread_id(task)
                began = time.monotonic()
                try:
                    result = runner(
                        task.task, settings, thread_id, context=context, services=services
                    )
                except Exception as exc:
                    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    row = result_row(task, None, message, time.monotonic() - began, thread_id)
                    return row, exc
                return result_row(task, result, None, time.monotonic() - began, thread_id), None

            workers = ThreadPoolExecutor(concurrency, thread_name_prefix="dynagraph-batch")
            pending: set[Future[tuple[dict[str, Any], Exception | None]]] = {
                workers.submit(one, t) for t in todo
            }
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        row, raised = future.result()
                        stream.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                        stream.flush()
                        if raised is not None:
                            summary.note_problem(raised)
                        bar.update(row)
            except KeyboardInterrupt as exc:
                summary.interrupted = True
                workers.shutdown(wait=False, cancel_futures=True)
                summary.seconds = time.monotonic() - started
                raise BatchInterrupted(summary) from exc
            workers.shutdown()
    finally:
        bar.close()
        summary.seconds = time.monotonic() - started
        if sink is not None:
            sink.close()
        if own_services:
            services.close()
    return summary
