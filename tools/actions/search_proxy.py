"""SearchProxy: keyed web search for a kernel that must never see the key.

The kernel's environment is scrubbed and the model's code can print anything it can read, so an API
key must not enter the kernel. The agent process runs this loopback HTTP server instead: it holds
the key (read from the agent's environment at each request, so a rotated key is picked up), calls
the provider, and answers the kernel's ``web_search`` with provider-neutral JSON,
``{"results": [{"title", "url", "snippet"}]}`` or ``{"error": "<one line>"}``. Its URL carries a
random path token, so other local processes cannot spend the key by guessing the port; the token
is in the kernel, the key is not.

Usage (the agent, once per process)::

    proxy = start_search_proxy(config)          # None for key-less providers
    source = kernel_bootstrap(config, search_proxy_url=proxy.url if proxy else None)
    ...
    proxy.stop()
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dynagraph.tools.actions._common import ActionError, one_line
from dynagraph.tools.actions.config import ActionsConfig
from dynagraph.tools.actions.search import MAX_RESULTS, search_with_provider


class SearchProxy:
    """A loopback server in the agent process that calls a keyed search provider for kernels."""

    def __init__(self, config: ActionsConfig, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._environ = os.environ if environ is None else environ
        self._token = secrets.token_urlsafe(16)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL the kernel's web_search calls (``<url>/search?q=...&k=...``)."""
        if self._server is None:
            raise RuntimeError("SearchProxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self._token}"

    def start(self) -> SearchProxy:
        if self._server is not None:
            return self
        handler = type("SearchProxyHandler", (_ProxyHandler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dynagraph-search-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SearchProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, query: str, k: int) -> dict[str, Any]:
        """The JSON reply for one search: results, or a one-line error that never holds the key."""
        provider = self.config.search_provider
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


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: SearchProxy  # set on the subclass made by SearchProxy.start

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parsed = urllib.parse.urlparse(self.path)
        if not secrets.compare_digest(parsed.path, f"/{self.proxy._token}/search"):
            self._reply(404, {"error": "unknown path"})
            return
        params = urllib.parse.parse_qs(parsed.query)
        query = (params.get("q") or [""])[0]
        try:
            k = int((params.get("k") or ["5"])[0])
        except ValueError:
            k = 5
        try:
            payload = self.proxy.answer(query, k)
        except Exception as exc:  # a bug must reach the kernel as one line, not a dropped socket
            payload = {"error": f"the search proxy failed: {type(exc).__name__}"}
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


def start_search_proxy(
    config: ActionsConfig, *, environ: Mapping[str, str] | None = None
) -> SearchProxy | None:
    """A started proxy when the provider needs a key, else None (key-less providers need none)."""
    if not config.needs_search_proxy:
        return None
    return SearchProxy(config, environ=environ).start()
