"""The recorded model of ``dynagraph demo``: a loopback OpenAI-compatible server replaying replies.

The replies (graphs/demo_replies/tasks.yaml, shipped with the package) were written for the
demo's three tasks and follow docs/protocols.md. The server answers
``POST /v1/chat/completions`` on 127.0.0.1 only, so the demo goes through the same
``ChatOpenAI`` client, graph, kernel and library as a real run, with no key and no network.

A request's task is the recorded task whose text appears in its messages; its role is the first
of the words "planner", "coder", "librarian" in its system message (docs/protocols.md). Each
(task, role) pair has its replies in order. A request with no reply left gets HTTP 500 with
``x-should-retry: false``: the run fails at once with one line instead of hanging. (The
librarian's optional model stages then keep the function as it is.)
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import yaml

ROLES = ("planner", "coder", "librarian")
_ROLE_RE = re.compile(r"\b(" + "|".join(ROLES) + r")\b", re.IGNORECASE)


@dataclass
class RecordedTask:
    task: str
    replies: dict[str, list[str]]


def load_recording(name: str = "tasks.yaml") -> list[RecordedTask]:
    """The recorded tasks that ship with the package."""
    text = (resources.files("dynagraph.graphs") / "demo_replies" / name).read_text("utf-8")
    data = yaml.safe_load(text)
    return [
        RecordedTask(t["task"], {role: list(t.get(role) or []) for role in ROLES})
        for t in data["tasks"]
    ]


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


class ReplayServer:
    """Serves the recorded replies on ``base_url`` (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, tasks: list[RecordedTask]) -> None:
        self.tasks = tasks
        self._queues = {(t.task, r): deque(t.replies[r]) for t in tasks for r in ROLES}
        self._lock = threading.Lock()
        self.served = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reply_for(self, body: dict[str, Any]) -> str | None:
        """The next recorded reply for this request, or None."""
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        system = next((_text_of(m) for m in messages if m.get("role") == "system"), "")
        match = _ROLE_RE.search(system)
        if match is None:
            return None
        role = match.group(1).lower()
        everything = "\n".join(_text_of(m) for m in messages)
        for task in self.tasks:
            if task.task in everything:
                with self._lock:
                    queue = self._queues[(task.task, role)]
                    if queue:
                        self.served += 1
                        return queue.popleft()
                return None
        return None


def _handler_for(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.close_connection = True
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **extra}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/v1/embeddings":
                self._send(200, _embeddings(body), {})
                return
            reply = server.reply_for(body) if path == "/v1/chat/completions" else None
            if reply is None:
                error = {"message": "the demo's recording has no reply for this request",
                         "type": "demo_replay", "param": None, "code": "demo_replay"}  # fmt: skip
                self._send(500, {"error": error}, {"x-should-retry": "false"})
                return
            if body.get("stream"):
                self._stream(body, reply)
                return
            self._send(200, _completion(body, reply), {})

        def _stream(self, body: dict[str, Any], reply: str) -> None:
            whole = _completion(body, reply)
            cid, model = whole["id"], whole["model"]
            events = [
                stream_chunk(cid, model, {"role": "assistant", "content": reply}),
                stream_chunk(cid, model, {}, "stop"),
                {**stream_chunk(cid, model, {}), "choices": [], "usage": whole["usage"]},
            ]
            send_event_stream(self, events)

    return Handler


def stream_chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` event of a streamed reply (see send_event_stream)."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def send_event_stream(handler: BaseHTTPRequestHandler, events: list[dict[str, Any]]) -> None:
    """Answer ``handler``'s request with ``events`` as an OpenAI server-sent event stream:
    each one on its own ``data:`` line, flushed as it is written, then ``data: [DONE]``; the
    connection closes after it, which is how the client knows the body ended. Every loopback
    model of the project streams this way (this demo, the tests' stub, the benches' stub)."""
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")
    handler.end_headers()
    for event in events:
        handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        handler.wfile.flush()
    handler.wfile.write(b"data: [DONE]\n\n")
    handler.wfile.flush()


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """Word-hash vectors: only for machines without the bundled embedder (texts sharing words
    come out close, which is all the demo's retrieval needs)."""
    import hashlib
    import math

    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    data = []
    for index, text in enumerate(texts):
        vector = [0.0] * 64
        for word in re.findall(r"[a-z]+", str(text).lower()):
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        data.append({"object": "embedding", "index": index,
                     "embedding": [v / norm for v in vector]})  # fmt: skip
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    return {"object": "list", "data": data, "model": "demo-embedding", "usage": usage}


def _completion(body: dict[str, Any], reply: str) -> dict[str, Any]:
    prompt = sum(len(_text_of(m).split()) for m in body.get("messages") or [])
    completion = len(reply.split())
    return {
        "id": f"chatcmpl-demo-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model") or "demo-recording",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
