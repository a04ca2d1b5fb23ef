"""A broken model endpoint, met through ``dynagraph run`` in a subprocess: one line, exit 2.

HTTP errors, bodies that are not JSON or break off, a hanging server and a refused connection
each end in one stderr line naming the endpoint, the model and what happened; with ``--json``
stdout still gets one object with ``status: "error"``. ``models.*.timeout`` bounds the whole
call, the client's retries included.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.support.cli import dynagraph
from tests.support.config import stub_config
from tests.support.openai_stub import StubError, StubFault

pytestmark = pytest.mark.timeout(180)


def _env(stub_env, tmp_path: Path, base_url: str, *, timeout: float = 30.0, retries: int = 2):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAGRAPH_")}
    env["OPENAI_API_KEY"] = stub_env["api_key"]
    env["DYNAGRAPH_HOME"] = str(stub_env["home"])
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
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(stub_env, tmp_path, f"http://127.0.0.1:{port}/v1", retries=1)
    proc = dynagraph("run", "x", "--json", "--quiet", env=env)
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc)
    assert f"127.0.0.1:{port}" in line and "connection refused" in line and "stub-faulty" in line
    assert json.loads(proc.stdout) == {
        "task": "x",
        "status": "error",
        "error": line.removeprefix("dynagraph: "),
        "thread_id": None,
    }


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
