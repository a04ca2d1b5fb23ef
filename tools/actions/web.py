"""fetch_url and download: the web as readable text, and files into the task's working directory.

fetch_url never returns raw HTML: scripts, styles and embedded frames are dropped, relative links are
made absolute (so the model can follow them), and the page is converted to Markdown by markitdown
(data: URIs are shortened by its converter, so no base64 reaches the prompt). Documents served over
HTTP (PDF, XLSX, ...) are converted like read_file converts them. Every network step has the
configured timeout; failures (HTTP errors, timeouts, refused connections) are one line.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import urllib.parse
from pathlib import Path
from typing import Any

from dynagraph.tools.actions._common import (
    MAX_PAGE_BYTES,
    SETTINGS,
    ActionError,
    HttpReply,
    http_get,
    markitdown_convert,
    one_line,
    open_url,
    remember,
    render_page,
)

__all__ = ["fetch_url", "download"]

HTML_TYPES = ("text/html", "application/xhtml+xml")
DROPPED_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "canvas", "object")

_FETCHED: dict[str, tuple[str, str | None, str, bool]] = {}


def fetch_url(url: str, page: int = 1) -> str:
    """Fetch a web page (or a document URL) as readable text with its final URL and title, by page."""
    try:
        return _fetch_url(str(url), int(page))
    except ActionError as exc:
        return f"fetch_url: {exc}"


def _fetch_url(url: str, page: int) -> str:
    # Page 1 always fetches afresh; later pages reuse it so paging does not re-download.
    cached = _FETCHED.get(url) if page > 1 else None
    if cached is None:
        reply = http_get(url, headers={"Accept": "text/html,text/plain;q=0.9,*/*;q=0.8"})
        text, title = _reply_text(reply)
        cached = remember(_FETCHED, url, (reply.url, title, text, reply.truncated))
    final_url, title, text, truncated = cached
    header = [f"URL: {final_url}"]
    if final_url != url:
        header.append(f"Requested: {url} (redirected)")
    if title:
        header.append(f"Title: {' '.join(title.split())}")
    if truncated:
        header.append(f"(only the first {MAX_PAGE_BYTES} bytes were read; use download() for all)")
    if not text.strip():
        text = "(the page has no readable text; it may need JavaScript)"
    call = "fetch_url(" + repr(url).replace("{", "{{").replace("}", "}}") + ", page={page})"
    return render_page(header, text, page, call)


def _reply_text(reply: HttpReply) -> tuple[str, str | None]:
    """Readable text and title of an HTTP reply, by its content type."""
    kind = reply.content_type
    if kind in HTML_TYPES or (not kind and reply.body.lstrip()[:1] == b"<"):
        return _html_text(reply)
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json.dumps(json.loads(reply.text()), indent=2, ensure_ascii=False), None
        except ValueError:
            return reply.text(), None
    if kind.startswith("text/") and kind != "text/csv":
        return reply.text(), None
    path = urllib.parse.urlparse(reply.url).path
    extension = os.path.splitext(path)[1] or mimetypes.guess_extension(kind) or None
    try:
        return markitdown_convert(
            io.BytesIO(reply.body), mimetype=kind or None, extension=extension, url=reply.url
        )
    except ActionError as exc:
        raise ActionError(
            f"cannot read {reply.url} ({kind or 'unknown type'}, {len(reply.body)} bytes) "
            f"as text: {exc}; save it with download(url) and inspect it in code"
        ) from None


def _html_text(reply: HttpReply) -> tuple[str, str | None]:
    """Clean an HTML page (drop scripts and frames, absolutize links), then convert to Markdown."""
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise ActionError("beautifulsoup4 is not installed in the kernel's Python") from None
    soup = BeautifulSoup(reply.body, "html.parser", from_encoding=reply.charset)
    for tag in soup(list(DROPPED_TAGS)):
        tag.decompose()
    for image in soup.find_all("img"):
        source = image.get("src")
        if isinstance(source, str) and source.startswith("data:"):  # inline bytes: keep the alt
            image.replace_with(image.get("alt") or "")
    for tag, attribute in (("a", "href"), ("img", "src")):
        for element in soup.find_all(tag):
            value = element.get(attribute)
            if isinstance(value, str) and not value.startswith(("data:", "javascript:", "#")):
                element[attribute] = urllib.parse.urljoin(reply.url, value)
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    if not title and soup.find("h1"):
        title = soup.find("h1").get_text(" ", strip=True)
    text, converted_title = markitdown_convert(
        io.BytesIO(str(soup).encode("utf-8")),
        mimetype="text/html",
        charset="utf-8",
        extension=".html",
        url=reply.url,
    )
    return text, title or converted_title


def download(url: str, dest: str | None = None) -> str:
    """Download a URL into the working directory and return the saved file's path."""
    # Unlike the other actions this one raises on failure: its result is used as a path
    # (read_file(download(url))), so an error text returned in its place would mislead.
    try:
        message, path = _download(str(url), dest)
    except ActionError as exc:
        raise RuntimeError(f"download: {exc}") from None
    print(message)
    return path


def _download(url: str, dest: str | None) -> tuple[str, str]:
    response = open_url(url)
    with response:
        final_url = response.geturl()
        kind = (response.headers.get_content_type() or "").lower()
        target = _target_path(dest, _suggested_name(response, final_url, kind))
        limit = int(SETTINGS["max_download_bytes"])
        partial = target.with_name(target.name + ".part")
        size = 0
        try:
            with partial.open("wb") as sink:
                while chunk := response.read(256 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise ActionError(f"{url} is larger than {limit} bytes; not saved")
                    sink.write(chunk)
            partial.replace(target)
        except ActionError:
            partial.unlink(missing_ok=True)
            raise
        except (TimeoutError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise ActionError(f"saving {url} failed: {one_line(exc)}") from None
    shown = _shown_path(target)
    message = (
        f"Saved {size} bytes to {shown!r} ({kind or 'unknown type'}) from {final_url}. "
        f"Read it with read_file({shown!r})."
    )
    return message, shown


def _suggested_name(response: Any, final_url: str, kind: str) -> str:
    """A file name from Content-Disposition, else the URL's last path part, else the type."""
    name = response.headers.get_filename() or ""
    if not name:
        name = urllib.parse.unquote(urllib.parse.urlparse(final_url).path.rsplit("/", 1)[-1])
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".") or "download"
    if not os.path.splitext(name)[1]:
        name += mimetypes.guess_extension(kind or "") or ""
    return name


def _target_path(dest: str | None, suggested: str) -> Path:
    """Where to save: ``dest`` as given (a folder gets the suggested name); else a new file in cwd."""
    if dest is not None:
        target = Path(dest).expanduser()
        target = target if target.is_absolute() else Path.cwd() / target
        if target.is_dir():
            return _unused(target / suggested)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
    return _unused(Path.cwd() / suggested)


def _unused(path: Path) -> Path:
    """``path``, or ``name-1.ext``, ``name-2.ext``... if it exists: a download never overwrites."""
    candidate, number = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
    return candidate


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
