"""SIGKILL while the librarian writes, then resume the thread (``dynagraph run --thread``).

Each function's record and its "added" log entry are committed together, so the kill leaves
no record without its entry; the resumed librarian skips what its thread already decided, so
nothing is logged twice, counted as a use of itself, or counted as a second task.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import user_env
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

pytestmark = pytest.mark.timeout(300)

N = 40


def _cell() -> str:
    parts = []
    for i in range(N):
        parts.append(
            f"def shift_{i}(x: int) -> int:\n"
            f'    """Add {i} to x ({"abcdefghij"[i % 10]} variant {i})."""\n'
            f"    return x + {i} * {i + 1}\n"
        )
    calls = "\n".join(f"print(shift_{i}({i}))" for i in range(N))
    return "\n".join(parts) + "\n" + calls


def _db_rows(db: Path) -> tuple[list[tuple[str, str, int]], list[dict]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        functions = conn.execute("SELECT name, id, uses FROM functions").fetchall()
        entries = [json.loads(r[0]) for r in conn.execute("SELECT entry FROM decisions")]
        return functions, entries
    finally:
        conn.close()


def _count(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM functions").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _cmd() -> list[str]:
    exe = Path(sys.executable).with_name("dynagraph")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dynagraph.graphs.cli"]


def test_sigkill_during_admission_then_resume(stub_env, tmp_path):
    stub = stub_env["stub"]
    home = Path(stub_env["home"])
    env = user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(home))
    config = write_stub_config(
        tmp_path / "config.yaml",
        stub_env["base_url"],
        home,
        librarian={"generalize": False, "ask_model": False},
    )
    env["DYNAGRAPH_CONFIG"] = str(config)
    stub.script("planner", [planner_step("Define and try the shifts."), planner_answer("ok")])
    stub.script("coder", [coder_cell(_cell())])
    db = home / "library.db"
    task = "define forty shift functions"

    proc = subprocess.Popen(
        [*_cmd(), "run", task, "--thread", "t-kill", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while _count(db) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)  # the librarian is writing
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()

    functions, entries = _db_rows(db)
    assert 0 < len(functions) < N, len(functions)
    added = {e["record_id"]: e for e in entries if e["action"] == "added"}
    assert {fid for _, fid, _ in functions} == set(added)  # no record without its entry

    resumed = subprocess.run(
        [*_cmd(), "run", task, "--thread", "t-kill", "--json", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["status"] == "done"
    assert sorted(out["functions_created"]) == sorted(f"shift_{i}" for i in range(N))

    functions, entries = _db_rows(db)
    assert len(functions) == N
    assert all(uses == 0 for _, _, uses in functions)  # no use counted for itself
    by_name: dict[str, list[str]] = {}
    for e in entries:
        by_name.setdefault(e["name"], []).append(e["action"])
    assert all(actions == ["added"] for actions in by_name.values()), by_name
    assert len(by_name) == N
    assert {e["task_index"] for e in entries} == {1}  # one task, counted once
    conn = sqlite3.connect(db)
    try:
        (tasks,) = conn.execute("SELECT value FROM meta WHERE key = 'tasks'").fetchone()
    finally:
        conn.close()
    assert int(tasks) == 1
