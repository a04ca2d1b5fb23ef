"""Cap each user cell's stdout and stderr inside the kernel; run after every (re)start.

Capping on the host alone is not enough: ipykernel sends what one ``write()`` got as one
message, so ``print("x" * 50_000_000)`` would reach the agent as a 50 MB message (~150 MB of peak
memory to decode). Here each user cell's streams pass their first ``limit`` characters through;
after that only the last ``limit`` are kept and sent when the cell ends, preceded by
``CUT_MARKER`` counting the characters dropped in between (the host turns it back into a cut,
tools/kernel/cell.py). Silent cells (the executor's own bookkeeping, whose output is data) fire
no ``pre_run_cell`` and are not capped.
"""

from __future__ import annotations

from typing import Any

#: Written to the stream where characters were dropped: NUL, ``dynagraph-cut:<count>``, NUL.
CUT_MARKER = "\x00dynagraph-cut:%d\x00"


def install(shell: Any, limit: int) -> None:
    import contextlib
    import sys
    import threading
    from collections import deque

    class Cap:
        def __init__(self, stream: Any) -> None:
            self.stream = stream
            self.send = stream.write
            self.lock = threading.Lock()
            self.on = False
            self.reset()

        def reset(self) -> None:
            self.sent, self.kept, self.cut, self.tail = 0, 0, 0, deque()

        def write(self, text: Any) -> Any:
            if not self.on or not isinstance(text, str):
                return self.send(text)
            with self.lock:
                size = len(text)
                room = limit - self.sent
                if room > 0 and not self.kept:
                    self.sent += min(room, size)
                    self.send(text[:room])
                    text = text[room:]
                if text:
                    self.tail.append(text)
                    self.kept += len(text)
                while self.kept > limit:
                    excess, first = self.kept - limit, self.tail[0]
                    if len(first) <= excess:
                        self.tail.popleft()
                        self.kept -= len(first)
                        self.cut += len(first)
                    else:
                        self.tail[0] = first[excess:]
                        self.kept -= excess
                        self.cut += excess
                return size

        def finish(self) -> None:
            with self.lock:
                if self.cut:
                    self.send(CUT_MARKER % self.cut)
                if self.tail:
                    self.send("".join(self.tail))
                self.reset()
                self.on = False

    caps = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if hasattr(stream, "pub_thread") and not hasattr(stream, "_dynagraph_cap"):
            stream._dynagraph_cap = Cap(stream)
            caps.append(stream._dynagraph_cap)

    def pre_execute() -> None:
        for cap in caps:
            with cap.lock:
                cap.reset()
                cap.on = False
            if cap.stream.__dict__.get("write") != cap.write:
                cap.stream.write = cap.write

    # IPython 9 wraps write() around every cell to keep all its stream output in memory (for
    # %history -o): it would undo the patch above and hold a 50 MB print forever.
    shell._tee = lambda channel: contextlib.nullcontext()

    def pre_run_cell(info: Any) -> None:
        for cap in caps:
            cap.on = True

    def post_run_cell(result: Any) -> None:
        for cap in caps:
            cap.finish()

    shell.events.register("pre_execute", pre_execute)
    shell.events.register("pre_run_cell", pre_run_cell)
    shell.events.register("post_run_cell", post_run_cell)
