"""Output text for a model: head + rolling tail capture, ANSI stripping, HTML reduced to text.

Both ends of an output matter to a model (the start says what ran, the end how it finished: the
exception line of a traceback, the last rows of a table), and the agent's memory must stay
bounded however much a cell prints, so output is kept as a head and a rolling tail as it
arrives, with the characters dropped between them counted.
"""

from __future__ import annotations

import html
import re
from collections import deque
from html.parser import HTMLParser

__all__ = [
    "OutputCapture",
    "collapse_carriage_returns",
    "cut_marker",
    "head_tail",
    "html_to_text",
    "strip_ansi",
]

_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences (colours, cursor moves): noise for a model."""
    return _ANSI_RE.sub("", text)


def cut_marker(count: int) -> str:
    """The text left where `count` characters were dropped."""
    return f"[... {count} characters cut ...]"


def head_tail(text: str, limit: int) -> tuple[str, int]:
    """Keep the start and end of `text` in at most `limit` characters, marker included.

    Returns (text, characters cut). Both ends matter to a model: the start says what ran, the end
    says how it finished (the exception line of a traceback, the last rows of a table).
    """
    if len(text) <= limit:
        return text, 0
    keep = max(limit - len(cut_marker(len(text))) - 2, 0)
    head = keep // 2
    tail = keep - head
    cut = len(text) - keep
    kept_tail = text[len(text) - tail :] if tail else ""
    return f"{text[:head]}\n{cut_marker(cut)}\n{kept_tail}", cut


def collapse_carriage_returns(text: str) -> str:
    """Render ``\\r`` the way a terminal does (progress bars would otherwise repeat 100 times)."""
    if "\r" not in text:
        return text
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        segments = [segment for segment in line.split("\r") if segment]
        lines.append(segments[-1] if segments else "")
    return "\n".join(lines)


class _HTMLText(HTMLParser):
    """Just the text of an HTML fragment, with rows and cells kept apart (pandas tables, etc.)."""

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table"})
    _HIDDEN = frozenset({"script", "style", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of HTML output: tags stripped, entities decoded, blank runs squeezed."""
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # malformed markup: fall back to a crude strip
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


class OutputCapture:
    """Ordered (kind, text) output that keeps only a head and a rolling tail of `limit` characters.

    Memory stays bounded however much a cell prints; `cut` counts what was dropped from the middle.
    """

    def __init__(self, limit: int) -> None:
        self.head_limit = max(limit, 0) // 2
        self.tail_limit = max(limit, 0) - self.head_limit
        self.head: list[tuple[str, str]] = []
        self.head_len = 0
        self.tail: deque[tuple[str, str]] = deque()
        self.tail_len = 0
        self.cut = 0

    def add(self, kind: str, text: str) -> None:
        if not text:
            return
        room = self.head_limit - self.head_len
        if room > 0 and not self.tail and not self.cut:
            part = text[:room]
            self.head.append((kind, part))
            self.head_len += len(part)
            text = text[room:]
            if not text:
                return
        if len(text) >= self.tail_limit:
            self.cut += self.tail_len + len(text) - self.tail_limit
            self.tail.clear()
            self.tail_len = self.tail_limit
            if self.tail_limit:
                self.tail.append((kind, text[len(text) - self.tail_limit :]))
            return
        self.tail.append((kind, text))
        self.tail_len += len(text)
        while self.tail_len > self.tail_limit:
            excess = self.tail_len - self.tail_limit
            first_kind, first_text = self.tail[0]
            if len(first_text) <= excess:
                self.tail.popleft()
                self.tail_len -= len(first_text)
                self.cut += len(first_text)
            else:
                self.tail[0] = (first_kind, first_text[excess:])
                self.tail_len -= excess
                self.cut += excess

    def skip(self, count: int) -> None:
        """Record `count` characters already cut upstream: the head is closed from here on."""
        self.head_limit = self.head_len
        self.cut += count

    def items(self) -> list[tuple[str, str]]:
        """Kept output in order, adjacent chunks of a kind merged, a 'truncated' marker at the cut."""
        chunks = list(self.head)
        if self.cut:
            chunks.append(("truncated", cut_marker(self.cut)))
        chunks.extend(self.tail)
        merged: list[tuple[str, str]] = []
        for kind, text in chunks:
            if merged and merged[-1][0] == kind and kind != "truncated":
                merged[-1] = (kind, merged[-1][1] + text)
            else:
                merged.append((kind, text))
        return merged
