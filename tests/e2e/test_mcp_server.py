"""`dynagraph library mcp`: the library served over MCP (stdio), driven by the SDK's own client
from a subprocess: list tools, search, call in a sandboxed kernel, read sources, and clear
errors for an unknown, a quarantined or a failing function."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.support.cli import user_env

pytestmark = pytest.mark.timeout(240)

FUNCTIONS = '''
import statistics

def median_of(values: list[float]) -> float:
    """The median of a list of numbers."""
    return statistics.median(values)

def spread(values: list[float], *, relative: bool = False) -> float:
    """Max minus min of the values; divided by the median when relative is true."""
    width = max(values) - min(values)
    return width / median_of(values) if relative else width

def shout(text: str) -> str:
    """The text in capitals, printed and returned."""
    print("shouting")
    return text.upper()
'''

CALLS = """
median_of([3, 1, 2])
spread([1, 5, 3])
spread([2, 4, 6], relative=True)
shout("hi")
"""


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dynagraph.graphs.cli", *args],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture
def library_env(tmp_path):
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"library: {{path: {home / 'library.db'}}}\n"
        f"executor: {{workdir: {home / 'runs'}, timeout: 20}}\n"
        f"checkpoint_path: {home / 'checkpoints.db'}\n"
    )
    (tmp_path / "functions.py").write_text(FUNCTIONS)
    (tmp_path / "calls.py").write_text(CALLS)
    env = user_env(DYNAGRAPH_HOME=str(home), DYNAGRAPH_CONFIG=str(config))
    added = _cli("library", "add", str(tmp_path / "functions.py"), "--probe",
                 str(tmp_path / "calls.py"), env=env)  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    quarantined = _cli("library", "quarantine", "shout", "--reason", "prints secrets", env=env)
    assert quarantined.returncode == 0, quarantined.stderr
    return {"DYNAGRAPH_HOME": str(home), "DYNAGRAPH_CONFIG": str(config)}


async def _session_run(env: dict[str, str], body) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "dynagraph.graphs.cli", "library", "mcp"], env=env
    )
    with Path(env["DYNAGRAPH_HOME"], "mcp-stderr.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await body(session)


def _text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


def test_mcp_server_over_stdio(library_env):
    async def body(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"search_functions", "call_function"}
        assert {"query", "k"} <= set(tools["search_functions"].input_schema["properties"])
        assert {"name", "arguments"} <= set(tools["call_function"].input_schema["properties"])

        found = await session.call_tool("search_functions", {"query": "median of numbers", "k": 3})
        assert not found.is_error, _text(found)
        hits = found.structured_content["result"]
        assert hits[0]["name"] == "median_of"
        assert hits[0]["signature"] == "median_of(values: list[float]) -> float"
        assert "shout" not in [h["name"] for h in hits]  # quarantined: never found

        # keyword arguments; spread calls median_of, which is defined with it
        called = await session.call_tool(
            "call_function",
            {"name": "spread", "arguments": {"values": [2, 4, 10], "relative": True}},
        )
        assert not called.is_error, _text(called)
        assert called.structured_content["result"] == 2.0
        assert called.structured_content["type"] == "float"
        positional = await session.call_tool(
            "call_function", {"name": "median_of", "arguments": [[5, 1, 4, 2]]}
        )
        assert positional.structured_content["result"] == 3.0, _text(positional)

        failing = await session.call_tool(
            "call_function", {"name": "median_of", "arguments": {"values": []}}
        )
        assert failing.is_error and "StatisticsError" in _text(failing)
        unknown = await session.call_tool("call_function", {"name": "no_such", "arguments": {}})
        assert unknown.is_error and "no function named 'no_such'" in _text(unknown)
        blocked = await session.call_tool(
            "call_function", {"name": "shout", "arguments": {"text": "x"}}
        )
        assert blocked.is_error
        assert "'shout' is quarantined (prints secrets)" in _text(blocked)

        resources = {str(r.uri) for r in (await session.list_resources()).resources}
        assert resources == {"dynagraph://functions/median_of", "dynagraph://functions/spread"}
        source = await session.read_resource("dynagraph://functions/median_of")
        text = source.contents[0].text
        assert "import statistics" in text and "def median_of(" in text
        json.dumps(called.structured_content)  # the answer is plain JSON

    anyio.run(_session_run, library_env, body)


def test_mcp_call_is_bounded_by_the_executor_timeout(library_env, tmp_path):
    """A call runs under executor.timeout (5 s here): a function that sleeps longer is
    stopped and reported as a tool error, and the server keeps answering afterwards."""
    config = Path(library_env["DYNAGRAPH_CONFIG"])
    config.write_text(config.read_text().replace("timeout: 20", "timeout: 5"))
    funcs = tmp_path / "slow.py"
    funcs.write_text(
        "import time\n\n"
        "def pause(seconds: float) -> float:\n"
        '    """Sleep for the given seconds and return them."""\n'
        "    time.sleep(seconds)\n    return seconds\n"
    )
    env = user_env(**library_env)
    added = _cli("library", "add", str(funcs), env=env)
    assert added.returncode == 0, added.stdout + added.stderr

    async def body(session: ClientSession) -> None:
        slow = await session.call_tool("call_function", {"name": "pause", "arguments": [60]})
        assert slow.is_error and "timeout" in _text(slow), _text(slow)
        quick = await session.call_tool("call_function", {"name": "pause", "arguments": [0]})
        assert not quick.is_error and quick.structured_content["result"] == 0, _text(quick)

    anyio.run(_session_run, library_env, body)


def test_mcp_call_keeps_each_function_s_own_names_and_a_long_answer(library_env, tmp_path):
    """A function and the library function it calls each keep their module-level ``RATE`` (a
    call defines them as a task's kernel does: each in a namespace of its own), and a call
    that prints a lot and returns a long text still gives its answer (the output cap once cut
    the answer's line)."""
    vat, discount, report = tmp_path / "vat.py", tmp_path / "discount.py", tmp_path / "report.py"
    vat.write_text(
        "RATE = 0.2\n\n"
        "def add_vat(amount: float) -> float:\n"
        '    """The amount with 20% VAT."""\n'
        "    return amount * (1 + RATE)\n"
    )
    discount.write_text(
        "RATE = 0.05\n\n"
        "def discounted_with_vat(amount: float) -> float:\n"
        '    """The amount with VAT, then 5% off."""\n'
        "    return add_vat(amount) * (1 - RATE)\n"
    )
    report.write_text(
        "def report_text(size: int) -> str:\n"
        '    """A report of the given length, also printed."""\n'
        '    print("x" * size)\n'
        '    return "y" * size\n'
    )
    env = user_env(**library_env)
    for path, calls in ((vat, "add_vat(100)"), (discount, "discounted_with_vat(100)"),
                        (report, "report_text(3)")):  # fmt: skip
        (tmp_path / "calls.py").write_text(calls + "\n")
        added = _cli("library", "add", str(path), "--probe", str(tmp_path / "calls.py"), env=env)
        assert added.returncode == 0, added.stdout + added.stderr
        assert "added" in added.stdout + added.stderr, added.stdout + added.stderr

    async def body(session: ClientSession) -> None:
        both = await session.call_tool(
            "call_function", {"name": "discounted_with_vat", "arguments": [100]}
        )
        assert not both.is_error, _text(both)
        assert round(both.structured_content["result"], 6) == 114.0  # 100 * 1.2 * 0.95
        alone = await session.call_tool("call_function", {"name": "add_vat", "arguments": [100]})
        assert round(alone.structured_content["result"], 6) == 120.0, _text(alone)
        long = await session.call_tool(
            "call_function", {"name": "report_text", "arguments": [15_000]}
        )
        assert not long.is_error, _text(long)
        assert long.structured_content["result"] == "y" * 15_000
        assert long.structured_content["output"].strip("x\n") == ""

    anyio.run(_session_run, library_env, body)


def test_mcp_calls_send_the_define_helper_once_and_again_after_a_reset(library_env, monkeypatch):
    """The definition helper's ~8 KB of source goes with the kernel's first definition cell
    only (it cost every call ~5 ms of IPython's input transforms); after a cell's ``%reset``
    removed it, the next call installs it again and still answers."""
    from dynagraph.graphs.mcp_server import LibraryTools
    from dynagraph.graphs.settings import load_settings
    from dynagraph.tools.kernel import KernelSession

    for key, value in library_env.items():
        monkeypatch.setenv(key, value)
    cells: list[str] = []
    execute = KernelSession.execute

    def recorded(self, code, *args, **kwargs):
        cells.append(code)
        return execute(self, code, *args, **kwargs)

    monkeypatch.setattr(KernelSession, "execute", recorded)
    tools = LibraryTools(load_settings(library_env["DYNAGRAPH_CONFIG"]))
    try:
        answers = [tools.call("spread", [[1, 5, 3]]) for _ in range(3)]
        with_helper = [c for c in cells if "def define_all" in c]
        tools._session().execute("%reset -f")
        after_reset = tools.call("spread", {"values": [2, 9, 4], "relative": True})
    finally:
        tools.close()
    assert [a["result"] for a in answers] == [4, 4, 4]
    assert len(with_helper) == 1, f"{len(with_helper)} of {len(cells)} cells carried the helper"
    assert after_reset["result"] == 7 / 4
    assert sum("def define_all" in c for c in cells) == 2  # sent again after the reset
