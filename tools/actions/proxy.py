"""AgentProxy: keyed services (search, vision, transcription) for a kernel that never sees a key.

The kernel's environment is scrubbed and the model's code can print anything it can read, so an API
key must not enter the kernel. The agent process runs this small HTTP server instead: it holds the
keys (read from the agent's environment at each request, so a rotated key is picked up), calls the
provider or model, and answers the kernel's actions with JSON, ``{"error": "<one line>"}`` on
failure (never holding a key). Routes, under a random path token so that other local processes
cannot spend the keys by guessing the port (the token is in the kernel, the keys are not):

- ``GET  /<token>/search?q=...&k=...`` -> ``{"results": [{"title", "url", "snippet"}]}``
  (web_search with a keyed provider: brave, tavily);
- ``POST /<token>/vision`` ``{"question", "image": "data:image/...;base64,..."}`` ->
  ``{"answer"}`` (ask_image: an OpenAI-compatible chat call with an image content part);
- ``POST /<token>/transcribe?filename=...`` with the audio bytes -> ``{"text"}`` (read_file on
  audio: ``POST <base_url>/audio/transcriptions``, multipart).

It listens on 127.0.0.1 (TCP) and on a Unix socket in a private folder (mode 0700). The kernel uses
the socket when it can see it: :meth:`kernel_shares` names the folder to bind into the bubblewrap
sandbox, so the proxy stays reachable when ``executor.network: false`` gives the kernel its own,
empty network namespace (where 127.0.0.1 is not the agent's).

Usage (the agent, once per process)::

    proxy = start_agent_proxy(config, models=settings.models)
    source = kernel_bootstrap(config, proxy=proxy)
    KernelSession(..., share=proxy.kernel_shares(), bootstrap=source)
    ...
    proxy.stop()
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socketserver
import threading
import urllib.parse
import uuid
import weakref
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dynagraph.tools.actions._common import ActionError, one_line
from dynagraph.tools.actions.config import ActionsConfig
from dynagraph.tools.actions.endpoints import Endpoint, call_endpoint, endpoints_from_models
from dynagraph.tools.actions.search import KEYED_PROVIDERS, MAX_RESULTS, search_with_provider
from dynagraph.tools.tempfolders import PROXY_PREFIX, private_folder

_SOCKET_NAME = "proxy.sock"
MAX_REQUEST_BYTES = 60_000_000  # an image data URL or an audio file, with room to spare
VISION_SYSTEM = "Answer the question about the image precisely and briefly, from what it shows."


class AgentProxy:
    """Loopback (TCP and Unix socket) server in the agent process that holds the API keys."""

    def __init__(
        self,
        config: ActionsConfig,
        *,
        vision: Endpoint | None = None,
        transcribe: Endpoint | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.vision = vision
        self.transcribe = transcribe
        self._environ = os.environ if environ is None else environ
        self._token = secrets.token_urlsafe(16)
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._folder: Path | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the routes (``<url>/search``, ``<url>/vision``, ``<url>/transcribe``)."""
        if not self._servers:
            raise RuntimeError("AgentProxy is not started")
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}/{self._token}"

    @property
    def socket_path(self) -> str | None:
        return str(self._folder / _SOCKET_NAME) if self._folder is not None else None

    def kernel_shares(self) -> list[tuple[Path, bool]]:
        """Folders to bind (read-only) into a sandboxed kernel: the socket's."""
        return [(self._folder, False)] if self._folder is not None else []

    def kernel_settings(self) -> dict[str, Any]:
        """What the kernel's actions read to reach the proxy (URL, socket, models; never a key)."""
        timeouts = [e.timeout for e in (self.vision, self.transcribe) if e is not None]
        return {
            "proxy_url": self.url,
            "proxy_socket": self.socket_path,
            "proxy_timeout": max([self.config.fetch_timeout, *timeouts]) + 10.0,
            "vision_model": self.vision.model if self.vision else None,
            "transcribe_model": self.transcribe.model if self.transcribe else None,
        }

    def start(self, *, unix_socket: bool = True) -> AgentProxy:
        if self._servers:
            return self
        handler = type("AgentProxyHandler", (_ProxyHandler,), {"proxy": self})
        tcp = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._servers.append(tcp)
        if unix_socket and hasattr(socketserver, "ThreadingUnixStreamServer"):
            # in /tmp when TMPDIR is too long for a socket path (AF_UNIX path too long); named
            # after this process, so a later one removes it if this one is killed
            folder = private_folder(PROXY_PREFIX, socket_name=f"/{_SOCKET_NAME}")
            self._folder = folder
            # removed at exit too when stop() is never called (a graph built and not closed)
            self._remove_folder = weakref.finalize(self, shutil.rmtree, folder, True)
            try:
                self._servers.append(_UnixHTTPServer(str(folder / _SOCKET_NAME), handler))
            except OSError:
                self.stop()
                raise
        for server in self._servers:
            server.daemon_threads = True  # type: ignore[attr-defined]
            thread = threading.Thread(  # polled every 50 ms: stop() waited 0.5 s per server
                target=server.serve_forever,
                args=(0.05,),
                name="dynagraph-agent-proxy",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []
        if self._folder is not None:
            self._remove_folder()
            self._folder = None

    def __enter__(self) -> AgentProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the services ---------------------------------------------------------------------------
    def answer_search(self, query: str, k: int) -> dict[str, Any]:
        """One search with a keyed provider: results, or a one-line error."""
        provider = self.config.search_provider
        if provider not in KEYED_PROVIDERS:
            return {"error": f"the search provider {provider!r} is not called through the proxy"}
        env_name = self.config.api_key_env
        key = self._environ.get(env_name or "", "") if env_name else ""
        if not key:
            return {
                "error": f"provider {provider!r} needs an API key: set the environment variable "
                f"{env_name or '(actions.search_api_key_env)'} for the agent process"
            }
        try:
            results = search_with_provider(
                provider,
                query,
                max(1, min(MAX_RESULTS, k)),
                base_url=self.config.search_base_url,
                api_key=key,
                timeout=self.config.fetch_timeout,
            )
        except ActionError as exc:
            return {"error": one_line(str(exc).replace(key, "***"))}
        return {"results": results}

    def answer_vision(self, question: str, image: str) -> dict[str, Any]:
        """The vision model's answer to ``question`` about ``image`` (a base64 data URL)."""
        endpoint = self.vision
        if endpoint is None:
            return {"error": "no vision model is configured (models.vision in the config)"}
        if not image.startswith("data:image/"):
            return {"error": "the image must be a data:image/...;base64 URL"}
        content = [
            {"type": "text", "text": question or "Describe this image."},
            {"type": "image_url", "image_url": {"url": image}},
        ]
        payload: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [
                {"role": "system", "content": VISION_SYSTEM},
                {"role": "user", "content": content},
            ],
        }
        if endpoint.max_tokens:
            payload["max_tokens"] = endpoint.max_tokens
        if endpoint.temperature is not None:
            payload["temperature"] = endpoint.temperature
        body = json.dumps(payload).encode("utf-8")
        data = self._call(endpoint, "/chat/completions", body, "application/json")
        if "error" in data:
            return data
        try:
            message = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return {"error": f"{endpoint.who} gave a reply without a message"}
        if isinstance(message, list):  # content parts
            message = "".join(p.get("text", "") for p in message if isinstance(p, dict))
        return {"answer": str(message or "")}

    def answer_transcription(self, filename: str, audio: bytes, kind: str) -> dict[str, Any]:
        """The transcript of an audio file from ``POST <base_url>/audio/transcriptions``."""
        endpoint = self.transcribe
        if endpoint is None:
            return {"error": "no transcription model is configured (models.transcribe)"}
        boundary = f"dynagraph-{uuid.uuid4().hex}"
        name = (Path(filename).name or "audio").replace('"', "")
        parts = [
            _form_field(boundary, "model", endpoint.model),
            _form_field(boundary, "response_format", "json"),
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{name}"\r\nContent-Type: {kind or "application/octet-stream"}\r\n\r\n'
            ).encode()
            + audio
            + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        content_type = f"multipart/form-data; boundary={boundary}"
        data = self._call(endpoint, "/audio/transcriptions", b"".join(parts), content_type)
        if "error" in data:
            return data
        if not isinstance(data.get("text"), str):
            return {"error": f"{endpoint.who} gave a reply without a transcript"}
        return {"text": data["text"]}

    # -- calling an endpoint --------------------------------------------------------------------
    def _call(self, endpoint: Endpoint, path: str, body: bytes, kind: str) -> dict[str, Any]:
        return call_endpoint(
            endpoint, path, body, kind, environ=self._environ, user_agent=self.config.user_agent
        )


def _form_field(boundary: str, name: str, value: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    """http.server's handler over a Unix socket (client addresses are empty strings there)."""

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("unix", 0)


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: AgentProxy  # set on the subclass made by AgentProxy.start

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        route, params = self._route()
        if route != "search":
            self._reply(404, {"error": "unknown path"})
            return
        query = (params.get("q") or [""])[0]
        try:
            k = int((params.get("k") or ["5"])[0])
        except ValueError:
            k = 5
        self._answer(lambda: self.proxy.answer_search(query, k))

    def do_POST(self) -> None:  # noqa: N802
        route, params = self._route()
        if route not in ("vision", "transcribe"):
            self._reply(404, {"error": "unknown path"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._reply(200, {"error": f"the request is over {MAX_REQUEST_BYTES} bytes"})
            return
        body = self.rfile.read(length) if length else b""
        if route == "transcribe":
            name = (params.get("filename") or ["audio"])[0]
            kind = self.headers.get("Content-Type") or ""
            self._answer(lambda: self.proxy.answer_transcription(name, body, kind))
            return
        try:
            data = json.loads(body)
            question, image = str(data["question"]), str(data["image"])
        except (ValueError, KeyError, TypeError):
            self._reply(200, {"error": "the vision request needs JSON with question and image"})
            return
        self._answer(lambda: self.proxy.answer_vision(question, image))

    def _route(self) -> tuple[str | None, dict[str, list[str]]]:
        """The route under the token (None for any other path) and the query parameters."""
        parsed = urllib.parse.urlparse(self.path)
        prefix, _, route = parsed.path.rpartition("/")
        if not secrets.compare_digest(prefix, f"/{self.proxy._token}"):
            return None, {}
        return route, urllib.parse.parse_qs(parsed.query)

    def _answer(self, make: Any) -> None:
        try:
            payload = make()
        except Exception as exc:  # a bug must reach the kernel as one line, not a dropped socket
            payload = {"error": f"the agent proxy failed: {type(exc).__name__}"}
        self._reply(200, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: request lines would carry the user's queries into the agent's stderr."""


def start_agent_proxy(
    config: ActionsConfig, *, models: Any = None, environ: Mapping[str, str] | None = None
) -> AgentProxy:
    """A started proxy for the keyed search provider (if any) and the models in ``models``."""
    vision, transcribe = endpoints_from_models(models)
    return AgentProxy(config, vision=vision, transcribe=transcribe, environ=environ).start()
