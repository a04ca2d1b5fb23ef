"""A broken model endpoint, met through ``dynagraph run`` in a subprocess: one line, exit 2.

HTTP errors, bodies that are not JSON or break off, a hanging server and a refused connection
each end in one stderr line naming the endpoint, the model and what happened; with ``--json``
stdout still gets one object with ``status: "error"``. ``models.*.timeout`` bounds the whole
call, the client's retries included.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.cli import dead_endpoint, dynagraph, user_env
from tests.support.config import stub_config
from tests.support.openai_stub import StubError, StubFault

pytestmark = pytest.mark.timeout(180)


def _env(stub_env, tmp_path: Path, base_url: str, *, timeout: float = 30.0, retries: int = 2):
    env = user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(stub_env["home"]))
    data = stub_config(base_url, stub_env["home"])
    data["models"]["default"].update(model="stub-faulty", timeout=timeout, max_retries=retries)
    config = tmp_path / "faulty.yaml"
    config.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    env["DYNAGRAPH_CONFIG"] = str(config)
    return env


def _one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dynagraph: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (
            StubError(500, "upstream exploded", retry_after_ms=1),
            "answered HTTP 500: upstream exploded",
        ),
        (StubError(503, "overloaded", retry_after_ms=1), "answered HTTP 503"),
        (StubFault("garbage"), "a body that is not JSON"),
        (StubFault("truncated"), "broke off its reply"),
    ],
    ids=["http500", "http503", "not-json", "truncated"],
)
def test_bad_answers_are_one_line_exit_2_and_json(stub_env, tmp_path, fault, says):
    stub = stub_env["stub"]
    stub.script("planner", [fault] * 3)  # every attempt (1 + 2 retries) gets the same fault
    env = _env(stub_env, tmp_path, stub.base_url)
    proc = dynagraph("run", "add 2 and 3", "--json", "--quiet", env=env)
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc)
    assert stub.base_url in line and "stub-faulty" in line and "planner" in line, line
    assert says in line, line
    out = json.loads(proc.stdout)
    assert out["status"] == "error" and out["error"] == line.removeprefix("dynagraph: ")
    assert len(out["thread_id"]) == 36  # a new thread's id: the same --thread resumes it


def test_hanging_endpoint_fails_within_one_timeout_retries_included(stub_env, tmp_path):
    stub = stub_env["stub"]
    stub.script("planner", [StubFault("hang", seconds=60)] * 3)
    timeout, retries = 4.0, 2
    env = _env(stub_env, tmp_path, stub.base_url, timeout=timeout, retries=retries)
    started = time.monotonic()
    proc = dynagraph("run", "add 2 and 3", "--json", "--quiet", env=env)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc)
    assert "no reply within 4 s" in line and stub.base_url in line and "stub-faulty" in line
    assert "cannot reach" not in line  # the server took the connection: it is not unreachable
    assert json.loads(proc.stdout)["status"] == "error"
    # one deadline for the call: not (1 + max_retries) x timeout = 12 s
    assert elapsed < timeout * 2, f"took {elapsed:.1f} s"
    assert len(stub.requests_for("planner")) == 1


def test_refused_connection_says_so_with_json(stub_env, tmp_path):
    dead = dead_endpoint()
    env = _env(stub_env, tmp_path, dead, retries=1)
    proc = dynagraph("run", "x", "--json", "--quiet", env=env)
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc)
    assert (
        dead.removesuffix("/v1") in line and "connection refused" in line and "stub-faulty" in line
    )
    out = json.loads(proc.stdout)
    assert out == {
        "task": "x",
        "status": "error",
        "error": line.removeprefix("dynagraph: "),
        "thread_id": out["thread_id"],
    }
    assert len(out["thread_id"]) == 36  # the new thread's id: `--thread` it once fixed


def test_a_retried_5xx_then_an_answer_still_succeeds(stub_env, tmp_path):
    """Retries still happen inside the deadline (the fix must not drop them)."""
    from tests.support.config import coder_cell, planner_answer, planner_step

    stub = stub_env["stub"]
    stub.script(
        "planner",
        [StubError(500, "blip", retry_after_ms=1), planner_step("Print 2+3."), planner_answer("5")],
    )
    stub.script("coder", [coder_cell("print(2 + 3)")])
    env = _env(stub_env, tmp_path, stub.base_url)
    proc = dynagraph("run", "add 2 and 3", "--json", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "5"


def _task_folders(runs: Path) -> list[str]:
    """The task folders under executor.workdir (not the kernel pool's own .kernel-pool)."""
    return (
        sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))
        if runs.exists()
        else []
    )


@pytest.mark.parametrize("endpoint", ["refused", "hanging"])
def test_a_run_stopped_before_its_first_cell_leaves_no_task_folder(stub_env, tmp_path, endpoint):
    """The task's kernel starts (and makes the task's folder) while the planner's first call is
    out; a run that then stops on the endpoint must not leave that empty folder behind."""
    stub = stub_env["stub"]
    if endpoint == "refused":  # the client's retries (backoff) give the kernel time to start
        env = _env(stub_env, tmp_path, dead_endpoint(), retries=2)
    else:
        stub.script("planner", [StubFault("hang", seconds=60)])
        env = _env(stub_env, tmp_path, stub.base_url, timeout=3.0, retries=0)
    runs = stub_env["home"] / "runs"
    for _ in range(2):
        proc = dynagraph("run", "add 2 and 3", "--quiet", env=env)
        assert proc.returncode == 2, proc.stderr
        _one_line(proc)
    assert _task_folders(runs) == []


def test_a_resumed_thread_keeps_its_folder_and_still_runs(stub_env, tmp_path):
    stub = stub_env["stub"]
    runs = stub_env["home"] / "runs"
    mine = runs / "has-files"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    dead = _env(stub_env, tmp_path, dead_endpoint(), retries=2)
    proc = dynagraph("run", "x", "--thread", "has-files", "--quiet", env=dead)
    assert proc.returncode == 2, proc.stderr
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"  # a folder with files stays

    proc = dynagraph("run", "add 2 and 3", "--thread", "later", "--quiet", env=dead)
    assert proc.returncode == 2, proc.stderr
    assert _task_folders(runs) == ["has-files"]  # "later" ran no cell: its folder is gone

    from tests.support.config import coder_cell, planner_answer, planner_step

    stub.script("planner", [planner_step("Print 2+3."), planner_answer("5")])
    stub.script("coder", [coder_cell("print(2 + 3)\nopen('out.txt', 'w').write('5')")])
    live = _env(stub_env, tmp_path, stub.base_url)
    proc = dynagraph("run", "add 2 and 3", "--thread", "later", "--json", "--quiet", env=live)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["answer"], result["thread_id"]) == ("5", "later")
    assert "add 2 and 3" in stub.requests_for("planner")[0]["messages"][-1]["content"]
    assert (runs / "later" / "out.txt").read_text(encoding="utf-8") == "5"  # its cell ran there
