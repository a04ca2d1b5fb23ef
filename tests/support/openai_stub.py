"""A loopback OpenAI-compatible server that serves scripted replies: the test stand-in for an LLM.

There is no LLM on the machines this project is tested on, and no network. So that everything but
the model's brain stays real (the ``langchain_openai.ChatOpenAI`` client, its HTTP, retries,
streaming and token accounting), tests point the real client at this server. It listens on
127.0.0.1 in a thread of the test process, so a client in another process (a CLI subprocess, a
``langgraph dev`` server) reaches it too.

Replies are queued per *role* (planner, coder, librarian, ...). The role of a request is found by a
classifier that reads the request; by default it looks for the words "planner", "coder" and
"librarian" in the first system message, so prompts need no special markers.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE streaming, tool calls), ``GET /v1/models``,
``POST /v1/embeddings`` (deterministic hash vectors: a stand-in, they carry no meaning).

When no reply is available the server answers HTTP 500 with a JSON error naming the role and the
header ``x-should-retry: false``, so a test with a missing script fails at once, never hangs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dynagraph.graphs.demo_model import send_event_stream, stream_chunk

__all__ = [
    "DEFAULT_ROLES",
    "EMBEDDING_DIM",
    "Reply",
    "StubError",
    "StubFault",
    "StubLLM",
    "keyword_classifier",
    "stub_embedding",
]

DEFAULT_ROLES: tuple[str, ...] = ("planner", "coder", "librarian")
EMBEDDING_DIM = 8
STREAM_CHUNKS = 3


class StubError(Exception):
    """A scripted HTTP error (e.g. 429 or 500) to exercise the client's retry and error paths.

    Queue it like a reply, return it from a reply callable, or raise it inside one.
    ``retry_after_ms`` is sent as the ``retry-after-ms`` header so the client retries at once
    instead of backing off for half a second; ``None`` sends no header.
    """

    def __init__(
        self, status: int = 500, message: str = "stub error", *, retry_after_ms: int | None = 1
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after_ms = retry_after_ms


class StubFault:
    """A broken answer, to exercise the client's failure paths: ``kind`` is ``"garbage"`` (HTTP
    200 whose body is not JSON), ``"truncated"`` (HTTP 200 whose body stops half way: the
    connection closes before Content-Length bytes) or ``"hang"`` (no answer at all for
    ``seconds``, or until the stub stops). Queue it like a reply."""

    KINDS = ("garbage", "truncated", "hang")

    def __init__(self, kind: str, *, seconds: float = 120.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"StubFault kind must be one of {self.KINDS}, not {kind!r}")
        self.kind = kind
        self.seconds = seconds


# A reply: text content, a tool-call dict ({"tool_call": {"name", "arguments"}} or
# {"tool_calls": [...]}), a StubError, or a callable taking the request JSON and returning one.
Reply = str | dict[str, Any] | StubError | Callable[[dict[str, Any]], Any]
Classifier = Callable[[dict[str, Any]], str]
Rule = Callable[[dict[str, Any]], Any]


def _text_of(content: Any) -> str:
    """Plain text of a message's content, which may be a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return ""


def _first_system_text(request: dict[str, Any]) -> str:
    for message in request.get("messages") or []:
        if message.get("role") in ("system", "developer"):
            return _text_of(message.get("content"))
    return ""


def keyword_classifier(*roles: str, fallback: str = "default") -> Classifier:
    """A classifier naming the role whose word comes first in the first system message.

    First by position, so a planner prompt that opens "You are the planner" and later mentions
    "the coder" is still the planner's. Whole words, case-insensitive.
    """
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, roles)) + r")\b", re.IGNORECASE)

    def role_of(request: dict[str, Any]) -> str:
        match = pattern.search(_first_system_text(request))
        return match.group(1).lower() if match else fallback

    return role_of


def _word_count(text: str) -> int:
    return len(text.split())


def _prompt_words(request: dict[str, Any]) -> int:
    """Rough prompt size: words in every message's text and in the tool calls it carries."""
    total = 0
    for message in request.get("messages") or []:
        total += _word_count(_text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            total += _word_count(str(call.get("function", {}).get("arguments", "")))
    return total


def stub_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic unit vector from a hash of ``text``: same text, same vector; no meaning."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    raw = [(byte - 127.5) / 127.5 for byte in digest[:dim]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _tool_calls_of(reply: dict[str, Any]) -> list[dict[str, Any]]:
    calls = reply.get("tool_calls") or [reply["tool_call"]]
    out = []
    for call in calls:
        arguments = call.get("arguments", {})
        out.append(
            {
                "id": call.get("id") or f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return out


def _split_text(text: str, pieces: int) -> list[str]:
    """Split text into up to ``pieces`` consecutive parts that concatenate back to it exactly."""
    if not text:
        return [""]
    step = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + step] for i in range(0, len(text), step)]


class _NoReply(Exception):
    """Internal: nothing scripted for the request; becomes an HTTP 500 the client cannot miss."""


class StubLLM:
    """Loopback OpenAI-compatible server with scripted replies.

    This is a mock of the model's brain only: it stands in for an LLM, which cannot run here.
    Everything around it (the real ``ChatOpenAI`` client, HTTP, retries, streaming, usage
    accounting) is exercised for real.

    Use: ``with StubLLM() as stub: stub.script("coder", ["```python\\nprint(1)\\n```"])`` and
    build ``ChatOpenAI(base_url=stub.base_url, api_key="sk-stub", ...)``.

    A request's replies come from, in order: the queue of its role (``script``), then that role's
    rules, then the rules for ``"*"`` (``add_rule``); failing all, HTTP 500.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        role_of: Classifier | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.role_of: Classifier = role_of or keyword_classifier(*DEFAULT_ROLES)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._rules: dict[str, list[Rule]] = defaultdict(list)
        self._requests: list[dict[str, Any]] = []
        self._log: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # ends the hangs of StubFault("hang")

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``; valid once started."""
        if self._server is None:
            raise RuntimeError("StubLLM is not started")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> StubLLM:
        """Bind (port 0 picks a free port) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name=f"StubLLM:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Every response closes its connection, so no
        client connection outlives this."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> StubLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------------------

    def script(self, role: str, replies: Iterable[Reply]) -> None:
        """Queue replies, served in order to requests whose role is ``role``."""
        with self._lock:
            self._queues[role].extend(replies)

    def clear(self) -> None:
        """Drop every queued reply (a run killed before it asked for them leaves them)."""
        with self._lock:
            self._queues.clear()

    def add_rule(self, role: str, fn: Rule) -> None:
        """Add a fallback responder for ``role`` (``"*"``: any role), used when its queue is
        empty. ``fn(request)`` returns a reply, or ``None`` when it does not handle the request."""
        with self._lock:
            self._rules[role].append(fn)

    def remaining(self, role: str | None = None) -> int:
        """How many scripted replies are still queued (for one role, or for all)."""
        with self._lock:
            if role is not None:
                return len(self._queues.get(role, ()))
            return sum(len(q) for q in self._queues.values())

    # -- inspection ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of every chat request body received, in order, each with ``"_role"``."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, role: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["_role"] == role]

    def models_seen(self, role: str | None = None) -> list[str]:
        """The ``model`` of each chat request (of one role, or all), in arrival order."""
        return [r.get("model", "") for r in self.requests if role is None or r["_role"] == role]

    @property
    def log(self) -> list[str]:
        """The server's access log lines, kept in memory only."""
        with self._lock:
            return list(self._log)

    # -- serving (called from handler threads) ---------------------------------------------------

    def _record(self, body: dict[str, Any]) -> dict[str, Any]:
        request = dict(body)
        try:
            request["_role"] = self.role_of(body)
        except Exception as exc:  # a broken classifier must fail the test loudly, not hang it
            raise _NoReply(f"stub: role classifier raised {exc!r}") from exc
        with self._lock:
            self._requests.append(request)
        return request

    def _next_reply(self, request: dict[str, Any]) -> Any:
        """The reply for a request, resolved: str, tool-call dict or StubError."""
        role = request["_role"]
        with self._lock:
            queue = self._queues.get(role)
            reply: Any = queue.popleft() if queue else None
            rules = list(self._rules.get(role, ())) + list(self._rules.get("*", ()))
        if reply is not None:
            resolved = self._resolve(reply, request)
            if resolved is None:
                raise _NoReply(f"stub: scripted reply callable for role {role!r} returned None")
            return resolved
        for rule in rules:
            reply = self._resolve(rule, request)
            if reply is not None:
                return reply
        raise _NoReply(f"stub: no scripted reply for role {role!r}")

    def _resolve(self, reply: Any, request: dict[str, Any]) -> Any:
        if callable(reply) and not isinstance(reply, StubError | StubFault):
            try:
                reply = reply(request)
            except StubError as err:
                return err
            except Exception as exc:
                raise _NoReply(
                    f"stub: reply callable for role {request['_role']!r} raised {exc!r}"
                ) from exc
        if reply is None or isinstance(reply, str | StubError | StubFault):
            return reply
        if isinstance(reply, dict) and ("tool_call" in reply or "tool_calls" in reply):
            if not request.get("tools"):
                raise _NoReply(
                    f"stub: scripted tool call for role {request['_role']!r} "
                    "but the request offers no tools"
                )
            return reply
        raise _NoReply(f"stub: unusable scripted reply for role {request['_role']!r}: {reply!r}")

    def _append_log(self, line: str) -> None:
        with self._lock:
            self._log.append(line)


def _make_handler(stub: StubLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(_StubHandler):
        pass

    Handler.stub = stub
    return Handler


class _StubHandler(BaseHTTPRequestHandler):
    """Speaks just enough of the OpenAI HTTP API. Every response closes its connection so that
    stopping the server leaves no live keep-alive connection behind."""

    protocol_version = "HTTP/1.1"
    stub: StubLLM

    def log_message(self, format: str, *args: Any) -> None:
        self.stub._append_log(format % args)

    # -- plumbing --------------------------------------------------------------------------------

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "rate_limit_error" if status == 429 else "stub_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
        self._send_json(status, body, headers)

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("request body is not a JSON object")
        return body

    # -- routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            names = dict.fromkeys(self.stub.models_seen() + ["stub-model"])
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "stub"} for n in names]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error(404, f"stub: no route GET {self.path}")

    def do_POST(self) -> None:
        try:
            body = self._read_json()
        except ValueError as exc:
            self._send_error(400, f"stub: bad JSON body: {exc}")
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/v1/chat/completions":
                self._chat(body)
            elif path == "/v1/embeddings":
                self._embeddings(body)
            else:
                self._send_error(404, f"stub: no route POST {self.path}")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer
        except Exception as exc:  # a bug in the stub must surface in the test, not as a hang
            self._send_error(500, f"stub: internal error {exc!r}", {"x-should-retry": "false"})

    def _chat(self, body: dict[str, Any]) -> None:
        try:
            request = self.stub._record(body)
            reply = self.stub._next_reply(request)
        except _NoReply as exc:
            self._send_error(500, str(exc), {"x-should-retry": "false"})
            return
        if isinstance(reply, StubFault):
            self._fault(reply)
            return
        if isinstance(reply, StubError):
            headers = {}
            if reply.retry_after_ms is not None:
                headers["retry-after-ms"] = str(reply.retry_after_ms)
            self._send_error(reply.status, reply.message, headers)
            return
        if isinstance(reply, str):
            message: dict[str, Any] = {"role": "assistant", "content": reply}
            finish, completion_words = "stop", _word_count(reply)
        else:
            calls = _tool_calls_of(reply)
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            finish = "tool_calls"
            completion_words = sum(_word_count(c["function"]["arguments"]) for c in calls)
        prompt_words = _prompt_words(body)
        usage = {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }
        model = body.get("model") or "stub-model"
        completion_id = f"chatcmpl-stub-{uuid.uuid4().hex[:12]}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(completion_id, model, message, finish, usage if include_usage else None)
            return
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
                "usage": usage,
            },
        )

    def _fault(self, fault: StubFault) -> None:
        self.close_connection = True
        if fault.kind == "hang":
            self.stub._stopping.wait(fault.seconds)
            return
        body = b"<html><body>502 Bad Gateway</body></html>"
        if fault.kind == "truncated":
            body = b'{"id": "chatcmpl-stub", "object": "chat.completion", "choices": [{"ind'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        length = len(body) * (3 if fault.kind == "truncated" else 1)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _stream(
        self,
        completion_id: str,
        model: str,
        message: dict[str, Any],
        finish: str,
        usage: dict[str, int] | None,
    ) -> None:
        """Server-sent events: a role chunk, the content in a few pieces (or the tool calls),
        a chunk with finish_reason, the usage chunk when asked for, then ``[DONE]``."""

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return stream_chunk(completion_id, model, delta, finish_reason)

        events = [chunk({"role": "assistant", "content": ""})]
        if message.get("tool_calls"):
            for index, call in enumerate(message["tool_calls"]):
                events.append(chunk({"tool_calls": [{"index": index, **call}]}))
        else:
            events += [
                chunk({"content": part}) for part in _split_text(message["content"], STREAM_CHUNKS)
            ]
        events.append(chunk({}, finish))
        if usage is not None:
            events.append({**chunk({}), "choices": [], "usage": usage})

        send_event_stream(self, events)

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list):
            self._send_error(400, "stub: embeddings need an 'input' string or list")
            return
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = stub_embedding(item if isinstance(item, str) else json.dumps(item))
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        words = sum(_word_count(i) if isinstance(i, str) else len(i) for i in inputs)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or "stub-embedding",
                "usage": {"prompt_tokens": words, "total_tokens": words},
            },
        )
