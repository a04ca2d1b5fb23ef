"""One run per thread id at a time: an exclusive lock file per thread, held while it runs.

Why: a thread's checkpoints, task folder and kernel are keyed by its id. Two runs of one id at
once (two ``dynagraph run --thread X`` started together, a batch file listing an id twice)
each went ahead: their cells ran in one task folder and each reported the other's answer. The
second is refused now, in one line, before it writes anything.

The lock is ``flock`` on a file named after the thread id's hash: the kernel drops it when the
holder's process ends, however it ends (``kill -9`` included), so a dead run never blocks its
resume. The file is removed on release; a run that opened it just before is told by its inode
and opens the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from dynagraph.tools.errors import InputError


def lock_path(folder: Path, thread_id: str) -> Path:
    """The lock file of ``thread_id`` in ``folder`` (its hash: any id makes a file name)."""
    return (
        folder
        / f"{hashlib.sha256(thread_id.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}.lock"
    )


@contextlib.contextmanager
def thread_lock(folder: Path, thread_id: str) -> Iterator[None]:
    """Hold ``thread_id``'s lock while the block runs; :class:`InputError` at once when another
    run (this process or another) holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_path(folder, thread_id)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"thread {thread_id} is being run by another run now; wait for it to end, "
                "or use another thread id"
            ) from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # its holder removed it as we locked: take the new one
            current = False
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
