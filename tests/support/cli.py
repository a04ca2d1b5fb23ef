"""The ``dynagraph`` command in a subprocess, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
