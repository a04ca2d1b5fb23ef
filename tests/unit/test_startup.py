"""The ``dynagraph`` command starts with the cyclic collector paused and resumes it, with what
the start built frozen, before any task runs (graphs/startup.py). The command's own runs are
in fresh interpreters: the collector's state and ``sys.modules`` are per process."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
from dynagraph.graphs import startup

from tests.support.config import write_stub_config

#: Runs the console script's entry with ``run`` whose handler only reports what it sees; the
#: settings loader reports whether the collector was paused while the command started.
PROBE = """
import gc, json, sys
from dynagraph.graphs import cli, startup
seen = {}
load = cli.load_settings
def load_settings(path):
    seen["paused_at_settings"] = not gc.isenabled()
    return load(path)
def handler(args, settings):
    seen["enabled_in_task"] = gc.isenabled()
    seen["frozen_in_task"] = gc.get_freeze_count()
    seen["client_imported"] = "langchain_openai" in sys.modules
    seen["graph_imported"] = "dynagraph.graphs.run" in sys.modules
    return 0
cli.load_settings, cli.cmd_run = load_settings, handler
code = startup.main(sys.argv[1:])
seen["code"], seen["enabled_after"] = code, gc.isenabled()
print(json.dumps(seen))
"""


def probe(*argv: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_task_starts_paused_and_runs_with_the_collector_on(tmp_path: Path) -> None:
    config = write_stub_config(tmp_path / "c.yaml", "http://127.0.0.1:9/v1", tmp_path)
    seen = probe("run", "What is 6*7?", "--config", str(config))
    assert seen["paused_at_settings"] is True
    assert seen["enabled_in_task"] is True
    assert seen["frozen_in_task"] > 10_000  # the imports, moved out of the collector's way
    assert seen["client_imported"] and seen["graph_imported"]  # imported before the task
    assert seen["code"] == 0 and seen["enabled_after"] is True


def test_a_command_that_fails_to_start_leaves_the_collector_on(tmp_path: Path) -> None:
    seen = probe("run", "x", "--config", str(tmp_path / "missing.yaml"))
    assert seen["code"] != 0
    assert "enabled_in_task" not in seen
    assert seen["enabled_after"] is True


@pytest.fixture
def collector_state():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()
    else:
        gc.disable()


def test_a_collector_the_caller_disabled_stays_disabled(collector_state, tmp_path: Path) -> None:
    gc.disable()
    code = startup.main(["run", "x", "--config", str(tmp_path / "missing.yaml")])
    assert code != 0
    assert gc.isenabled() is False


def test_resume_without_a_pause_changes_nothing(collector_state) -> None:
    gc.disable()
    frozen = gc.get_freeze_count()
    startup.resume_collector()
    assert gc.isenabled() is False
    assert gc.get_freeze_count() == frozen


def test_a_stop_signal_before_the_cli_handles_signals_exits_quietly(tmp_path):
    """The entry point handles SIGINT/SIGTERM/SIGHUP from its first line: a signal while the
    CLI is still being imported exits 128 + signal with one line, no traceback (an attack's
    Ctrl-C in the first ~0.15 s printed a KeyboardInterrupt traceback from an import)."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "early_signal.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, time
            import dynagraph.graphs.cli as cli

            def early(argv):  # the CLI's start, before it handles signals itself
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
                return 0

            cli.main = early
            from dynagraph.graphs import startup
            raise SystemExit(startup.main([]))
            """
        ),
        encoding="utf-8",
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "interrupted (SIGINT)"
