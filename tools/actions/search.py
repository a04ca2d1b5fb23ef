"""web_search: web search behind a provider setting, with API keys kept out of the kernel.

Providers: ``duckduckgo`` (key-less, its HTML endpoint) and ``searxng`` (key-less, your own
instance at ``search_base_url``) are called from the kernel directly. ``brave`` and ``tavily`` need
an API key, and **keys never enter the kernel** (its environment is scrubbed and the model's code
could print them): for these the agent process runs :class:`tools.actions.proxy.AgentProxy`,
a loopback HTTP server that holds the key, and the kernel's ``web_search`` asks the proxy, whose URL
(with a random path token, not the key) and Unix socket the bootstrap writes into the kernel. Without the proxy a
keyed provider answers one line saying so.

The provider clients below use the standard library only, because this module also runs inside the
kernel; the proxy imports them on the host. Every failure (no provider, a missing key or base URL,
an unreachable endpoint, an odd reply) is one line starting with ``web_search:``.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from html.parser import HTMLParser

from dynagraph.tools.actions._common import (
    SETTINGS,
    ActionError,
    clip_text,
    http_get,
    one_line,
    proxy_request,
)

__all__ = ["web_search"]

KEYLESS_PROVIDERS = ("duckduckgo", "searxng")
KEYED_PROVIDERS = {"brave": "BRAVE_API_KEY", "tavily": "TAVILY_API_KEY"}
PROVIDERS = ("none", *KEYLESS_PROVIDERS, *KEYED_PROVIDERS)
DEFAULT_BASE_URLS = {
    "duckduckgo": "https://html.duckduckgo.com",
    "brave": "https://api.search.brave.com",
    "tavily": "https://api.tavily.com",
}
MAX_RESULTS = 20


def web_search(query: str, k: int = 5) -> str:
    """Search the web; returns up to k results, each with title, URL and snippet."""
    provider = str(SETTINGS.get("search_provider") or "none").lower()
    k = max(1, min(MAX_RESULTS, int(k)))
    try:
        if provider in KEYED_PROVIDERS:
            results = _search_via_proxy(provider, str(query), k)
        else:
            results = search_with_provider(
                provider, str(query), k, base_url=SETTINGS.get("search_base_url")
            )
    except ActionError as exc:
        return f"web_search: {one_line(exc)}"
    return format_results(str(query), provider, results[:k])


def format_results(query: str, provider: str, results: list[dict[str, str]]) -> str:
    """Numbered title / URL / snippet blocks, clipped to a page."""
    if not results:
        return f"No results for {query!r} from {provider}."
    lines = [f"Search results for {query!r} ({provider}):"]
    for number, result in enumerate(results, 1):
        lines.append(f"{number}. {one_line(result.get('title') or '(no title)', 200)}")
        lines.append(f"   {result.get('url', '')}")
        snippet = one_line(result.get("snippet") or "", 400)
        if snippet:
            lines.append(f"   {snippet}")
    return clip_text("\n".join(lines), int(SETTINGS["page_chars"]))


def search_with_provider(
    provider: str,
    query: str,
    k: int,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
) -> list[dict[str, str]]:
    """Ask one provider; results are dicts with title, url, snippet. Errors are ``ActionError``."""
    if provider == "none":
        raise ActionError(
            "no search provider is configured; set actions.search_provider to one of "
            f"{', '.join(PROVIDERS[1:])} in the config (or fetch_url a page you know)"
        )
    if provider not in PROVIDERS:
        raise ActionError(
            f"unknown search provider {provider!r}; use one of {', '.join(PROVIDERS[1:])}"
        )
    if not query.strip():
        raise ActionError("the query is empty")
    base = (base_url or DEFAULT_BASE_URLS.get(provider) or "").rstrip("/")
    if not base:
        raise ActionError(
            f"provider {provider!r} needs actions.search_base_url (the URL of your instance)"
        )
    if provider in KEYED_PROVIDERS and not api_key:
        raise ActionError(f"provider {provider!r} needs an API key and none was given")
    try:
        if provider == "duckduckgo":
            return _duckduckgo(base, query, k, timeout)
        if provider == "searxng":
            return _searxng(base, query, k, timeout)
        if provider == "brave":
            return _brave(base, query, k, str(api_key), timeout)
        return _tavily(base, query, k, str(api_key), timeout)
    except ActionError as exc:
        raise ActionError(f"{provider} search failed: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ActionError(f"{provider} gave an unexpected reply ({type(exc).__name__})") from None


def _search_via_proxy(provider: str, query: str, k: int) -> list[dict[str, str]]:
    """Results from the agent proxy, which holds the provider's key (the kernel never does)."""
    if not SETTINGS.get("proxy_url"):
        raise ActionError(
            f"provider {provider!r} needs an API key, which is never given to the kernel, and "
            "the agent proxy that holds it is not running; the agent must start "
            "tools.actions.AgentProxy and pass it to kernel_bootstrap"
        )
    data = proxy_request("search", params={"q": query, "k": k})
    return list(data.get("results") or [])


def _json(reply_text: str) -> dict:
    data = json.loads(reply_text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _plain(fragment: str | None) -> str:
    """Text of an HTML fragment (snippets carry <strong> highlights and entities)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment or "")).strip()


def _results(items: list[dict], snippet_key: str) -> list[dict[str, str]]:
    """Provider result objects as title / url / snippet dicts."""
    return [
        {
            "title": _plain(item.get("title")),
            "url": str(item.get("url") or ""),
            "snippet": _plain(item.get(snippet_key)),
        }
        for item in items
    ]


def _searxng(base: str, query: str, k: int, timeout: float | None) -> list[dict[str, str]]:
    params = urllib.parse.urlencode({"q": query, "format": "json"})
    try:
        reply = http_get(f"{base}/search?{params}", timeout=timeout)
    except ActionError as exc:
        if "HTTP 403" in str(exc):
            raise ActionError(
                f"{exc} (enable the json format in search.formats of its settings.yml)"
            ) from None
        raise
    results = _json(reply.text()).get("results") or []
    return _results(results[:k], snippet_key="content")


def _brave(base: str, query: str, k: int, key: str, timeout: float | None) -> list[dict[str, str]]:
    params = urllib.parse.urlencode({"q": query, "count": k})
    headers = {"Accept": "application/json", "X-Subscription-Token": key}
    reply = http_get(f"{base}/res/v1/web/search?{params}", headers=headers, timeout=timeout)
    results = (_json(reply.text()).get("web") or {}).get("results") or []
    return _results(results[:k], snippet_key="description")


def _tavily(base: str, query: str, k: int, key: str, timeout: float | None) -> list[dict[str, str]]:
    body = json.dumps({"query": query, "max_results": k}).encode("utf-8")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    reply = http_get(f"{base}/search", data=body, headers=headers, timeout=timeout)
    results = _json(reply.text()).get("results") or []
    return _results(results[:k], snippet_key="content")


def _duckduckgo(base: str, query: str, k: int, timeout: float | None) -> list[dict[str, str]]:
    body = urllib.parse.urlencode({"q": query}).encode("utf-8")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = http_get(f"{base}/html/", data=body, headers=headers, timeout=timeout)
    parser = _DuckDuckGoResults()
    parser.feed(reply.text())
    if not parser.results and (reply.status == 202 or "anomaly" in reply.text().lower()):
        raise ActionError("duckduckgo refused the query (rate limit or bot check); retry later")
    return parser.results[:k]


_VOID_TAGS = {"br", "img", "hr", "wbr", "input", "meta", "link", "source"}


class _DuckDuckGoResults(HTMLParser):
    """Collects ``a.result__a`` (title, link) and ``.result__snippet`` from DuckDuckGo's HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.results: list[dict[str, str]] = []
        self._field: str | None = None
        self._depth = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._field is not None:
            if tag not in _VOID_TAGS:
                self._depth += 1
            return
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if tag == "a" and "result__a" in classes:
            url = _unwrap_duckduckgo_link(values.get("href") or "")
            if url:
                self.results.append({"title": "", "url": url, "snippet": ""})
                self._field, self._depth, self._text = "title", 0, []
        elif "result__snippet" in classes and self.results:
            self._field, self._depth, self._text = "snippet", 0, []

    def handle_endtag(self, tag: str) -> None:
        if self._field is None or tag in _VOID_TAGS:
            return
        if self._depth > 0:
            self._depth -= 1
            return
        self.results[-1][self._field] = " ".join("".join(self._text).split())
        self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self._text.append(data)


def _unwrap_duckduckgo_link(href: str) -> str:
    """DuckDuckGo wraps result links as //duckduckgo.com/l/?uddg=<url>; ads go via /y.js."""
    if href.startswith("//"):
        href = "https:" + href
    parsed = urllib.parse.urlparse(href)
    if parsed.path.endswith("/y.js"):
        return ""
    target = urllib.parse.parse_qs(parsed.query).get("uddg")
    return target[0] if target else href
