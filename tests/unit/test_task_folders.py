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
