"""The loopback model of bench/peers.py: one OpenAI-compatible server for every framework.

Why a module of its own: bench/peers.py runs it in its own process for the peer table, and
bench/step_breakdown.py serves it from a child process for its in-process timings; both need
the same scripted replies (each framework's own format), the same token count and the same
clock for the steps a task runs (``TaskStats.step_starts``).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from dynagraph.graphs.demo_model import send_event_stream, stream_chunk  # noqa: E402

from tests.support.openai_stub import DEFAULT_ROLES, keyword_classifier  # noqa: E402

CODE = "x = sum(range(1000))\nprint(x)"  # same as peer_drivers/common.py
ANSWER = "499500"
CHARS_PER_TOKEN = 4


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
                return stream_chunk(cid, model, delta, finish)

            events = [
                chunk({"role": "assistant", "content": ""}),
                chunk({"content": text}),
                chunk({}, "stop"),
            ]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**chunk({}), "choices": [], "usage": usage})
            send_event_stream(self, events)

    return Handler
