"""LangGraph Studio's server: `langgraph dev` serves the repo's langgraph.json, a task runs
through langgraph-sdk against the stub model, and the final state is read back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ok(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"langgraph dev exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url + "/ok", timeout=2) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError as exc:  # not ready yet; the error holds the socket
            exc.close()
            time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"langgraph dev not ready in {seconds}s:\n{log.read_text()[-3000:]}")


def test_langgraph_dev_runs_a_task(stub_env, tmp_path):
    exe = Path(sys.executable).with_name("langgraph")
    if not exe.exists() and not shutil.which("langgraph"):
        pytest.skip("langgraph-cli is not installed (pip install 'langgraph-cli[inmem]')")
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Add 2 and 3."), planner_answer("5")])
    stub.script(
        "coder",
        [
            coder_cell(
                'def add_numbers(a: int, b: int) -> int:\n    """Add two numbers."""\n    return a + b\n\nprint(add_numbers(2, 3))'
            )
        ],
    )
    config = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    port = free_port()
    env = {**os.environ, "DYNAGRAPH_CONFIG": str(config), "DYNAGRAPH_HOME": str(stub_env["home"])}
    env["OPENAI_API_KEY"] = stub_env["api_key"]
    env["LANGGRAPH_CLI_NO_ANALYTICS"] = "1"
    log = tmp_path / "langgraph-dev.log"  # outside the repo: a log inside it triggers hot reload
    # the repo's langgraph.json in a project folder of its own, as a user's project holds it
    # (it names the installed module): the server's state (.langgraph_api) is this test's,
    # never an earlier run's in the checkout
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "langgraph.json", project / "langgraph.json")
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [
                str(exe) if exe.exists() else "langgraph",
                "dev",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--no-browser",
                "--no-reload",
                "--allow-blocking",
                "--config",
                str(project / "langgraph.json"),
            ],
            cwd=project,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ok(url, proc, log)
        from langgraph_sdk import get_sync_client

        with get_sync_client(url=url) as client:
            assistants = client.assistants.search(graph_id="dynagraph")
            assert assistants, "the server does not serve the dynagraph graph"
            thread = client.threads.create()
            client.runs.wait(
                thread["thread_id"],
                assistants[0]["assistant_id"],
                input={"task": "What is 2 + 3?"},
            )
            state = client.threads.get_state(thread["thread_id"])
        values = state["values"]
        assert values["answer"] == "5", log.read_text()[-3000:]
        assert values["status"] == "done"
        assert values["steps"][0]["status"] == "ok"
        assert "5" in values["steps"][0]["observation"]
        assert values["functions_created"] == ["add_numbers"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
