"""Which sandbox a kernel gets, and what the agent process does to keep its own secrets.

Model-written cells run with this user's rights. Scrubbing the kernel's environment
(environment.py) is not enough: a cell can read ``/proc/<agent pid>/environ`` (API keys) and
open DYNAGRAPH_HOME's databases. Two layers close that:

- **The sandbox** (``executor.sandbox``): ``auto``, the default, runs every kernel under
  bubblewrap when ``bwrap`` is installed *and* can create namespaces here (probed once per
  process, by running it), else without a sandbox and with one warning line on stderr that says
  how to install it. ``bwrap`` insists (KernelError, exit 2, when it cannot run); ``none`` never
  sandboxes. The sandbox itself is built in launch.py: read-only system, private /tmp,
  DYNAGRAPH_HOME hidden, the task's directory the only writable place, its own PID namespace.
- **The agent process** (:func:`protect_agent_process`): once, when the first kernel is created,
  it makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), which makes its ``/proc/<pid>``
  entries (environ, mem, fds) root-owned, so an unsandboxed kernel of the same user cannot read
  them. Root is not stopped by that (CAP_SYS_PTRACE), so as root it does nothing: an
  unsandboxed kernel run by root can read every process's environment.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Literal

from dynagraph.tools.kernel.errors import BWRAP_INSTALL_HINT, KernelError

__all__ = [
    "BWRAP_WARNING",
    "Sandbox",
    "SandboxChoice",
    "SandboxMode",
    "bwrap_probe",
    "protect_agent_process",
    "resolve_sandbox",
]

log = logging.getLogger(__name__)

SandboxMode = Literal["auto", "none", "bwrap"]  # executor.sandbox, as configured
Sandbox = Literal["none", "bwrap"]  # what a kernel runs under, once resolved
BWRAP_WARNING = (
    "dynagraph: warning: kernels run WITHOUT a sandbox ({why}); model-written code can read and "
    "write everything this user can. Install bubblewrap (`apt-get install bubblewrap`) or set "
    "executor.sandbox: none to silence this."
)
#: The namespaces and mounts launch.py asks for, on a trivial program: if this runs, kernels can.
_PROBE_ARGS = (
    "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
    "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
    "--unshare-cgroup-try", "--die-with-parent", "--new-session",
)  # fmt: skip
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class SandboxChoice:
    """What a kernel runs under: ``mode`` is "bwrap" or "none"; ``bwrap`` its executable."""

    mode: Sandbox
    bwrap: str | None = None
    why: str = ""  # why there is no sandbox, when auto fell back


@functools.lru_cache(maxsize=8)
def bwrap_probe(bwrap: str = "bwrap") -> tuple[str | None, str]:
    """(absolute path, "") when bubblewrap runs here, else (None, why not). Cached per process:
    the probe starts one sandbox (~10 ms)."""
    path = shutil.which(bwrap)
    if path is None:
        return None, "bubblewrap is not installed"
    # a program outside /tmp: the probe's private /tmp would hide an interpreter that lives
    # there (a checkout's venv under /tmp, as CI clones are), which launch.py binds back itself
    program = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
    argv = [path, *_PROBE_ARGS, "--", program]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"}
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path} cannot start: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return None, f"{path} cannot create a sandbox here: {detail}"
    return path, ""


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(why: str) -> None:
    """The one stderr line of a process whose kernels fall back to no sandbox."""
    with _warn_lock:
        if _warned:
            return
        _warned.add(why)
    print(BWRAP_WARNING.format(why=why), file=sys.stderr, flush=True)


def resolve_sandbox(mode: str, bwrap: str = "bwrap") -> SandboxChoice:
    """The sandbox a kernel gets for ``executor.sandbox`` = `mode`.

    ``auto``: bubblewrap when it runs here, else none plus one warning line per process.
    ``bwrap``: bubblewrap or KernelError (one line, exit 2). ``none``: none.
    """
    if mode == "none":
        return SandboxChoice("none")
    if mode not in ("auto", "bwrap"):
        raise ValueError(f"sandbox must be 'auto', 'none' or 'bwrap', not {mode!r}")
    path, why = bwrap_probe(bwrap)
    if path is not None:
        return SandboxChoice("bwrap", path)
    if mode == "bwrap":
        if shutil.which(bwrap) is None:
            raise KernelError(BWRAP_INSTALL_HINT)
        raise KernelError(f"{why} (executor.sandbox: bwrap); use auto or none to run without it")
    _warn_once(why)
    return SandboxChoice("none", why=why)


_protected: str | None = None
_protect_lock = threading.Lock()


def protect_agent_process() -> str:
    """Make this process's /proc entries unreadable to its kernels, once; says what it did.

    Linux, not root: ``prctl(PR_SET_DUMPABLE, 0)``: /proc/<pid>/environ, mem, fd and the like
    become root-owned, and same-user processes (unsandboxed kernels) can no longer read them or
    ptrace this process. Kernels are exec'd, so they are dumpable again and unaffected. As root
    it does nothing (root keeps CAP_SYS_PTRACE and reads them anyway): only the sandbox's own PID
    namespace hides the agent from a root kernel. Elsewhere (macOS) it does nothing.
    """
    global _protected
    with _protect_lock:
        if _protected is None:
            _protected = _make_undumpable()
            log.debug("agent process protection: %s", _protected)
        return _protected


def _make_undumpable() -> str:
    if not sys.platform.startswith("linux"):
        return f"nothing: PR_SET_DUMPABLE is Linux only (this is {sys.platform})"
    if os.geteuid() == 0:
        return "nothing: running as root, which reads every /proc entry regardless"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return f"prctl failed: {os.strerror(ctypes.get_errno())}"
    except (OSError, AttributeError) as exc:
        return f"prctl unavailable: {exc}"
    return "made non-dumpable: /proc/<pid> entries of the agent are root-owned"
