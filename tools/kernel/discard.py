"""What closes a kernel dropped without ``KernelProcess.close()``: its finalizer, and the lock
it shares with ``close()`` (tools/kernel/launch.py)."""

from __future__ import annotations

import contextlib
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynagraph.tools.kernel.orphans import kill_tree, process_tree

if TYPE_CHECKING:
    from jupyter_client.manager import KernelManager


class Closing:
    """Who closes a KernelProcess: close() or its finalizer, one at a time and once. At exit
    the finalizers run in the main thread while another thread may be in close() (a scratch
    kernel's start failing as the process stops): two threads then closed one client and
    destroyed its zmq context together, and libzmq aborted the process (SIGABRT,
    "pfd.revents & POLLIN", ~1 stop in 20 during the librarian)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


def discard_kernel(
    km: KernelManager, runtime_dir: Path, clients: list[Any], log: Any, closing: Closing
) -> None:
    """Finalizer for a process dropped without close(): close its client and its log (held
    here, so they are not collected with the process while still open), kill its kernel,
    remove its files. Nothing when close() did it (or does it now: it is waited for)."""
    with closing.lock:
        if closing.done:
            return
        closing.done = True
        _discard(km, runtime_dir, clients, log)


def _discard(km: KernelManager, runtime_dir: Path, clients: list[Any], log: Any) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            client.stop_channels()
    clients.clear()
    background = process_tree(getattr(km.provisioner, "pid", None))
    with contextlib.suppress(Exception):
        km.shutdown_kernel(now=True)
    kill_tree(background)
    with contextlib.suppress(Exception):
        log.close()
    shutil.rmtree(runtime_dir, ignore_errors=True)
