"""tools/thread_lock.py: one run per thread id at a time, with real processes."""

from __future__ import annotations

import pytest


def test_a_thread_lock_is_held_by_one_run_and_freed_when_its_holder_dies(tmp_path):
    """tools/thread_lock.py: a second holder is refused (in this process or another), the file
    goes with its release, and a holder killed with SIGKILL frees the lock."""
    import signal
    import subprocess
    import sys

    from dynagraph.tools.errors import InputError
    from dynagraph.tools.thread_lock import lock_path, thread_lock

    folder = tmp_path / "locks"
    with thread_lock(folder, "t\udce9"):  # any id, even one that is not UTF-8
        with (
            pytest.raises(InputError, match="being run by another run"),
            thread_lock(folder, "t\udce9"),
        ):
            pass
        with thread_lock(folder, "other"):
            pass
    assert list(folder.iterdir()) == []
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dynagraph.tools.thread_lock import "
         "thread_lock; from pathlib import Path\nwith thread_lock(Path(sys.argv[1]), 'x'):\n"
         "    print('held', flush=True); time.sleep(60)", str(folder)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError), thread_lock(folder, "x"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    holder.stdout.close()
    with thread_lock(folder, "x"):  # its file is left; its lock went with the process
        assert lock_path(folder, "x").exists()
