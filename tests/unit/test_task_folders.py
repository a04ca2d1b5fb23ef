"""A thread id names its task's folder under executor.workdir: that folder is the one place a
sandboxed cell may write, so no id may name anything else (an attack: ``--thread ..`` gave a
cell under bubblewrap the home, with checkpoints.db, as its writable folder)."""

from __future__ import annotations

import pytest
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings

from tests.support.config import write_stub_config


@pytest.fixture
def services(stub_env, tmp_path):
    config = write_stub_config(tmp_path / "c.yaml", stub_env["base_url"], stub_env["home"])
    svc = Services(load_settings(config))
    yield svc
    svc.close()


def test_every_thread_id_gets_a_folder_of_its_own_inside_the_tasks_folder(services):
    runs = services.settings.path(services.settings.executor.workdir)
    ids = [
        "fib-20",
        "t1",
        "..",
        ".",
        "",
        "a/b",
        "a_b",
        "a\\b",
        ".kernel-pool",
        "../../x",
        "x" * 300,
    ]
    folders = {thread: services.workdir_for(thread) for thread in ids}
    for thread, folder in folders.items():
        assert folder.parent == runs, (thread, folder)
        assert not folder.name.startswith(".") and len(folder.name) <= 100, (thread, folder)
    assert len(set(folders.values())) == len(ids)  # a/b, a\b and a_b apart
    assert folders["fib-20"].name == "fib-20" and folders["a_b"].name == "a_b"  # plain ids kept


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
