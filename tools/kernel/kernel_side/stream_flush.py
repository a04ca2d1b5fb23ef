"""A flush of stdout or stderr with nothing to send returns at once; run after every (re)start.

Why: ipykernel's ``OutStream.flush()`` called outside its IOPub thread hands two callbacks to
that thread and waits for the second (a thread round trip), even when nothing was written. The
kernel does it four times after every cell (stdout and stderr after ``do_execute``, both again
before the idle status), and a cell's output usually leaves one of the four anything to send.
Skipping the empty ones took a cell's round trip from 3.4-3.5 to 2.8-2.9 ms (bench/README.md
13o).

A flush may return early only when every byte written before it has been sent: the buffers are
empty *and* no ``_flush`` of the IOPub thread is between taking the buffers and sending them
(counted here around the original ``_flush``, which takes the buffers under the same lock this
check holds). Everything else (a flush with data, in the IOPub thread, in a forked child whose
IOPub thread is gone, with an echo stream) runs the original.
"""

from __future__ import annotations

from typing import Any


def install(shell: Any) -> None:
    import sys
    import threading

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        needed = ("pub_thread", "_buffers", "_buffer_lock", "_flush", "echo")
        if not all(hasattr(stream, a) for a in needed) or "_dynagraph_flush" in vars(stream):
            continue  # not ipykernel's OutStream (or another version of it), or done already
        _install_on(stream, threading)


def _install_on(stream: Any, threading: Any) -> None:
    send = stream._flush  # the original, bound: takes the buffers and sends them
    flush = stream.flush
    sending = [0]  # _flush calls between taking the buffers and having sent them
    count_lock = threading.Lock()

    def counted_send() -> None:
        with count_lock:
            sending[0] += 1
        try:
            send()
        finally:
            with count_lock:
                sending[0] -= 1

    def quick_flush() -> None:
        pub = stream.pub_thread
        thread = getattr(pub, "thread", None)
        if (
            stream.echo is None
            and thread is not None
            and thread.is_alive()
            and thread.ident != threading.get_ident()
        ):
            with stream._buffer_lock:
                with count_lock:
                    idle = not sending[0]
                if idle and not any(buffer.tell() for buffer in stream._buffers.values()):
                    return
        flush()

    stream._flush = counted_send
    stream.flush = quick_flush
    stream._dynagraph_flush = True
