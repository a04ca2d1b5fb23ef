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
  under the lock this check holds). ~0.25 ms a cell, the pipe's check below included.
  Output written to the file descriptors (``os.write(1, ...)``, C code, a subprocess) reaches
  the stream through ipykernel's pipe and a watcher thread; the stock kernel's waits usually
  gave that thread the GIL before the idle status, and a quick return lost such a cell's last
  line to the next cell in ~1 case in 4 (an attack found it: tests/unit/test_kernel.py). So a
  flush of a watched stream first waits (up to 10 ms, then the stock flush) until the pipe is
  empty and the watcher waits in ``read`` on it, as /proc/self/task/<id>/syscall shows: then
  no byte written before is in its hands. That holds under load too, where the stock kernel's
  waits did not (3-6 of 450 such lines left their cell with two busy processes on 2 cores;
  0 here). Without /proc the check is an empty pipe and a ``sleep(0)``.
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

Together (``python bench/cell_costs.py``, bench/README.md 13o): the peers' step cell 3.3 -> 3.0
ms, a CRAFT tool cell 6.1 -> 4.9, a definition cell of three tools 5.0 -> 3.5.
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
    watch = _pipe_watch(stream)

    def counted_send() -> None:
        sending.append(1)
        try:
            send()
        finally:
            sending.pop()

    def nothing_to_send() -> bool:
        with stream._buffer_lock:
            return not sending and not any(buffer.tell() for buffer in stream._buffers.values())

    def quick_flush() -> None:
        thread = getattr(stream.pub_thread, "thread", None)
        if (
            stream.echo is None
            and thread is not None
            and thread.is_alive()
            and thread.ident != threading.get_ident()
            and nothing_to_send()  # else the stock flush, without looking at the pipe
            and _watcher_done(watch)
            and nothing_to_send()  # the watcher may have written what it held meanwhile
        ):
            return
        flush()

    stream._flush = counted_send
    stream.flush = quick_flush
    stream._dynagraph_flush = True


def _pipe_watch(stream: Any) -> tuple[int, str, str] | None:
    """(pipe, the watcher's /proc syscall file, its line's start while it waits in ``read`` on
    the pipe) for a stream whose file descriptor ipykernel watches; None for a stream it does
    not watch. The line's start is read now, while the watcher waits (nothing has written to
    the descriptors yet); "" when /proc cannot show it (then see :func:`_watcher_done`)."""
    pipe = getattr(stream, "_fid", None)
    thread = getattr(stream, "watch_fd_thread", None)
    if pipe is None or not getattr(stream, "_should_watch", False):
        return None
    path = f"/proc/self/task/{getattr(thread, 'native_id', None)}/syscall"
    try:
        with open(path) as status:
            fields = status.read().split()
    except OSError:
        return pipe, path, ""
    if len(fields) > 1 and fields[1] == hex(pipe):  # waiting in a syscall on the pipe: read
        return pipe, path, f"{fields[0]} {fields[1]} "
    return pipe, path, ""


def _watcher_done(watch: tuple[int, str, str] | None) -> bool:
    """Whether every byte written to the stream's file descriptor before now is in its
    buffers: the pipe is empty and its watcher waits in ``read`` on it (so it holds nothing
    it has read). Waits up to 10 ms for that, False after (the stock flush then runs): a
    subprocess left printing every 0.5 ms made a cell 3.4 ms instead of 2.0, one that never
    lets the pipe empty would cost each flush 10 ms. Where /proc cannot show the watcher, an
    empty pipe and a ``sleep(0)`` (the watcher may write what it holds) stand for it, as the
    stock flush's waits did."""
    import fcntl
    import struct
    import termios
    import time

    if watch is None:
        return True
    pipe, path, waiting_line = watch
    deadline = time.monotonic() + 0.01
    while True:
        try:
            waiting = struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, b"\0\0\0\0"))[0]
            if not waiting_line:
                if waiting:
                    return False
                time.sleep(0)
                return True
            with open(path) as status:
                if not waiting and status.read().startswith(waiting_line):
                    return True
        except OSError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0001)


def _async_check_by_text(shell: Any) -> None:
    ask = getattr(shell, "should_run_async", None)
    if ask is None:
        return

    def should_run_async(
        raw_cell: str, *, transformed_cell: Any = None, preprocessing_exc_tuple: Any = None
    ) -> bool:
        cell = transformed_cell  # stock IPython requires it: called without, it answers
        if isinstance(cell, str) and "await" not in cell and "async" not in cell:
            return False
        return ask(
            raw_cell,
            transformed_cell=transformed_cell,
            preprocessing_exc_tuple=preprocessing_exc_tuple,
        )

    shell.should_run_async = should_run_async


def _one_transform_per_cell(shell: Any) -> None:
    import threading

    transform = getattr(shell, "transform_cell", None)
    events = getattr(shell, "events", None)
    if transform is None or events is None:
        return
    last: list[Any] = []  # [thread, raw cell, its transform] of the cell now running

    def transform_cell(raw_cell: str) -> Any:
        thread = threading.get_ident()
        if last and last[0] == thread and last[1] == raw_cell:
            return last[2]
        result = transform(raw_cell)
        last[:] = [thread, raw_cell, result]
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
