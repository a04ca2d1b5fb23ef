"""The kernel process's program (``python -c <this source> LIMIT PARENT -f CONN ...``).

It runs inside the kernel process itself, before ipykernel (no ``preexec_fn``: unsafe with
threads, and under bwrap it would act on bwrap rather than the kernel):

- PR_SET_PDEATHSIG(SIGKILL): the kernel dies with the process that started it, even when that
  process is SIGKILLed and even while the kernel is stuck in C code (ipykernel's own parent
  poller is a Python thread that a C loop starves). If that parent is already gone (PARENT is
  its pid, 0 under bwrap where the parent is the sandbox's init), exit at once;
- RLIMIT_AS (LIMIT bytes, 0 for none), then start ipykernel as ``-m ipykernel_launcher`` does,
  with two hand-offs between its threads taken out of every cell's round trip (0.65 ms of ~2.0
  here, bench/README.md 13g), both for a client that, like ours, reads until the idle status:

  * no shell-channel thread. ipykernel 7 reads the shell socket in a thread of its own and passes
    each request, and its reply, through a pair of inproc sockets to the main thread, so that
    "subshells" can run requests side by side. The agent never opens a subshell; without that
    thread (ipykernel's own ``shell_channel_thread = None`` path, its 6.x layout) the main
    thread's loop reads the shell socket itself. Interrupts and shutdowns are unchanged: SIGINT
    and the control thread.
  * an empty stream's ``flush()`` returns at once. ipykernel flushes stdout and stderr twice
    per request (before the reply, and again after the handler), and each flush waits for the
    IOPub thread even when there is nothing to send. A flush with nothing buffered and nothing
    pending has nothing to wait for: every IOPub message goes out through that thread in the
    order it was queued, so the idle status still follows all of the cell's output. A stream
    with text (or an echo, or in a forked child) flushes as before.
"""

import os
import sys

limit = int(sys.argv.pop(1))
parent = int(sys.argv.pop(1))
try:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
if parent and os.getppid() != parent:
    os._exit(1)
if limit > 0:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
if sys.path and sys.path[0] == "":
    del sys.path[0]
del limit, parent

from ipykernel import iostream, kernelapp  # noqa: E402

_stock_init_control = kernelapp.IPKernelApp.init_control
_stock_flush = iostream.OutStream.flush


def _init_control_without_shell_thread(self, context):  # type: ignore[no-untyped-def]
    _stock_init_control(self, context)
    self.shell_channel_thread = None


def _flush_unless_empty(self):  # type: ignore[no-untyped-def]
    idle = not (getattr(self, "_buffers", True) or getattr(self, "_flush_pending", True))
    if idle and self.echo is None and self._is_master_process():
        return None
    return _stock_flush(self)


if hasattr(kernelapp.IPKernelApp, "shell_channel_thread"):  # ipykernel 7
    kernelapp.IPKernelApp.init_control = _init_control_without_shell_thread
if hasattr(iostream.OutStream, "_is_master_process"):
    iostream.OutStream.flush = _flush_unless_empty
kernelapp.launch_new_instance()
