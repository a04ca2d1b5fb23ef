"""find_archived_url: the Wayback Machine snapshot of a page closest to a date.

It asks the Internet Archive's public availability API (``<wayback_base_url>/wayback/available``,
no key) and returns the snapshot's URL, which ``fetch_url`` reads like any page. Like ``download``
it raises on failure (one line), because its result is used as a URL:
``fetch_url(find_archived_url(url, "2019-05-01"))``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import urllib.parse

from dynagraph.tools.actions._common import SETTINGS, ActionError, http_get

__all__ = ["find_archived_url"]

_DATE = re.compile(r"^\s*(\d{4})(?:[-/.]?(\d{1,2})(?:[-/.]?(\d{1,2}))?)?\s*$")


def find_archived_url(url: str, date: str) -> str:
    """Find the Wayback Machine snapshot of a URL closest to a date (YYYY-MM-DD); returns its URL."""
    try:
        snapshot, when = _closest(str(url), wayback_timestamp(date))
    except ActionError as exc:
        raise RuntimeError(f"find_archived_url: {exc}") from None
    print(f"Closest snapshot of {url} is from {when}: {snapshot}")
    return snapshot


def wayback_timestamp(date: object) -> str:
    """``YYYYMMDD`` from a date, a datetime, or text like 2019-05-01, 20190501, 2019-05 or 2019."""
    if isinstance(date, _dt.datetime | _dt.date):
        return date.strftime("%Y%m%d")
    text = str(date)
    match = _DATE.match(text)
    if match is None:
        raise ActionError(f"cannot read the date {text!r}; give it as YYYY-MM-DD")
    year, month, day = match.group(1), match.group(2) or "1", match.group(3) or "1"
    try:
        return _dt.date(int(year), int(month), int(day)).strftime("%Y%m%d")
    except ValueError as exc:
        raise ActionError(f"not a valid date {text!r}: {exc}") from None


def _closest(url: str, timestamp: str) -> tuple[str, str]:
    """(snapshot URL, its date and time) of the capture of ``url`` closest to ``timestamp``."""
    if not url.strip():
        raise ActionError("the URL is empty")
    base = str(SETTINGS.get("wayback_base_url") or "https://archive.org").rstrip("/")
    query = urllib.parse.urlencode({"url": url, "timestamp": timestamp})
    reply = http_get(f"{base}/wayback/available?{query}", headers={"Accept": "application/json"})
    try:
        data = json.loads(reply.text())
        closest = (data.get("archived_snapshots") or {}).get("closest") or {}
    except (ValueError, AttributeError):
        raise ActionError(
            "the availability API gave a reply that is not the expected JSON"
        ) from None
    snapshot = str(closest.get("url") or "")
    if not snapshot or closest.get("available") is False:
        raise ActionError(
            f"the Wayback Machine has no snapshot of {url} (try the site's root URL, or "
            "the URL with/without www. or a trailing slash)"
        )
    if snapshot.startswith("http://web.archive.org/"):
        snapshot = "https://" + snapshot[len("http://") :]
    stamp = str(closest.get("timestamp") or "")
    when = stamp
    if re.fullmatch(r"\d{14}", stamp):
        when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:]}"
    return snapshot, when or "an unknown date"
