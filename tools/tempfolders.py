"""Private temporary folders that name the process owning them, and a sweep of the ones whose
owner is gone.

Why: a kernel's runtime folder, the agent proxy's socket folder and a scratch kernel's folder are
removed when the agent shuts down normally, but a process killed with SIGKILL (or a lost
terminal) cannot remove anything, and nothing else knew those folders were dead: an attack found
~320 of them in /tmp after a day of runs. Each folder's name now carries its owner,
``<prefix><pid>.<start time>.<pid and time namespaces>-<random>``, so a later process can tell
a dead owner's folder (no such process, or the pid now belongs to a process started at another time)
from a live one's, without a lock or a registry. A folder is only ever removed when its owner is
certainly gone: one from another pid namespace (a container sharing /tmp), another user's, or
one without an owner in its name (made before this scheme, or on a system without /proc) stays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dynagraph.tools.procfs import start_time

__all__ = [
    "KERNEL_PREFIX",
    "KNOWN_PREFIXES",
    "PROXY_PREFIX",
    "SCRATCH_PREFIX",
    "owned_prefix",
    "owner_tag",
    "private_folder",
    "remove_dead",
    "sweep_temp",
]

log = logging.getLogger(__name__)

#: A kernel's runtime folder: connection file, log, ipc sockets (tools/kernel/launch.py).
KERNEL_PREFIX = "dynagraph-kernel-"
#: The agent proxy's socket folder (tools/actions/proxy.py).
PROXY_PREFIX = "dynagraph-proxy-"
#: A scratch kernel's own folder (graphs/scratch.py, tools/librarian/scratch.py).
SCRATCH_PREFIX = "dynagraph-scratch-"
KNOWN_PREFIXES = (KERNEL_PREFIX, PROXY_PREFIX, SCRATCH_PREFIX)
#: An AF_UNIX socket path holds at most 107 bytes.
SOCKET_PATH_MAX = 107
_RANDOM_CHARS = 8  # what tempfile.mkdtemp adds
_DIGITS = re.compile(r"[0-9]{1,10}")  # a pid (str.isdigit also takes "²", which int() refuses)

_tag: tuple[int, str | None] | None = None


def owner_tag() -> str | None:
    """``<pid>.<start time>.<pid namespace>_<time namespace>`` of this process (None without
    /proc: then folders carry no owner and are never swept). Once per process (again after a
    fork)."""
    global _tag
    pid = os.getpid()
    if _tag is None or _tag[0] != pid:
        _tag = (pid, _read_tag(pid))
    return _tag[1]


def _read_tag(pid: int) -> str | None:
    start = start_time(pid)
    try:
        namespaces = [f"{os.stat('/proc/self/ns/pid').st_ino:x}"]
    except OSError:
        return None
    # start times read from another time namespace are shifted (unshare --boottime): its
    # processes' owners would look dead from here, and ours from there
    with contextlib.suppress(OSError):
        namespaces.append(f"{os.stat('/proc/self/ns/time').st_ino:x}")
    return f"{pid}.{start}.{'_'.join(namespaces)}" if start is not None else None


def owned_prefix(prefix: str) -> str:
    """``prefix`` followed by this process's owner tag: the start of a name :func:`remove_dead`
    can judge (``prefix`` alone where the tag is unknown: never swept)."""
    tag = owner_tag()
    return f"{prefix}{tag}-" if tag else prefix


def private_folder(prefix: str, *, socket_name: str = "", parent: Path | None = None) -> Path:
    """A new folder (mode 0700) named ``prefix`` + this process's owner tag, in ``parent`` (made
    if missing) or else the temp folder (``TMPDIR``), or in /tmp when a socket ``socket_name``
    inside it would have a path too long for the system there (zmq: "File name too long"; a
    Unix server: "AF_UNIX path too long")."""
    full = owned_prefix(prefix)
    where = None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        where = str(parent)
    elif socket_name:
        longest = len(tempfile.gettempdir()) + 1 + len(full) + _RANDOM_CHARS + len(socket_name)
        if longest > SOCKET_PATH_MAX and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
            where = "/tmp"
    return Path(tempfile.mkdtemp(prefix=full, dir=where))


def sweep_temp() -> int:
    """Remove the folders dead owners left in the temp folder and in /tmp (where folders with
    sockets go when the temp folder's path is long); the number removed."""
    roots = dict.fromkeys([Path(tempfile.gettempdir()), Path("/tmp")])
    return sum(remove_dead(root, prefix) for root in roots for prefix in KNOWN_PREFIXES)


def remove_dead(root: Path, prefix: str, keep: Callable[[Path], bool] | None = None) -> int:
    """Remove each folder in ``root`` named ``prefix`` + an owner tag of this pid namespace
    whose owner is no longer running, and is this user's, unless ``keep(folder)``; the number
    removed. Never raises."""
    mine = owner_tag()
    if mine is None:
        return 0
    namespace = mine.rsplit(".", 1)[1]
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        tag = entry.name[len(prefix) :].split("-", 1)[0]
        parts = tag.split(".")
        if len(parts) != 3 or parts[2] != namespace or not _DIGITS.fullmatch(parts[0]):
            continue  # not ours to judge (another namespace), or not a name we made
        if start_time(int(parts[0])) == parts[1]:
            continue  # its owner runs
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
                continue
            if keep is not None and keep(Path(entry.path)):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.lexists(entry.path)
    if removed:
        log.info("removed %d folders of processes that ended without removing them", removed)
    return removed
