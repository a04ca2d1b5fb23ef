"""A ``dynagraph run`` subprocess whose one cell sleeps, for tests of how a run ends (a signal,
a kill) and what it leaves behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import dynagraph_argv
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.processes import descendants

SLOW_CELL = "import pathlib, time\npathlib.Path('cell-started').touch()\ntime.sleep(60)\n"


def start_slow_task(
    cli_env: dict[str, str],
    stub_env: dict[str, Any],
    tmp_path: Path,
    tmp: Path,
    cell: str = SLOW_CELL,
    argv=None,
) -> tuple[subprocess.Popen, set[int]]:
    """Start `dynagraph run` (or ``argv(config)``) with ``TMPDIR=tmp``, whose one cell sleeps
    60 s; return it and its kernel processes once the cell runs. ``tmp`` must be short (see the
    ``short_tmp`` fixture): the kernel's runtime folder is checked to be made in it."""
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Sleep a minute."), planner_answer("done")])
    stub.script("coder", [coder_cell(cell)])
    home = Path(cli_env["DYNAGRAPH_HOME"])
    config = write_stub_config(
        tmp_path / "slow.yaml", stub_env["base_url"], home, executor={"timeout": 120.0}
    )
    env = {**cli_env, "DYNAGRAPH_CONFIG": str(config), "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        argv(config) if argv else dynagraph_argv("run", "sleep", "--thread", "slow", "--quiet"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = home / "runs" / "slow" / "cell-started"
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the cell never started (exit {proc.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    kernels = descendants(proc.pid)
    assert kernels, "no kernel process under the process while its cell runs"
    assert list(tmp.glob("dynagraph-kernel-*")), "the kernel's runtime folder is not in TMPDIR"
    return proc, kernels
