"""The initial actions, run where they really run: inside a real ipykernel.

A loopback web server (tests/support/web_fixtures.py) serves an HTML page, a PDF and an XLSX made
here, a redirect, a 404 and a slow route; search providers are loopback stand-ins of their APIs.
The kernel is a real ``KernelSession`` whose ``tools`` package is made unimportable before the
bootstrap runs, which proves the actions do not need this package inside the kernel.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynagraph.tools.actions import (
    FINAL_ANSWER_MARKER,
    ActionsConfig,
    ActionsConfigError,
    AgentProxy,
    action_specs,
    builtin_modules,
    kernel_bootstrap,
    parse_final_answer,
    strip_final_answer,
)
from dynagraph.tools.actions._common import clip_text, split_pages
from dynagraph.tools.actions.text import find_in_text
from dynagraph.tools.kernel import KernelSession

from tests.support.web_fixtures import Handler, Reply, Request, WebFixtureServer, make_pdf

pytest.importorskip("markitdown", reason="markitdown[pdf,docx,xlsx,pptx] is needed by read_file")
openpyxl = pytest.importorskip("openpyxl", reason="openpyxl makes the test workbook")

from tests.support.web_fixtures import make_xlsx  # noqa: E402  (needs openpyxl)

PDF_LINES = [["Quarterly report for Harbor Lane", "Revenue was 1234 dollars"], ["Page two (p2)"]]
ARTICLE_HTML = """<!doctype html>
<html><head><title>Tide tables of Harbor Lane</title>
<style>body { color: red; }</style>
<script>var secretScriptValue = 12345;</script></head>
<body><nav><a href="/index.html">Home</a></nav>
<h1>Tide tables</h1>
<p>High water is at <b>06:42</b> on Mondays.</p>
<p>See the <a href="/files/report.pdf">full report</a>.</p>
<img alt="a chart" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk">
<table><tr><th>Day</th><th>High</th></tr><tr><td>Monday</td><td>06:42</td></tr></table>
</body></html>"""


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def web() -> Iterator[WebFixtureServer]:
    with WebFixtureServer() as server:
        server.add("/article.html", ARTICLE_HTML)
        server.redirect("/old-article", "/article.html", status=301)
        server.add("/files/report.pdf", make_pdf(PDF_LINES), "application/pdf")
        server.add(
            "/files/sales.xlsx",
            make_xlsx({"Sales": [["region", "units"], ["North", 42], ["South", 17]]}),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        long_body = "".join(f"<p>Paragraph {n}: {'word ' * 40}</p>" for n in range(60))
        server.add("/long.html", f"<html><head><title>Long</title></head><body>{long_body}</body>")
        server.slow("/slow")
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("task")


@pytest.fixture(scope="module")
def kernel(workdir: Path) -> Iterator[KernelSession]:
    with KernelSession(workdir) as session:
        # The kernel may be sandboxed without this project: make `import tools` fail in it.
        blocked = session.execute("import sys; sys.modules['tools'] = None", 30)
        assert blocked.ok(), blocked.to_observation()
        yield session


def run(kernel: KernelSession, code: str, timeout: float = 60) -> str:
    """Run a cell that must succeed; return its stdout."""
    result = kernel.execute(code, timeout)
    assert result.status == "ok", result.to_observation()
    return result.stdout


def bootstrap(kernel: KernelSession, config: ActionsConfig, proxy: AgentProxy | None = None) -> str:
    result = kernel.execute(kernel_bootstrap(config, proxy=proxy), 60)
    assert result.status == "ok", result.to_observation()
    return result.stderr


def call(kernel: KernelSession, expression: str) -> str:
    """Print an action's answer in the kernel and return it."""
    return run(kernel, f"print({expression})").rstrip("\n")


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line(text: str, prefix: str) -> None:
    assert text.startswith(prefix), text
    assert "\n" not in text, text
    assert "Traceback" not in text, text


# ----------------------------------------------------------------------------- pure helpers


def test_clip_text_keeps_head_and_tail_with_a_marker() -> None:
    text = "HEAD" + "x" * 10_000 + "TAIL"
    clipped = clip_text(text, 1000)
    assert clipped.startswith("HEAD") and clipped.endswith("TAIL")
    assert "[... 9008 characters cut ...]" in clipped
    assert clip_text("short", 1000) == "short"


def test_split_pages_is_bounded_and_loses_nothing() -> None:
    text = "\n".join(f"line {n} " + "y" * (n % 70) for n in range(400))
    pages = split_pages(text, 1000)
    assert len(pages) > 5
    assert all(len(page) <= 1000 for page in pages)
    assert "\n".join(pages) == text
    huge = split_pages("z" * 2500, 1000)
    assert [len(page) for page in huge] == [1000, 1000, 500]


def test_find_in_text_shows_each_match_in_context() -> None:
    text = "alpha beta. " * 50 + "The answer is 42 apples. " + "gamma. " * 50
    found = find_in_text(text, r"answer is (\d+)", context=10)
    assert found.startswith("1 match(es) for")
    assert "answer is 42 apples" in found
    assert "find_in_text: no match" in find_in_text(text, "zebra")
    literal = find_in_text("cost (usd): 5", "(usd", context=5)  # invalid regex: taken literally
    assert "(text)" in literal and "(usd)" in literal


# ----------------------------------------------------------------------------- specs, config


def test_builtin_actions_are_typed_with_one_line_docstrings() -> None:
    specs = {spec.name: spec for spec in action_specs(ActionsConfig())}
    required = {"final_answer", "read_file", "fetch_url", "download", "web_search", "find_in_text"}
    assert required <= set(specs)
    for spec in specs.values():
        assert spec.origin == "builtin"
        assert spec.signature.endswith((" -> str", " -> None")), spec
        assert spec.docstring and "\n" not in spec.docstring.strip(), spec
    assert (
        specs["read_file"].summary_line().startswith("read_file(path: str, page: int = 1) -> str: ")
    )
    assert specs["download"].signature == "(url: str, dest: str | None = None) -> str"
    assert all(Path(path).is_file() for path in builtin_modules())


def test_config_refuses_an_unknown_provider_and_a_missing_tool_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="search_provider must be one of"):
        ActionsConfig(search_provider="googol")
    config = ActionsConfig(extra=[str(tmp_path / "missing_tools.py")])
    with pytest.raises(ActionsConfigError, match="no file"):
        action_specs(config)
    with pytest.raises(ActionsConfigError, match="neither a .py file nor an importable"):
        action_specs(ActionsConfig(extra=["no_such_module_dynagraph_xyz"]))


def test_parse_final_answer_finds_the_last_marker_line() -> None:
    marker = FINAL_ANSWER_MARKER
    stdout = f'log\n{marker}{{"answer": "first"}}\nmore\n{marker}{{"answer": "a\\nb \\"q\\""}}\n'
    assert parse_final_answer(stdout) == 'a\nb "q"'
    assert parse_final_answer("no marker here\n") is None
    assert parse_final_answer(f"{marker}{{not json}}\n") is None
    assert parse_final_answer(f'  {marker}{{"answer": "x"}}') is None  # must start the line
    assert strip_final_answer(stdout) == "log\nmore\n"


# ----------------------------------------------------------------------------- in the kernel


def test_bootstrap_defines_only_the_actions_without_this_package(kernel: KernelSession) -> None:
    bootstrap(kernel, ActionsConfig())
    names = json.loads(
        call(
            kernel,
            "__import__('json').dumps(sorted(n for n in globals() if not n.startswith('_')))",
        )
    )
    assert {"read_file", "fetch_url", "download", "web_search", "final_answer"} <= set(names)
    assert not {"SETTINGS", "clip_text", "http_get", "ActionError"} & set(names)
    blocked = kernel.execute("import tools", 30)
    assert blocked.status == "error", "the kernel must not be able to import this package here"


def test_read_file_turns_a_pdf_and_an_xlsx_into_text(kernel: KernelSession, workdir: Path) -> None:
    (workdir / "report.pdf").write_bytes(make_pdf(PDF_LINES))
    (workdir / "quarter.xlsx").write_bytes(
        make_xlsx({"Sales": [["region", "units"], ["North", 42], ["South", 17]]})
    )
    bootstrap(kernel, ActionsConfig())
    pdf = call(kernel, "read_file('report.pdf')")
    assert pdf.startswith("File: report.pdf (")
    assert "page 1 of 1" in pdf
    assert "Revenue was 1234 dollars" in pdf and "Page two (p2)" in pdf
    xlsx = call(kernel, "read_file('quarter.xlsx')")
    assert "## Sales" in xlsx
    assert "| North | 42 |" in xlsx and "| South | 17 |" in xlsx


def test_read_file_pages_a_long_document(kernel: KernelSession, workdir: Path) -> None:
    lines = [f"Entry {n:03d}: " + "lorem ipsum " * 10 for n in range(120)]
    (workdir / "notes.txt").write_text("\n".join(lines), encoding="utf-8")
    bootstrap(kernel, ActionsConfig(page_chars=1000))
    first = call(kernel, "read_file('notes.txt')")
    total = int(first.split("page 1 of ")[1].split()[0])
    assert total > 10
    assert "(next: read_file('notes.txt', page=2))" in first
    assert "Entry 000" in first and "Entry 050" not in first
    middle = call(kernel, "read_file('notes.txt', page=8)")
    assert f"page 8 of {total}" in middle and "Entry 000" not in middle
    assert all(len(page) < 1400 for page in (first, middle))
    beyond = call(kernel, "read_file('notes.txt', page=999)")
    assert_one_line(beyond, "read_file: page 999 does not exist")


def test_read_file_missing_file_names_what_is_there(kernel: KernelSession, workdir: Path) -> None:
    (workdir / "present.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    bootstrap(kernel, ActionsConfig())
    missing = call(kernel, "read_file('absent.pdf')")
    assert_one_line(missing, "read_file: no file 'absent.pdf'")
    assert "present.csv" in missing
    csv = call(kernel, "read_file('present.csv')")
    assert "| a | b |" in csv and "| 1 | 2 |" in csv


def test_read_file_json_pretty_and_image_metadata(kernel: KernelSession, workdir: Path) -> None:
    pil = pytest.importorskip("PIL.Image", reason="Pillow makes the test image")
    (workdir / "data.json").write_text('{"city":"Oslo","pop":[1,2]}', encoding="utf-8")
    pil.new("RGB", (7, 3), "red").save(workdir / "dot.png")
    bootstrap(kernel, ActionsConfig())
    data = call(kernel, "read_file('data.json')")
    assert '"city": "Oslo"' in data and "JSON" in data
    image = call(kernel, "read_file('dot.png')")
    assert "Image: PNG, 7x3 pixels, mode RGB" in image
    assert "iVBOR" not in image  # never the bytes


def test_fetch_url_gives_readable_text_title_and_final_url(
    kernel: KernelSession, web: WebFixtureServer
) -> None:
    bootstrap(kernel, ActionsConfig())
    page = call(kernel, f"fetch_url({web.url('/old-article')!r})")
    assert page.startswith(f"URL: {web.url('/article.html')}\n")
    assert f"Requested: {web.url('/old-article')} (redirected)" in page
    assert "Title: Tide tables of Harbor Lane" in page
    assert "High water is at **06:42** on Mondays." in page
    assert f"[full report]({web.url('/files/report.pdf')})" in page  # links made absolute
    assert "| Monday | 06:42 |" in page
    for raw in ("<p>", "<html", "secretScriptValue", "color: red", "base64", "iVBOR"):
        assert raw not in page, raw


def test_fetch_url_pages_a_long_page(kernel: KernelSession, web: WebFixtureServer) -> None:
    bootstrap(kernel, ActionsConfig(page_chars=2000))
    first = call(kernel, f"fetch_url({web.url('/long.html')!r})")
    assert "page 1 of " in first and "Paragraph 0:" in first
    second = call(kernel, f"fetch_url({web.url('/long.html')!r}, page=2)")
    assert "page 2 of " in second and "Paragraph 0:" not in second


def test_fetch_url_reads_a_document_url(kernel: KernelSession, web: WebFixtureServer) -> None:
    bootstrap(kernel, ActionsConfig())
    pdf = call(kernel, f"fetch_url({web.url('/files/report.pdf')!r})")
    assert "Revenue was 1234 dollars" in pdf
    xlsx = call(kernel, f"fetch_url({web.url('/files/sales.xlsx')!r})")
    assert "| North | 42 |" in xlsx


def test_fetch_url_failures_are_one_line(kernel: KernelSession, web: WebFixtureServer) -> None:
    bootstrap(kernel, ActionsConfig())
    missing = call(kernel, f"fetch_url({web.url('/no-such-page')!r})")
    assert_one_line(missing, "fetch_url: HTTP 404")
    assert web.url("/no-such-page") in missing
    closed = call(kernel, f"fetch_url('http://127.0.0.1:{free_port()}/x')")
    assert_one_line(closed, "fetch_url: cannot reach")
    assert_one_line(call(kernel, "fetch_url('ftp://example.org/a')"), "fetch_url: unsupported")
    bootstrap(kernel, ActionsConfig(fetch_timeout=0.5))  # /slow never answers while we wait
    slow = call(kernel, f"fetch_url({web.url('/slow')!r})")
    assert_one_line(slow, "fetch_url: ")
    assert "timed out" in slow and "0.5 s" in slow


def test_download_saves_into_the_task_folder_without_overwriting(
    kernel: KernelSession, web: WebFixtureServer, workdir: Path
) -> None:
    bootstrap(kernel, ActionsConfig())
    url = web.url("/files/sales.xlsx?download=1")
    assert not (workdir / "sales.xlsx").exists()
    saved = call(kernel, f"download({url!r})").splitlines()
    assert saved[0].startswith("Saved ") and "'sales.xlsx'" in saved[0]
    assert saved[-1] == "sales.xlsx"  # the return value is the path
    assert (workdir / "sales.xlsx").read_bytes()[:2] == b"PK"
    again = call(kernel, f"download({url!r})")
    assert again.splitlines()[-1] == "sales-1.xlsx"
    into = call(kernel, f"download({web.url('/files/report.pdf')!r}, dest='inbox/q3.pdf')")
    assert into.splitlines()[-1] == "inbox/q3.pdf"
    assert "Revenue was 1234" in call(
        kernel, f"read_file(download({web.url('/files/report.pdf')!r}))"
    )
    failed = kernel.execute(f"download({web.url('/gone.pdf')!r})", 30)
    assert failed.status == "error"
    assert_one_line(failed.error_value, "download: HTTP 404")
    assert not (workdir / "gone.pdf").exists()


def test_final_answer_is_detected_host_side(kernel: KernelSession) -> None:
    bootstrap(kernel, ActionsConfig())
    result = kernel.execute("total = 40 + 2\nprint('working')\nfinal_answer(f'{total} units')", 30)
    assert result.ok(), result.to_observation()
    assert parse_final_answer(result.stdout) == "42 units"
    assert "working" in strip_final_answer(result.stdout)
    assert parse_final_answer(run(kernel, "print('no answer yet')")) is None


# ----------------------------------------------------------------------------- user tools


USER_TOOLS = '''
"""Tools of the user: unit conversions."""
import math

FREEZING_F = 32.0


def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit."""
    return _scale(celsius) + FREEZING_F


def circle_area(radius: float) -> float:
    """Area of a circle of this radius."""
    return math.pi * radius**2


def _scale(value: float) -> float:
    return value * 9 / 5
'''


def test_user_tool_file_is_listed_and_callable(kernel: KernelSession, tmp_path: Path) -> None:
    tools_file = tmp_path / "my_tools.py"
    tools_file.write_text(USER_TOOLS, encoding="utf-8")
    config = ActionsConfig(extra=[str(tools_file)])
    specs = {spec.name: spec for spec in action_specs(config)}
    user = specs["celsius_to_fahrenheit"]
    assert user.origin == "user" and user.source_module == str(tools_file)
    assert user.summary_line() == (
        "celsius_to_fahrenheit(celsius: float) -> float: "
        "Convert a temperature from Celsius to Fahrenheit."
    )
    assert "circle_area" in specs and "_scale" not in specs
    assert specs["read_file"].origin == "builtin"
    assert bootstrap(kernel, config) == ""
    assert call(kernel, "celsius_to_fahrenheit(100)") == "212.0"
    assert call(kernel, "round(circle_area(1.0), 4)") == "3.1416"
    assert call(kernel, "'_scale' in globals()") == "False"
    assert "read_file: no file" in call(kernel, "read_file('nothing-here.txt')")


def test_user_tool_module_name_is_loaded_from_its_source(
    kernel: KernelSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site"
    package.mkdir()
    (package / "dg_test_user_tools.py").write_text(
        textwrap.dedent(
            '''
            __all__ = ["shout"]

            def shout(text: str) -> str:
                """Upper-case text with an exclamation mark."""
                return text.upper() + "!"

            def not_exported() -> None:
                """Public but left out of __all__."""
            '''
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(package))  # importable by the agent, not by the kernel
    config = ActionsConfig(extra=["dg_test_user_tools"])
    names = [spec.name for spec in action_specs(config) if spec.origin == "user"]
    assert names == ["shout"]
    bootstrap(kernel, config)
    assert call(kernel, "shout('ahoy')") == "AHOY!"


def test_a_broken_user_tool_file_does_not_stop_the_builtins(
    kernel: KernelSession, tmp_path: Path
) -> None:
    broken = tmp_path / "broken_tools.py"
    broken.write_text("import no_such_module_for_dynagraph\n\ndef f() -> int:\n    return 1\n")
    stderr = bootstrap(kernel, ActionsConfig(extra=[str(broken)]))
    assert "failed to load: ModuleNotFoundError" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert call(kernel, "callable(read_file)") == "True"


# ----------------------------------------------------------------------------- search


def searxng_api(request: Request) -> Reply:
    query = request.query.get("q", [""])[0]
    if request.query.get("format") != ["json"]:
        return Reply(b"format=json missing", 403, "text/plain")
    results = [
        {
            "title": f"{query} result {n}",
            "url": f"https://example.org/{n}",
            "content": f"<b>snip</b> {n}",
        }
        for n in range(1, 9)
    ]
    return Reply(json.dumps({"query": query, "results": results}).encode(), 200, "application/json")


DUCKDUCKGO_PAGE = """<html><body>
<div class="result results_links_deep result--ad"><a class="result__a"
 href="https://duckduckgo.com/y.js?ad_domain=ads.example&amp;u3=x">An ad</a></div>
<div class="result"><h2 class="result__title"><a rel="nofollow" class="result__a"
 href="//duckduckgo.com/l/?uddg=https%3A%2F%2Ftides.example%2Fharbor&amp;rut=abc">Harbor <b>tides</b></a></h2>
<a class="result__snippet" href="x">High water at <b>06:42</b>.<br>Mondays.</a></div>
<div class="result"><a class="result__a" href="https://plain.example/page">Plain link</a>
<a class="result__snippet" href="y">Second snippet</a></div>
</body></html>"""


def test_misconfigured_search_is_one_line(kernel: KernelSession) -> None:
    cases = {
        "no search provider is configured": ActionsConfig(),
        "needs actions.search_base_url": ActionsConfig(search_provider="searxng"),
        "agent proxy that holds it is not running": ActionsConfig(search_provider="brave"),
        "cannot reach": ActionsConfig(
            search_provider="searxng", search_base_url=f"http://127.0.0.1:{free_port()}"
        ),
    }
    for expected, config in cases.items():
        bootstrap(kernel, config)
        answer = call(kernel, "web_search('tide tables')")
        assert_one_line(answer, "web_search: ")
        assert expected in answer, answer


def test_searxng_search_returns_titles_urls_and_snippets(
    kernel: KernelSession, web: WebFixtureServer
) -> None:
    web.handle("/searx/search", searxng_api)
    bootstrap(kernel, ActionsConfig(search_provider="searxng", search_base_url=web.url("/searx")))
    answer = call(kernel, "web_search('harbor tides', k=3)")
    assert answer.splitlines()[0] == "Search results for 'harbor tides' (searxng):"
    assert "1. harbor tides result 1\n   https://example.org/1\n   snip 1" in answer
    assert "3. harbor tides result 3" in answer and "4. " not in answer
    assert web.requests_to("/searx/search")[-1].query["q"] == ["harbor tides"]


def test_duckduckgo_search_parses_its_html_page(
    kernel: KernelSession, web: WebFixtureServer
) -> None:
    web.add("/ddg/html/", DUCKDUCKGO_PAGE)
    bootstrap(kernel, ActionsConfig(search_provider="duckduckgo", search_base_url=web.url("/ddg")))
    answer = call(kernel, "web_search('harbor tides')")
    lines = answer.splitlines()
    assert lines[1:4] == [
        "1. Harbor tides",
        "   https://tides.example/harbor",
        "   High water at 06:42.Mondays.",
    ]
    assert "2. Plain link" in answer and "An ad" not in answer
    assert web.requests_to("/ddg/html/")[-1].form()["q"] == ["harbor tides"]


def keyed_api(expected_key: str) -> tuple[Handler, Handler]:
    """Stand-ins for Brave (GET, key header) and Tavily (POST, bearer) that check the key."""

    def brave(request: Request) -> Reply:
        if request.headers.get("x-subscription-token") != expected_key:
            return Reply(b'{"error": "bad key"}', 401, "application/json")
        count = int(request.query["count"][0])
        web_results = [
            {
                "title": f"Brave {n}",
                "url": f"https://b.example/{n}",
                "description": "d <strong>x</strong>",
            }
            for n in range(1, count + 1)
        ]
        return Reply(
            json.dumps({"web": {"results": web_results}}).encode(), 200, "application/json"
        )

    def tavily(request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {expected_key}":
            return Reply(b'{"error": "bad key"}', 401, "application/json")
        body = json.loads(request.body)
        results = [
            {"title": f"Tavily {n}", "url": f"https://t.example/{n}", "content": body["query"]}
            for n in range(1, body["max_results"] + 1)
        ]
        return Reply(json.dumps({"results": results}).encode(), 200, "application/json")

    return brave, tavily


@pytest.mark.parametrize(("provider", "unix_socket"), [("brave", True), ("tavily", False)])
def test_keyed_search_goes_through_the_proxy_and_the_key_stays_out(
    kernel: KernelSession, web: WebFixtureServer, provider: str, unix_socket: bool
) -> None:
    key = f"sk-{provider}-loopback-secret"
    brave, tavily = keyed_api(key)
    web.handle("/brave/res/v1/web/search", brave)
    web.handle("/tavily/search", tavily)
    config = ActionsConfig(
        search_provider=provider, search_base_url=web.url(f"/{provider}"), search_api_key_env="DG_K"
    )
    proxy = AgentProxy(config, environ={"DG_K": key}).start(unix_socket=unix_socket)
    assert (proxy.socket_path is not None) == unix_socket  # else over its loopback TCP port
    try:
        source = kernel_bootstrap(config, proxy=proxy)
        assert key not in source
        bootstrap(kernel, config, proxy)
        answer = call(kernel, "web_search('harbor', k=2)")
        title = provider.capitalize()
        assert f"1. {title} 1\n   https://{provider[0]}.example/1" in answer, answer
        assert f"2. {title} 2" in answer and "3. " not in answer
        leaked = call(kernel, f"[k for k, v in __import__('os').environ.items() if {key!r} in v]")
        assert leaked == "[]"
    finally:
        proxy.stop()


def test_search_proxy_without_its_key_is_one_line(kernel: KernelSession) -> None:
    config = ActionsConfig(search_provider="brave")
    with AgentProxy(config, environ={}) as proxy:
        bootstrap(kernel, config, proxy)
        answer = call(kernel, "web_search('harbor')")
    assert_one_line(answer, "web_search: ")
    assert "BRAVE_API_KEY" in answer
