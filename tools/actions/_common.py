"""Helpers shared by the initial actions, run inside the task's kernel.

Every builtin action module is inlined into the kernel by ``kernel_bootstrap`` (the kernel may be
sandboxed with nothing but the venv's Python, so it cannot import this package). There, all builtin
modules share one namespace and their ``from tools.actions._common import ...`` lines are blanked
out. So this module, like every action module, must use the standard library only at import time;
heavy converters (markitdown) are imported lazily on first use.

``SETTINGS`` holds the values of ``ActionsConfig`` the bootstrap writes into the kernel; on the host
it keeps these defaults so the pure helpers can be unit-tested by importing them.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

__all__: list[str] = []  # helpers only: this module defines no actions

SETTINGS: dict[str, Any] = {
    "page_chars": 4000,
    "user_agent": "dynagraph/0.1",
    "fetch_timeout": 20.0,
    "max_download_bytes": 200_000_000,
    "search_provider": "none",
    "search_base_url": None,
    "wayback_base_url": "https://archive.org",
    "image_max_side": 1568,
    # the agent proxy (tools.actions.proxy.AgentProxy): URL with its path token, Unix socket, how
    # long to wait for it, and the models behind it (None: not configured). Never a key.
    "proxy_url": None,
    "proxy_socket": None,
    "proxy_timeout": 150.0,
    "vision_model": None,
    "transcribe_model": None,
}

#: Largest body fetch_url reads into memory; larger pages are cut (download() streams to disk).
MAX_PAGE_BYTES = 20_000_000
#: How many converted documents are kept so that asking for page 2 does not convert again.
CACHE_ENTRIES = 8


class ActionError(Exception):
    """A failure the model can act on; its message is one line and becomes the action's answer."""


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace so an error message stays a single prompt line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def clip_text(text: str, limit: int) -> str:
    """Keep the head and the tail of ``text`` within about ``limit`` characters.

    The middle is replaced by a marker saying how much was cut, so the model knows the text is
    incomplete and can page or search instead of guessing.
    """
    if limit <= 0 or len(text) <= limit:
        return text
    head = max(1, limit * 2 // 3)
    tail = max(1, limit - head)
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}"


def split_pages(text: str, page_chars: int) -> list[str]:
    """Split ``text`` into pages of at most ``page_chars`` characters, at line ends where possible.

    Pages are deterministic, so "page 3" means the same text on every call.
    """
    page_chars = max(200, int(page_chars))
    pages: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        while len(line) > page_chars:  # a single huge line: hard cut it
            if current:
                pages.append("".join(current))
                current, size = [], 0
            pages.append(line[:page_chars])
            line = line[page_chars:]
        if size + len(line) > page_chars and current:
            pages.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current or not pages:
        pages.append("".join(current))
    return [page.rstrip("\n") for page in pages]


def render_page(header: list[str], text: str, page: int, next_call: str) -> str:
    """One page of ``text`` under ``header`` lines, with "page i of n" and the call for the next.

    ``next_call`` is a format string with ``{page}``, e.g. ``"read_file('a.pdf', page={page})"``.
    """
    pages = split_pages(text, int(SETTINGS["page_chars"]))
    total = len(pages)
    if page < 1 or page > total:
        raise ActionError(f"page {page} does not exist; there {_are(total)} (page=1..{total})")
    status = f"page {page} of {total}"
    if page < total:
        status += f" (next: {next_call.format(page=page + 1)})"
    return "\n".join([*header, status, "", pages[page - 1]])


def _are(total: int) -> str:
    return "is 1 page" if total == 1 else f"are {total} pages"


def remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    """Store ``value`` in a small insertion-ordered cache, dropping the oldest entries."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > CACHE_ENTRIES:
        cache.pop(next(iter(cache)))
    return value


@dataclass
class HttpReply:
    """What a finished HTTP exchange returned: the final URL after redirects, and the body."""

    url: str
    status: int
    headers: Message
    body: bytes
    truncated: bool = False
    content_type: str = field(init=False)
    charset: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.content_type = (self.headers.get_content_type() or "").lower()
        self.charset = self.headers.get_content_charset()

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")


def open_url(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Open ``url`` (following redirects); failures become one-line ``ActionError`` messages.

    ``timeout`` bounds each network step (connect, every read); it defaults to the configured
    ``fetch_timeout``. Returns the open response, which the caller must close.
    """
    timeout = float(SETTINGS["fetch_timeout"] if timeout is None else timeout)
    if "://" not in url:
        raise ActionError(f"not a URL: {url!r} (expected http:// or https://)")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ActionError(f"unsupported URL scheme {scheme!r} in {url} (use http or https)")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("User-Agent", str(SETTINGS["user_agent"]))
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        reason = exc.reason if isinstance(exc.reason, str) else ""
        raise ActionError(f"HTTP {exc.code} {reason} for {exc.geturl() or url}".strip()) from None
    except TimeoutError:
        raise ActionError(f"no answer from {url} within {timeout:g} s (timed out)") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise ActionError(f"no answer from {url} within {timeout:g} s (timed out)") from None
        raise ActionError(f"cannot reach {url}: {one_line(reason)}") from None
    except (OSError, ValueError) as exc:
        raise ActionError(f"cannot open {url}: {one_line(exc)}") from None


def read_body(response: Any, url: str, limit: int, timeout: float | None = None) -> HttpReply:
    """Read a response body up to ``limit`` bytes; a stalled read is a one-line timeout error."""
    timeout = float(SETTINGS["fetch_timeout"] if timeout is None else timeout)
    chunks: list[bytes] = []
    size = 0
    truncated = False
    try:
        with response:
            while True:
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size >= limit:
                    truncated = True
                    break
    except TimeoutError:
        raise ActionError(f"{url} stopped sending within {timeout:g} s (timed out)") from None
    except OSError as exc:
        raise ActionError(f"reading {url} failed: {one_line(exc)}") from None
    body = b"".join(chunks)[:limit]
    return HttpReply(response.geturl(), response.status, response.headers, body, truncated)


def http_get(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    limit: int = MAX_PAGE_BYTES,
    timeout: float | None = None,
) -> HttpReply:
    """GET (or POST when ``data`` is given) ``url`` and read the body; errors are one line."""
    response = open_url(url, data=data, headers=headers, timeout=timeout)
    return read_body(response, url, limit, timeout)


def listing_hint(folder: Any) -> str:
    """A short list of what *is* in ``folder``, so a wrong name can be corrected in one step."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return "its folder does not exist"
    if not names:
        return "the folder is empty"
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} entries)" if len(names) > 20 else "")
    return f"files there: {shown}"


def proxy_request(
    route: str,
    *,
    params: dict[str, Any] | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """Ask the agent proxy (which holds the API keys) and return its JSON object.

    Its Unix socket is used when the kernel can see it (it is bound into the sandbox, so this works
    without a network too), else its loopback URL. A reply ``{"error": ...}`` becomes ActionError.
    """
    base = SETTINGS.get("proxy_url")
    if not base:
        raise ActionError(
            "the agent proxy is not running (it holds the API keys, which never enter the "
            "kernel); run the task through dynagraph, or pass an AgentProxy to kernel_bootstrap"
        )
    parts = urllib.parse.urlsplit(str(base))
    path = parts.path.rstrip("/") + "/" + route
    if params:
        path += "?" + urllib.parse.urlencode(params)
    timeout = float(SETTINGS.get("proxy_timeout") or SETTINGS["fetch_timeout"])
    headers = {"Content-Type": content_type} if content_type else {}
    socket_path = SETTINGS.get("proxy_socket")
    try:
        if socket_path and os.path.exists(str(socket_path)):
            text = _unix_request(str(socket_path), path, body, headers, timeout)
        else:
            url = f"{parts.scheme}://{parts.netloc}{path}"
            text = http_get(url, data=body, headers=headers, timeout=timeout).text()
    except ActionError as exc:
        raise ActionError(f"the agent proxy did not answer: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ActionError("the agent proxy gave a reply that is not JSON") from None
    if not isinstance(data, dict):
        raise ActionError("the agent proxy gave a reply that is not a JSON object")
    if data.get("error"):
        raise ActionError(one_line(data["error"]))
    return data


def _unix_request(
    socket_path: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> str:
    """One HTTP request over a Unix socket (stdlib http.client with its socket swapped)."""
    import http.client
    import socket

    connection = http.client.HTTPConnection("localhost", timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
        connection.sock = sock
        connection.request("POST" if body is not None else "GET", path, body, headers)
        response = connection.getresponse()
        data = response.read()
    except TimeoutError:
        raise ActionError(f"no answer within {timeout:g} s (timed out)") from None
    except OSError as exc:
        raise ActionError(f"cannot reach its socket: {one_line(exc)}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise ActionError(f"HTTP {response.status} {response.reason}")
    return data.decode("utf-8", errors="replace")


def markitdown_convert(source: Any, **stream_info: Any) -> tuple[str, str | None]:
    """Convert a local path or a binary stream to Markdown with markitdown: (text, title).

    markitdown is imported here, not at module level: it costs ~0.7 s and most cells never need
    it. Its failures become one-line ``ActionError`` messages.
    """
    try:
        import markitdown
    except ImportError:
        raise ActionError(
            "markitdown is not installed in the kernel's Python "
            "(pip install 'markitdown[pdf,docx,xlsx,pptx]')"
        ) from None
    converter = _MARKITDOWN.get("instance")
    if converter is None:
        import logging

        for noisy in ("pdfminer", "pdfplumber", "magika"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        converter = _MARKITDOWN.setdefault("instance", markitdown.MarkItDown())
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(source, str):
                result = converter.convert_local(source)
            else:
                info = markitdown.StreamInfo(**stream_info)
                result = converter.convert_stream(source, stream_info=info)
    except markitdown.UnsupportedFormatException:
        raise ActionError("unsupported format: no converter for it") from None
    except markitdown.FileConversionException as exc:
        raise ActionError(f"conversion failed: {_conversion_cause(exc)}") from None
    except markitdown.MissingDependencyException as exc:
        raise ActionError(f"a converter dependency is missing: {one_line(exc, 200)}") from None
    return result.markdown or "", result.title


_MARKITDOWN: dict[str, Any] = {}


def _conversion_cause(exc: Exception) -> str:
    """The last line of the first failed converter's error (markitdown wraps them verbosely)."""
    for attempt in getattr(exc, "attempts", None) or []:
        info = getattr(attempt, "exc_info", None)
        if info and info[1] is not None:
            return one_line(f"{type(info[1]).__name__}: {info[1]}", 200)
    return one_line(exc, 200)
