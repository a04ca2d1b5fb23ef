"""The ``dynagraph`` command's entry point: its start runs with the cyclic garbage collector
paused.

Why: from process start to the first model request, ``dynagraph run`` imports LangGraph,
langchain and the openai client and builds its settings models: a few hundred thousand
container objects, all of which live as long as the process. While they are built, CPython's
collector walks the growing heap again and again and finds nothing to free; that was 150-180
ms of the ~1 s to the first request on the 2-core bench machine (bench/README.md, 13f).
The command therefore pauses the collector while it imports what its first request needs,
then moves what it built to the collector's permanent generation (``gc.freeze()``) and
resumes it before any task runs, so a task's own cycles are collected as usual. Scripts
that import ``dynagraph`` are never affected: only this entry point pauses.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Sequence

#: True while this module holds the collector paused (a collector the caller had disabled
#: itself is left alone)
_paused = False


def pause_collector() -> None:
    """Stop automatic collections until :func:`resume_collector`."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """Start automatic collections again if :func:`pause_collector` stopped them; a no-op
    otherwise, so every command may call it once its start is over."""
    global _paused
    if _paused:
        _paused = False
        # Everything built so far lives as long as the process; without the freeze the first
        # collections after the pause walk all of it (measured: 80 + 60 ms, more than the
        # pause saved). Frozen, the collector never visits it again.
        gc.freeze()
        gc.enable()


def _stop_while_importing(signum: int, _frame: object) -> None:
    """A stop signal before the CLI installs its own handler (graphs/cli.py): nothing has
    started that needs cleaning up, so say so and exit at once (a Ctrl-C in the first ~0.15 s
    printed a KeyboardInterrupt traceback from inside an import)."""
    os.write(2, f"interrupted ({signal.Signals(signum).name})\n".encode())
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """``dynagraph ...``: the CLI, its imports made with the collector paused (the CLI
    resumes it once the command's start is over; at the latest it resumes here)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_while_importing)
    pause_collector()
    try:
        from dynagraph.graphs.cli import main as cli_main

        return cli_main(argv)
    finally:
        resume_collector()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the interpreter's own again
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
