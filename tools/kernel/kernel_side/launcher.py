"""The kernel process's program (``python -c <this source> LIMIT PARENT -f CONN ...``).

It runs inside the kernel process itself, before ipykernel (no ``preexec_fn``: unsafe with
threads, and under bwrap it would act on bwrap rather than the kernel):

- PR_SET_PDEATHSIG(SIGKILL): the kernel dies with the process that started it, even when that
  process is SIGKILLed and even while the kernel is stuck in C code (ipykernel's own parent
  poller is a Python thread that a C loop starves). If that parent is already gone (PARENT is
  its pid, 0 under bwrap where the parent is the sandbox's init), exit at once;
- RLIMIT_AS (LIMIT bytes, 0 for none), then start ipykernel as ``-m ipykernel_launcher`` does,
  without its shell-channel thread. ipykernel 7 reads the shell socket in a thread of its own
  and passes each request, and its reply, through a pair of inproc sockets to the main thread,
  so that "subshells" can run requests side by side. The agent never opens a subshell; without
  that thread (ipykernel's own ``shell_channel_thread = None`` path, its 6.x layout) the main
  thread's loop reads the shell socket itself: 2.02 -> 1.67 ms a round trip (bench/README.md
  13g). Interrupts and shutdowns are unchanged: SIGINT and the control thread. (Letting an
  empty stream's flush skip its wait for the IOPub thread saved 0.4 ms more but let a
  subprocess's last output miss its cell under load: withdrawn, 13g.)
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

from ipykernel import kernelapp  # noqa: E402

_stock_init_control = kernelapp.IPKernelApp.init_control


def _init_control_without_shell_thread(self, context):  # type: ignore[no-untyped-def]
    _stock_init_control(self, context)
    self.shell_channel_thread = None


if hasattr(kernelapp.IPKernelApp, "shell_channel_thread"):  # ipykernel 7
    kernelapp.IPKernelApp.init_control = _init_control_without_shell_thread
kernelapp.launch_new_instance()
