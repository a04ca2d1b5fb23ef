"""One driver process of bench/peers.py: a variant's tasks against the loopback model.

``run_once`` starts the variant's driver (bench/peer_drivers/) in its own session, samples the
memory of its process tree, and returns one row: the driver's task times joined with what the
stub counted for each task (requests, prompt characters, step starts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DRIVERS = BENCH_DIR / "peer_drivers"
sys.path.insert(0, str(BENCH_DIR.parent))

from bench.peers_model import ModelStub  # noqa: E402
from bench.peers_setup import PEERS, write_dynagraph_config  # noqa: E402


# -- process tree memory ------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, IndexError, ValueError):
        return 0


class TreeSampler(threading.Thread):
    """Peak summed RSS of a process and its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in _tree(self.pid)))
            self.stop.wait(self.interval)


# -- running --------------------------------------------------------------------------------------
@dataclass
class Variant:
    key: str
    label: str
    fmt: str
    python: Path | None = None
    no_library: bool = False
    library_file: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # dynagraph config overrides
    version: str = ""
    baseline: Path | None = None  # a shim folder importing another revision's tree (--baseline)


#: Runs a driver against the tree on PYTHONPATH: the checkout's editable finder is removed.
BASELINE_LAUNCH = (
    "import os, runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]; "
    "sys.argv = sys.argv[1:]; sys.path.insert(0, os.path.dirname(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_once(
    stub: ModelStub,
    variant: Variant,
    ns: list[int],
    work: Path,
    timeout: float,
    env: dict[str, str],
) -> dict[str, Any]:
    base_url, run = stub.new_run(variant.fmt)
    rid = base_url.split("/run/")[1].split("/")[0]
    home = Path(tempfile.mkdtemp(prefix=f"{variant.key}-", dir=work))
    result_file = home / "result.json"
    tasks = [1, *ns]  # the first task is the warm-up; ns already holds the repeats
    if variant.fmt == "dynagraph":
        driver, python = DRIVERS / "dynagraph_driver.py", sys.executable
        extra = ["--config", str(write_dynagraph_config(home, base_url, variant.settings))]
        if variant.no_library:
            extra.append("--no-library")
        if variant.library_file:
            shutil.copy(variant.library_file, home / "library.db")
        run_env = {**env, "DYNAGRAPH_HOME": str(home)}
        run_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    else:
        driver = DRIVERS / PEERS[variant.key]["driver"]
        python, extra, run_env = str(variant.python), [], env
    prefix = [python, str(driver)]
    if variant.baseline is not None:  # the other tree first on the path, the editable one off
        prefix = [python, "-c", BASELINE_LAUNCH, str(driver)]
        run_env = {**run_env, "PYTHONPATH": str(variant.baseline)}
    command = [
        *prefix,
        "--base-url",
        base_url,
        "--tasks",
        ",".join(map(str, tasks)),
        "--warmup",
        "1",
        "--result",
        str(result_file),
        *extra,
    ]
    spawned = time.time()
    proc = subprocess.Popen(
        command,
        cwd=home,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the driver's own session: only what this script started
        out, err = proc.communicate()
    finally:
        sampler.stop.set()
        sampler.join()
    row: dict[str, Any] = {
        "variant": variant.key,
        "returncode": proc.returncode,
        "tree_peak_rss_kb": sampler.peak_kb,
    }
    if proc.returncode != 0 or not result_file.exists():
        row["error"] = (err or out).strip()[-1500:]
        print(
            f"  {variant.key}: driver failed (exit {proc.returncode}): {row['error'][-400:]}",
            flush=True,
        )
        return row
    result = json.loads(result_file.read_text())
    with stub.lock:
        seen = {i: vars(s) for i, s in run.tasks.items()}
        first = run.first_request
    for task in result["tasks"]:
        task.update({f"stub_{k}": v for k, v in seen.get(task["index"], {}).items() if k != "n"})
    row.update(
        cold_start_s=None if first is None else first - spawned,
        imports_s=result["imported"] - result["import_started"],
        driver_peak_rss_kb=result["peak_rss_kb"],
        version=result["version"],
        tasks=result["tasks"],
        **({"statuses": result["statuses"]} if "statuses" in result else {}),
    )
    shutil.rmtree(home, ignore_errors=True)
    del stub.runs[rid]
    return row
