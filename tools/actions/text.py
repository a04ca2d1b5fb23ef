"""Paging and searching long text the cell already holds (a page, a file, an API reply).

Printing a 200 kB string would flood the prompt and be cut anyway; these helpers let the model look
at one page at a time, or only at the places that match what it is looking for.
"""

from __future__ import annotations

import re

from dynagraph.tools.actions._common import SETTINGS, ActionError, clip_text, render_page

__all__ = ["page_text", "find_in_text"]


def page_text(text: str, page: int = 1) -> str:
    """Show one page of a long text, with "page i of n"."""
    text = "" if text is None else str(text)
    header = [f"Text of {len(text)} characters"]
    try:
        return render_page(header, text, int(page), "page_text(text, page={page})")
    except ActionError as exc:
        return f"page_text: {exc}"


def find_in_text(text: str, pattern: str, context: int = 200, max_matches: int = 20) -> str:
    """Find a regex (case-insensitive; plain text if not a valid regex) and show each match in context."""
    text = "" if text is None else str(text)
    try:
        regex = re.compile(pattern, re.IGNORECASE)
        kind = "regex"
    except re.error:
        regex = re.compile(re.escape(pattern), re.IGNORECASE)
        kind = "text"
    matches = [m for m in regex.finditer(text) if m.end() > m.start()]
    if not matches:
        return f"find_in_text: no match for {pattern!r} ({kind}) in {len(text)} characters"
    context = max(0, int(context))
    shown = matches[: max(1, int(max_matches))]
    lines = [
        f"{len(matches)} match(es) for {pattern!r} ({kind}) in {len(text)} characters"
        + (f", showing the first {len(shown)}" if len(shown) < len(matches) else "")
        + ":"
    ]
    for number, match in enumerate(shown, 1):
        start, end = max(0, match.start() - context), min(len(text), match.end() + context)
        snippet = " ".join(text[start:end].split())
        lines.append(f"[{number}] at character {match.start()}: ...{snippet}...")
    return clip_text("\n".join(lines), int(SETTINGS["page_chars"]))
