"""The ``dynagraph`` command in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment as a user's shell would have it: no ``DYNAGRAPH_*`` variable
    of the test run's own, then ``extra`` set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAGRAPH_")}
    return env | extra


def dead_endpoint() -> str:
    """An OpenAI-style base URL on a loopback port nothing listens on (free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def dynagraph_argv(*args: str) -> list[str]:
    """The command line of ``dynagraph ARGS``: the installed console script, or
    ``python -m dynagraph.graphs.startup`` (its entry point) when there is none."""
    exe = Path(sys.executable).with_name("dynagraph")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dynagraph.graphs.startup"]
    return [*cmd, *args]


def dynagraph(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 200,
) -> subprocess.CompletedProcess[str]:
    """Run ``dynagraph ARGS`` (see :func:`dynagraph_argv`) and wait for it."""
    return subprocess.run(
        dynagraph_argv(*args),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def wait_for_requests(
    stub: Any, node: str, count: int, process: subprocess.Popen, timeout: float = 90.0
) -> None:
    """Wait until ``process`` has sent ``count`` requests to the stub's ``node`` model; fail
    the test (the process killed, its stderr shown) if it ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while len(stub.requests_for(node)) < count:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"request {count} never reached the {node}: {process.communicate()[1]!r}")
        time.sleep(0.05)
