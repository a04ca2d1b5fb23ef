"""One cell on the wire: the receive loop over iopub + shell, and the collection of the cell's
messages into an ExecutionResult.

jupyter_client's ``execute_interactive`` neither interrupts on timeout nor notices a dead
kernel, so the loop is ours: short polls on both sockets, messages matched to the cell by parent
``msg_id``, ``is_alive()`` polled every 0.25 s, timeout -> interrupt -> grace. What to do when the
kernel is lost (restart, notes) is the session's business: :func:`receive` only says how the
cell ended.

Two more duties:

- **Stopping.** The receive loop usually runs in a worker thread (LangGraph's, a batch's), where
  Ctrl-C never lands: the signal raises in the main thread, which then waits for the worker. So
  :func:`cancel_running` (called by the CLI's signal handler) marks every receive loop in the
  process; each interrupts its kernel and raises :class:`CellCancelled` within one poll (0.25 s),
  and with ``for_good`` every later receive raises at once (the process is stopping).
- **Attribution.** Output carries the parent id of the cell that *started the thread* printing
  it (kernel_side/thread_parent.py), so a thread left running by an earlier cell never speaks
  for the current one: its stream output is kept apart, short, and reported in a note as
  background output (``CellRun.background``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import zmq
from dynagraph.tools.kernel.capture import OutputCapture, head_tail, html_to_text, strip_ansi
from dynagraph.tools.kernel.result import ExecutionResult, Status

__all__ = [
    "CellCancelled",
    "CellRun",
    "Ending",
    "cancel_running",
    "receive",
    "refuse_if_stopping",
    "resume_cells",
]

#: How a cell's receive loop ended: reply and idle seen ("done"), reply seen but iopub went
#: quiet ("quiet"), the kernel process died ("died"), or the cell ran past its timeout and
#: the grace after the interrupt ("stuck": only a restart stops it).
Ending = Literal["done", "quiet", "died", "stuck"]

ALIVE_POLL_S = 0.25
#: How long a cancel waits for the kernel to start the cell before interrupting it anyway.
#: A SIGINT landing while ipykernel is still taking the request (before the cell's
#: execute_input) ended the kernel (exit 0) in ~1 cancel in 20; once the cell runs, IPython
#: takes it. A silent cell has no execute_input: its "busy" status and this margin stand in.
CANCEL_START_WAIT_S = 1.0
_BUSY_MARGIN_S = 0.02
_CANCEL_POLL_S = 0.005
_IDLE_AFTER_REPLY_S = 5.0  # iopub silence after the reply before we stop waiting for 'idle'
_DRAIN_BATCH = 500
_KERNEL_CUT_RE = re.compile("\x00dynagraph-cut:(\\d+)\x00")  # kernel_side/stream_cap.py
_PLACEHOLDER_RE = re.compile(r"^<[^\n]*>$")
_IMAGE_TYPES = (("image/png", "png"), ("image/jpeg", "jpg"), ("image/gif", "gif"))
BACKGROUND_LIMIT = 600  # characters of background output quoted in a cell's note
BACKGROUND_NOTE = (
    "background output, not this cell's: threads started by earlier cells printed this "
    "after their cell had ended"
)


class CellCancelled(KeyboardInterrupt):
    """The process is stopping (Ctrl-C, SIGTERM): the cell was interrupted and not waited for.

    A KeyboardInterrupt, so nothing that catches Exception swallows it on its way out."""


class _Stopping:
    """Receive loops in progress (their cancel flags), and whether new ones may start.

    Touched from a signal handler: no locks (a set's add/discard and list() are atomic under
    the GIL; a lock held by the interrupted main thread would deadlock the handler)."""

    def __init__(self) -> None:
        self.active: set[threading.Event] = set()
        self.for_good = False


_STOPPING = _Stopping()  # process-wide by nature: signals are


def cancel_running(*, for_good: bool = False) -> int:
    """Make every receive loop in this process interrupt its cell and raise CellCancelled
    within one poll; with ``for_good``, every later receive() raises at once too. Returns how
    many cells were running. Safe to call from a signal handler (sets flags, nothing else)."""
    if for_good:
        _STOPPING.for_good = True
    flags = list(_STOPPING.active)
    for flag in flags:
        flag.set()
    return len(flags)


def refuse_if_stopping() -> None:
    """Raise CellCancelled when ``cancel_running(for_good=True)`` was called: a cell is then
    not sent at all. Sending it and interrupting it at once, as receive() would, raced the
    kernel: a SIGINT landing while ipykernel was still taking the request ended the kernel
    (exit 0) in ~1 case in 4 (tests/e2e/test_interrupts.py)."""
    if _STOPPING.for_good:
        raise CellCancelled("the process is stopping: the cell was not run")


def resume_cells() -> None:
    """Undo ``cancel_running(for_good=True)``: receive() runs cells again."""
    _STOPPING.for_good = False


class CellRun:
    """Collects one cell's messages (those whose parent is `msg_id`) into an ExecutionResult."""

    def __init__(self, msg_id: str, output_limit: int, save_image: Callable[[str, bytes], str]):
        self.msg_id = msg_id
        self.output_limit = output_limit
        self.capture = OutputCapture(output_limit)
        self.save_image = save_image
        self.reply: dict[str, Any] | None = None
        self.started = False  # the kernel runs the cell: its execute_input (or more) came
        self.busy_at: float | None = None  # when its "busy" status came
        self.last_activity = time.monotonic()
        self.idle = False
        self.result: str | None = None
        self.error: dict[str, Any] | None = None
        self.files: list[str] = []
        self.extra_cut = 0
        self.clear_pending = False
        self.background = OutputCapture(BACKGROUND_LIMIT)  # other cells' threads (module doc)

    @property
    def done(self) -> bool:
        return self.reply is not None and self.idle

    def running(self, now: float) -> bool:
        """Whether the kernel is running the cell (past taking its request): an interrupt
        now reaches the cell, not ipykernel (CANCEL_START_WAIT_S)."""
        return self.started or (self.busy_at is not None and now >= self.busy_at + _BUSY_MARGIN_S)

    def on_shell(self, msg: dict[str, Any]) -> None:
        if msg.get("parent_header", {}).get("msg_id") != self.msg_id:
            return
        if msg.get("msg_type") == "execute_reply" and self.reply is None:
            self.reply = msg.get("content", {})
            self.last_activity = time.monotonic()

    def on_iopub(self, msg: dict[str, Any]) -> None:
        if msg.get("parent_header", {}).get("msg_id") != self.msg_id:
            if msg.get("msg_type") == "stream":  # a thread an earlier cell left running
                text = strip_ansi(_KERNEL_CUT_RE.sub("", msg.get("content", {}).get("text", "")))
                self.background.add("background", text)
            return
        self.last_activity = time.monotonic()
        kind = msg.get("msg_type")
        content = msg.get("content", {})
        if kind != "status":
            self.started = True
        if kind == "status":
            if content.get("execution_state") == "idle":
                self.idle = True
            elif content.get("execution_state") == "busy" and self.busy_at is None:
                self.busy_at = self.last_activity
        elif kind == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            text = content.get("text", "")
            if "\x00dynagraph-cut:" in text:  # the kernel dropped output here (stream_cap)
                parts = _KERNEL_CUT_RE.split(text)
                for index, part in enumerate(parts):
                    if index % 2:
                        self.capture.skip(int(part))
                    else:
                        self._add(name, strip_ansi(part))
            else:
                self._add(name, strip_ansi(text))
        elif kind == "display_data":
            text = self._rich_text(content.get("data", {}))
            if text:
                self._add("display", text if text.endswith("\n") else text + "\n")
        elif kind == "execute_result":
            text = self._rich_text(content.get("data", {}))
            self.result, cut = head_tail(text, self.output_limit // 2)
            self.extra_cut += cut
        elif kind == "error":
            self.error = content
        elif kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self._clear()

    def _clear(self) -> None:
        self.capture = OutputCapture(self.output_limit)
        self.clear_pending = False

    def _add(self, kind: str, text: str) -> None:
        if self.clear_pending:
            self._clear()
        self.capture.add(kind, text)

    def _rich_text(self, data: Mapping[str, Any]) -> str:
        """One display bundle as text: images saved to files and named, HTML reduced to text."""
        parts = []
        for mime, suffix in _IMAGE_TYPES:
            payload = data.get(mime)
            if isinstance(payload, str):
                try:
                    raw = base64.b64decode(payload)
                except (binascii.Error, ValueError):
                    continue
                path = self.save_image(suffix, raw)
                self.files.append(path)
                parts.append(f"[image saved: {path}]")
                break
        else:
            svg = data.get("image/svg+xml")
            if isinstance(svg, str):
                path = self.save_image("svg", svg.encode())
                self.files.append(path)
                parts.append(f"[image saved: {path}]")
        plain = strip_ansi(str(data.get("text/plain", "")))
        meaningful_plain = plain and not _PLACEHOLDER_RE.match(plain.strip())
        if meaningful_plain:
            parts.append(plain)
        elif "text/markdown" in data:
            parts.append(str(data["text/markdown"]))
        elif "text/html" in data:
            parts.append(html_to_text(str(data["text/html"])))
        elif "text/latex" in data:
            parts.append(str(data["text/latex"]))
        elif "application/json" in data:
            parts.append(str(data["application/json"]))
        elif plain and not parts:
            parts.append(plain)
        elif not parts and data:
            parts.append("[display of type " + ", ".join(sorted(data)) + "]")
        return " ".join(parts)

    def finish(
        self, status: Status, started: float, timeout: float | None, **overrides: Any
    ) -> ExecutionResult:
        outputs = self.capture.items()
        error = self.error
        if error is None and self.reply and self.reply.get("status") == "error":
            error = self.reply  # silent cells report errors only in the reply
        if status == "ok" and (error is not None or (self.reply or {}).get("status") == "aborted"):
            status = "error"
        result = ExecutionResult(
            status=status,
            stdout="".join(text for kind, text in outputs if kind == "stdout"),
            stderr="".join(text for kind, text in outputs if kind == "stderr"),
            outputs=outputs,
            result=self.result,
            truncated_chars=self.capture.cut + self.extra_cut,
            files=list(self.files),
            duration_s=time.monotonic() - started,
            timeout_s=timeout,
        )
        if error is not None:
            result.error_name = error.get("ename")
            result.error_value = strip_ansi(str(error.get("evalue", "")))
            trace = strip_ansi("\n".join(error.get("traceback") or []))
            trace, cut = head_tail(trace, self.output_limit // 2)
            result.traceback = trace or None
            result.truncated_chars += cut
        elif status == "error" and result.error_name is None:
            result.error_name = "Aborted"
            result.error_value = "the kernel aborted this cell"
        result.user_expressions = dict((self.reply or {}).get("user_expressions") or {})
        background = "".join(text for _, text in self.background.items())
        if background.strip():
            result.notes.append(f"{BACKGROUND_NOTE}:\n{background.rstrip()}")
        for name, value in overrides.items():
            setattr(result, name, value)
        if result.result is not None:  # both come at the end of a cell, after its output
            result.outputs.append(("result", result.result))
        if result.traceback or result.error_name:
            error_text = result.traceback or f"{result.error_name}: {result.error_value}"
            result.outputs.append(("error", error_text))
        return result


def drain(channel: Any, handle: Callable[[dict[str, Any]], None]) -> None:
    """Hand the channel's waiting messages (at most a batch) to `handle`, without blocking."""
    for _ in range(_DRAIN_BATCH):
        if not channel.msg_ready():
            return
        handle(channel.get_msg(timeout=0))


def receive(
    client: Any,
    run: CellRun,
    *,
    started: float,
    timeout: float | None,
    grace_s: float,
    is_alive: Callable[[], bool],
    interrupt: Callable[[], None],
) -> tuple[Ending, bool]:
    """Collect `run`'s messages until the cell ends; (how it ended, whether it was interrupted).

    On "died" and "stuck" the iopub messages still waiting (what the cell printed last) have
    been collected already. Raises CellCancelled, after interrupting the cell, when
    cancel_running() is called meanwhile (or was, for good, before).
    """
    with _cancel_flag() as cancelled:
        iopub, shell = client.iopub_channel, client.shell_channel
        poller = zmq.Poller()
        poller.register(iopub.socket, zmq.POLLIN)
        poller.register(shell.socket, zmq.POLLIN)
        deadline = None if timeout is None else started + timeout
        interrupted = False
        next_alive_check = time.monotonic() + ALIVE_POLL_S
        cancel_by = None  # when a cancel stops waiting for the cell to start
        while not run.done:
            now = time.monotonic()
            if cancelled.is_set():
                cancel_by = cancel_by or now + CANCEL_START_WAIT_S
                if run.running(now) or run.reply is not None or now >= cancel_by:
                    if run.reply is None:
                        interrupt()
                    raise CellCancelled("the process is stopping: the cell was interrupted")
            if run.reply is not None and now > run.last_activity + _IDLE_AFTER_REPLY_S:
                return "quiet", interrupted
            if now >= next_alive_check:
                next_alive_check = now + ALIVE_POLL_S
                if not is_alive():
                    with contextlib.suppress(Exception):  # keep what it printed before dying
                        drain(iopub, run.on_iopub)
                    return "died", interrupted
            if deadline is not None and now >= deadline and run.reply is None:
                if interrupted:
                    drain(iopub, run.on_iopub)
                    return "stuck", interrupted
                interrupted = True
                interrupt()
                deadline = now + grace_s
            wait = ALIVE_POLL_S if cancel_by is None else _CANCEL_POLL_S
            if deadline is not None:
                wait = min(wait, max(deadline - now, 0.0))
            events = dict(poller.poll(int(wait * 1000)))
            if iopub.socket in events:
                drain(iopub, run.on_iopub)
            if shell.socket in events:
                drain(shell, run.on_shell)
        return "done", interrupted


@contextlib.contextmanager
def _cancel_flag() -> Iterator[threading.Event]:
    """A flag cancel_running() sets, registered while a receive loop runs (set already when
    the process is stopping for good)."""
    cancelled = threading.Event()
    _STOPPING.active.add(cancelled)
    try:
        if _STOPPING.for_good:
            cancelled.set()
        yield cancelled
    finally:
        _STOPPING.active.discard(cancelled)
