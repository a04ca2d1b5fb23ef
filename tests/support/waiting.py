"""Waiting in tests for work done in another thread or process."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll until ``condition`` holds, at most ``timeout`` seconds; returns whether it held
    (the caller asserts, or records, what the wait was for)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
