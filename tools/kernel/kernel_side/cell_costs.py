"""What ipykernel and IPython do for every cell that our cells do not need; run after every
(re)start.

Why: a step's kernel round trip is a large share of a step (bench/README.md 13o), and a good
part of it was work whose result nobody reads. Each change below keeps what a cell sees and
what comes back; each checks that the objects it changes are the ones it knows, and leaves them
alone otherwise (another ipykernel or IPython version runs as it ships):

- **Empty flushes.** ``OutStream.flush()`` called outside the IOPub thread hands two callbacks
  to that thread and waits for the second, even with nothing written; the kernel flushes both
  streams twice after every cell. A flush now returns at once when every byte written before it
  has been sent: the buffers are empty *and* no ``_flush`` of the IOPub thread is between
  taking the buffers and sending them (counted around the original ``_flush``, which takes them
  under the lock this check holds). 3.4 -> 2.8 ms a small cell's round trip.
- **Debug records nobody prints.** The kernel's logger is at DEBUG and filters at its handlers
  (WARNING), so every cell built ~6 log records to drop them. The logger's level is now its
  handlers' lowest when it does not propagate: the same records are printed.
- **The async check compiles the cell.** ``should_run_async`` compiles the whole cell to see
  whether it has a top-level ``await``, twice a cell (ipykernel asks, then ``run_cell``). A
  cell whose text has neither ``await`` nor ``async`` cannot have one, and is answered without
  compiling; any other cell is asked as before.
- **The cell is transformed twice.** ipykernel transforms the cell (magics, ``!``) for that
  check, then ``run_cell`` transforms the same text again. The second call, with the same text
  in the same cell, returns the first's result; the result is dropped when the cell ends.

- **A cell's file name is hashed in pure Python.** ipykernel names each cell's code
  ``<tmp>/ipykernel_<pid>/<murmur2 of the cell>.py`` for its debugger, with murmur2 written in
  Python: ~0.2 ms a KB of cell, every cell. The name keeps its form and comes from blake2b
  (in C); what it is for, a name per distinct cell for tracebacks' source lines, is kept. Only
  a debugger attached to the kernel would look for the murmur2 name, and ours have none.

Together: 3.0 -> 2.5-2.6 ms a small cell, 9.1-9.5 -> 5.9-6.8 ms a 4 KB one (without the file
name's hash; bench/README.md 13o has the figures with it).
"""

from __future__ import annotations

from typing import Any


def install(shell: Any) -> None:
    import sys
    import threading

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        needed = ("pub_thread", "_buffers", "_buffer_lock", "_flush", "echo")
        if all(hasattr(stream, a) for a in needed) and "_dynagraph_flush" not in vars(stream):
            _quick_flushes(stream, threading)
    kernel = getattr(shell, "kernel", None)
    log = getattr(kernel, "log", None)
    if log is not None and hasattr(log, "handlers") and log.handlers and not log.propagate:
        log.setLevel(min(handler.level for handler in log.handlers))
    if "_dynagraph_costs" not in vars(shell):
        _async_check_by_text(shell)
        _one_transform_per_cell(shell)
        _file_names_hashed_in_c(shell)
        shell._dynagraph_costs = True


def _quick_flushes(stream: Any, threading: Any) -> None:
    send = stream._flush  # the original, bound: takes the buffers and sends them
    flush = stream.flush
    # one entry per _flush between taking the buffers and having sent them; list.append and
    # list.pop are atomic, so no lock is held that a forked child could inherit held
    sending: list[int] = []

    def counted_send() -> None:
        sending.append(1)
        try:
            send()
        finally:
            sending.pop()

    def quick_flush() -> None:
        thread = getattr(stream.pub_thread, "thread", None)
        if (
            stream.echo is None
            and thread is not None
            and thread.is_alive()
            and thread.ident != threading.get_ident()
        ):
            with stream._buffer_lock:
                if not sending and not any(buffer.tell() for buffer in stream._buffers.values()):
                    return
        flush()

    stream._flush = counted_send
    stream.flush = quick_flush
    stream._dynagraph_flush = True


def _async_check_by_text(shell: Any) -> None:
    ask = getattr(shell, "should_run_async", None)
    if ask is None:
        return

    def should_run_async(
        raw_cell: str, *, transformed_cell: Any = None, preprocessing_exc_tuple: Any = None
    ) -> bool:
        cell = raw_cell if transformed_cell is None else transformed_cell
        if isinstance(cell, str) and "await" not in cell and "async" not in cell:
            return False
        return ask(
            raw_cell,
            transformed_cell=transformed_cell,
            preprocessing_exc_tuple=preprocessing_exc_tuple,
        )

    shell.should_run_async = should_run_async


def _one_transform_per_cell(shell: Any) -> None:
    transform = getattr(shell, "transform_cell", None)
    events = getattr(shell, "events", None)
    if transform is None or events is None:
        return
    last: list[Any] = []  # [raw cell, its transform] of the cell now running

    def transform_cell(raw_cell: str) -> Any:
        if last and last[0] == raw_cell:
            return last[1]
        result = transform(raw_cell)
        last[:] = [raw_cell, result]
        return result

    def forget(*_: Any) -> None:
        last.clear()

    shell.transform_cell = transform_cell
    events.register("post_execute", forget)


def _file_names_hashed_in_c(shell: Any) -> None:
    import hashlib
    import os

    compiler = getattr(shell, "compile", None)
    if type(compiler).__name__ != "XCachingCompiler":
        return
    from ipykernel import compiler as names

    folder = getattr(names, "get_tmp_directory", None)
    if folder is None or not callable(getattr(names, "get_file_name", None)):
        return

    def get_code_name(raw_code: str, code: str, number: int) -> str:
        given = os.environ.get("IPYKERNEL_CELL_NAME")
        if given is not None:
            return given
        text = raw_code if raw_code is not None else code
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8)
        return folder() + os.sep + str(int.from_bytes(digest.digest(), "little")) + ".py"

    compiler.get_code_name = get_code_name
