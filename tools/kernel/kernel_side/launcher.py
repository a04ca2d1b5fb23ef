"""The kernel process's program (``python -c <this source> LIMIT PARENT -f CONN ...``).

It runs inside the kernel process itself, before ipykernel (no ``preexec_fn``: unsafe with
threads, and under bwrap it would act on bwrap rather than the kernel):

- PR_SET_PDEATHSIG(SIGKILL): the kernel dies with the process that started it, even when that
  process is SIGKILLed and even while the kernel is stuck in C code (ipykernel's own parent
  poller is a Python thread that a C loop starves). If that parent is already gone (PARENT is
  its pid, 0 under bwrap where the parent is the sandbox's init), exit at once;
- PR_SET_CHILD_SUBREAPER: a process a cell started in the background whose parent exits (a
  double-forked daemon) is re-parented to the kernel, not to init, so the agent finds it below
  the kernel and ends it with the kernel (tools/kernel/orphans.py);
- RLIMIT_AS (LIMIT bytes, 0 for none), then start ipykernel as ``-m ipykernel_launcher`` does.

ipykernel 7 is started as it ships. Running it without its shell-channel thread (its 6.x
layout: the main thread reads the shell socket) saved 0.35 ms a round trip (bench/README.md
13g), but ipykernel 7.4's execute path reads that thread's ``parent_thread`` for a cell with a
top-level ``await``: the cell ran, its reply was never sent, and the session timed out and
restarted the kernel (bench/README.md 13l; tests/unit/test_kernel.py).
"""

import os
import sys

limit = int(sys.argv.pop(1))
parent = int(sys.argv.pop(1))
try:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: a cell's daemons stay below us
    del libc
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

kernelapp.launch_new_instance()
