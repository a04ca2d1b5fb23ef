"""The ``dynagraph`` command in a subprocess, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def dynagraph(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 200,
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (falls back to ``python -m dynagraph.graphs.cli``)."""
    exe = Path(sys.executable).with_name("dynagraph")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dynagraph.graphs.cli"]
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
