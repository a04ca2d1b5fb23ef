"""A folder the agent must write in, made if missing, or one line saying why it cannot be.

Why: an unwritable place named by a setting (the tasks' folder, the demo's home) failed with a
traceback, the tasks' folder only when the first kernel started, after two model calls. Both
are checked before any work now, by this one function.
"""

from __future__ import annotations

import os
from pathlib import Path

from dynagraph.tools.errors import EnvironmentProblem


def writable_folder(folder: Path, *, what: str, fix: str) -> Path:
    """``folder``, made with its parents if missing; :class:`EnvironmentProblem` (exit 2, one
    line: ``cannot use FOLDER as WHAT: why (FIX)``) when it cannot be made or written in."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        why = None if os.access(folder, os.W_OK | os.X_OK) else "not writable"
    except OSError as exc:
        why = exc.strerror or str(exc)
    if why is not None:
        raise EnvironmentProblem(f"cannot use {folder} as {what}: {why} ({fix})")
    return folder
