#!/usr/bin/env python
"""Kernel shutdown time: jupyter_client's defaults ("before") vs launch.py's ("after").

Why: ipykernel 7 sometimes hangs joining its control thread after it has answered the shutdown
request; with jupyter_client's defaults (SIGINT first, exit polled every 0.1 s, SIGTERM only
after ``shutdown_wait_time / 2`` = 2.5 s) such a shutdown took 2.6 s, about one in four.
launch.py's manager skips the SIGINT, polls every 10 ms and sends SIGTERM after 0.5 s.

Each round starts a kernel (the sandbox ``executor.sandbox: auto`` picks), runs one cell and
times ``KernelSession.shutdown()``, once with each setting, interleaved.

Usage: ``python bench/kernel_shutdown.py [--rounds 12]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dynagraph.tools.kernel.launch as launch  # noqa: E402
from dynagraph.tools.kernel.session import KernelSession  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

Manager = launch._GivenSpecKernelManager
AFTER = (Manager._async_interrupt_kernel, Manager._async_finish_shutdown, launch.SHUTDOWN_WAIT_S)


def use(setting: str) -> None:
    if setting == "before":
        Manager._async_interrupt_kernel = KernelManager._async_interrupt_kernel
        Manager._async_finish_shutdown = KernelManager._async_finish_shutdown
        launch.SHUTDOWN_WAIT_S = 5.0  # jupyter_client's default
    else:
        Manager._async_interrupt_kernel, Manager._async_finish_shutdown = AFTER[:2]
        launch.SHUTDOWN_WAIT_S = AFTER[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for setting, found in times.items():
            use(setting)
            folder = tempfile.mkdtemp(prefix="dynagraph-bench-")
            session = KernelSession(folder, sandbox="auto")
            session.start()
            session.execute("x = sum(range(1000)); print(x)")
            began = time.perf_counter()
            session.shutdown()
            found.append(1000 * (time.perf_counter() - began))
            shutil.rmtree(folder, ignore_errors=True)
    use("after")
    for setting, found in times.items():
        slow = sum(t > 2000 for t in found)
        print(
            f"{setting:>6}: median {statistics.median(found):.0f} ms, max {max(found):.0f} ms, "
            f"over 2 s: {slow} of {len(found)}"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
