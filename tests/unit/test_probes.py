"""tools/kernel/probes.py: calls to cell-defined functions recorded in a real ipykernel, and replayed.

Kernels are started directly with jupyter_client (independent of KernelSession):
one bootstrapped kernel for the module, plus a scratch kernel without BOOTSTRAP for replays.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass

import pytest
from dynagraph.tools.kernel.probes import (
    BOOTSTRAP,
    FETCH_CODE,
    MAX_PROBES,
    PROBES_MARKER,
    decode_b64,
    parse_fetched,
    parse_verdict,
    replay_code,
    results_equal,
    short_repr,
)

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: E402
from jupyter_client.manager import start_new_kernel  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class CellResult:
    status: str
    stdout: str
    error: str
    execution_count: int


def start_kernel():
    """A python3 kernel running this interpreter (jupyter_client maps argv "python" to it)."""
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 kernelspec installed")
    if spec.argv[0] not in ("python", "python3", sys.executable):
        pytest.skip(f"the python3 kernelspec runs {spec.argv[0]}, not this venv's python")
    return start_new_kernel(kernel_name="python3", startup_timeout=60)


def run(kc, code: str) -> CellResult:
    stdout: list[str] = []
    errors: list[str] = []

    def on_message(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            stdout.append(content["text"])
        elif kind == "error":
            errors.append(ANSI.sub("", "\n".join(content["traceback"])))

    reply = kc.execute_interactive(code, timeout=60, output_hook=on_message)
    content = reply["content"]
    return CellResult(
        content["status"], "".join(stdout), "".join(errors), content["execution_count"]
    )


def ok(kc, code: str) -> CellResult:
    result = run(kc, code)
    assert result.status == "ok", result.error
    return result


@pytest.fixture(scope="module")
def kernel():
    km, kc = start_kernel()
    try:
        ok(kc, BOOTSTRAP)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def scratch():
    """A kernel without BOOTSTRAP: replay code must be self-contained."""
    km, kc = start_kernel()
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def fetch(kc) -> tuple[dict, dict]:
    return parse_fetched(ok(kc, FETCH_CODE).stdout)


@pytest.fixture()
def clean(kernel):
    fetch(kernel)  # start each test with an empty store
    return kernel


# --------------------------------------------------------------------------- recording


def test_define_and_call_in_the_same_cell(clean):
    cell = ok(clean, "def add(a, b=2):\n    return a + b\nadd(1)\nadd(3, b=4)\n")
    probes, calls = fetch(clean)
    assert [(p["args_repr"], p["kwargs_repr"], p["result_repr"]) for p in probes["add"]] == [
        ("(1,)", "{}", "3"),
        ("(3,)", "{'b': 4}", "7"),
    ]
    first = probes["add"][0]
    assert first["function"] == "add" and first["raised"] is None and first["is_async"] is False
    assert first["defined_in"] == cell.execution_count  # matches the execute_reply
    assert decode_b64(first["args_b64"]) == ((1,), {})
    assert decode_b64(first["result_b64"]) == 3
    assert calls == {"add": {"calls": 2, "errors": 0}}
    assert fetch(clean) == ({}, {})  # fetching cleared the store


def test_calls_in_a_later_cell_are_recorded(clean):
    defining = ok(clean, "def shout(s):\n    return s.upper() + '!'\n")
    assert fetch(clean) == ({}, {})
    ok(clean, "x = shout('hi')\n")
    probes, calls = fetch(clean)
    assert [p["result_repr"] for p in probes["shout"]] == ["'HI!'"]
    assert probes["shout"][0]["defined_in"] == defining.execution_count
    assert calls["shout"]["calls"] == 1


def test_recursion_records_only_the_outer_call(clean):
    ok(clean, "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\nfact(6)\n")
    probes, calls = fetch(clean)
    assert [(p["args_repr"], p["result_repr"]) for p in probes["fact"]] == [("(6,)", "720")]
    assert calls["fact"] == {"calls": 1, "errors": 0}


def test_a_function_called_by_another_probed_function_gets_its_own_probes(clean):
    ok(
        clean,
        "def inner(x):\n    return x * 10\ndef outer(x):\n    return inner(x) + 1\nouter(2)\n",
    )
    probes, _ = fetch(clean)
    assert probes["outer"][0]["result_repr"] == "21"
    assert probes["inner"][0]["result_repr"] == "20"


def test_a_raising_call_is_recorded_and_the_traceback_is_unchanged(clean):
    result = run(clean, "def inverse(x):\n    return 1 / x\ninverse(4)\ninverse(0)\n")
    assert result.status == "error"
    assert "ZeroDivisionError" in result.error
    assert "in wrapper" not in result.error and "dynagraph" not in result.error
    probes, calls = fetch(clean)
    good, bad = probes["inverse"]
    assert good["result_repr"] == "0.25" and good["raised"] is None
    assert bad["raised"] == "ZeroDivisionError('division by zero')"
    assert bad["raised_type"] == "ZeroDivisionError"
    assert bad["result_repr"] is None and bad["result_b64"] is None
    assert calls["inverse"] == {"calls": 2, "errors": 1}


def test_unpicklable_or_huge_values_still_give_reprs(clean):
    ok(
        clean,
        "def apply(fn, xs):\n    return (x for x in map(fn, xs))\n"
        "gen = apply(lambda v: v + 1, [1, 2])\n"
        "def size(data):\n    return len(data)\n"
        "size(b'x' * (300 * 1024))\n",
    )
    probes, _ = fetch(clean)
    (apply_probe,) = probes["apply"]
    assert apply_probe["args_b64"] is None and "<lambda>" in apply_probe["args_repr"]
    assert apply_probe["result_b64"] is None and "generator" in apply_probe["result_repr"]
    (size_probe,) = probes["size"]
    assert size_probe["args_b64"] is None  # over the 256 KiB limit
    assert size_probe["args_repr"].startswith("(b'xxx") and len(size_probe["args_repr"]) < 3000
    assert size_probe["result_repr"] == str(300 * 1024)


def test_pandas_dataframe_arguments_round_trip(clean):
    pd = pytest.importorskip("pandas")
    ok(
        clean,
        "import pandas as pd\n"
        "def column_total(df, column):\n    return df[column].sum()\n"
        "frame = pd.DataFrame({'item': ['a', 'b'], 'price': [1.5, 2.25]})\n"
        "column_total(frame, column='price')\n",
    )
    probes, _ = fetch(clean)
    (probe,) = probes["column_total"]
    args, kwargs = decode_b64(probe["args_b64"])
    expected = pd.DataFrame({"item": ["a", "b"], "price": [1.5, 2.25]})
    assert isinstance(args[0], pd.DataFrame) and args[0].equals(expected)
    assert kwargs == {"column": "price"}
    assert decode_b64(probe["result_b64"]) == 3.75


def test_at_most_max_probes_distinct_calls_per_definition(clean):
    ok(clean, "def double(x):\n    return 2 * x\nfor i in range(12):\n    double(i % 8)\n")
    ok(clean, "for i in range(3):\n    double(0)\n")
    probes, calls = fetch(clean)
    assert [p["args_repr"] for p in probes["double"]] == [f"({i},)" for i in range(MAX_PROBES)]
    assert calls["double"]["calls"] == 15
    ok(clean, "double(1)\ndouble(1)\n")
    probes, _ = fetch(clean)
    assert [p["args_repr"] for p in probes["double"]] == ["(1,)"]  # repeats are not re-recorded


def test_async_functions_are_recorded_and_stay_coroutine_functions(clean):
    ok(
        clean,
        "import asyncio, inspect\n"
        "async def slow_square(x):\n    await asyncio.sleep(0)\n    return x * x\n"
        "assert inspect.iscoroutinefunction(slow_square)\n"
        "await slow_square(7)\n",
    )
    probes, _ = fetch(clean)
    (probe,) = probes["slow_square"]
    assert probe["is_async"] is True and probe["result_repr"] == "49"


def test_wrapped_functions_keep_name_doc_signature_and_source(clean):
    out = ok(
        clean,
        "import functools, inspect\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def scaled(x: int, factor: float = 1.5) -> float:\n"
        "    '''Scale x.'''\n"
        "    return x * factor\n"
        "print(scaled.__name__, scaled.__doc__, inspect.signature(scaled))\n"
        "print(hasattr(scaled, '__wrapped__'), hasattr(scaled, 'cache_info'))\n"
        "print(inspect.getsource(scaled), end='')\n",
    ).stdout.splitlines()
    assert out[0] == "scaled Scale x. (x: int, factor: float = 1.5) -> float"
    assert out[1] == "True True"
    assert out[2:] == [
        "@functools.lru_cache(maxsize=None)",
        "def scaled(x: int, factor: float = 1.5) -> float:",
        "    '''Scale x.'''",
        "    return x * factor",
    ]


def test_methods_nested_functions_and_generators_are_not_wrapped(clean):
    ok(
        clean,
        "class Box:\n    def get(self):\n        return 1\n"
        "def make():\n    def nested():\n        return 2\n    return nested()\n"
        "def count_up(n):\n    yield from range(n)\n"
        "Box().get(); make(); list(count_up(3))\n"
        "assert not hasattr(Box.get, '__wrapped__') and not hasattr(count_up, '__wrapped__')\n",
    )
    probes, _ = fetch(clean)
    assert set(probes) == {"make"}


def test_a_syntax_error_cell_does_not_break_the_transformer(clean):
    assert run(clean, "def broken(:\n    pass\n").status == "error"
    ok(clean, "def still_probed(x):\n    return -x\nstill_probed(3)\n")
    probes, _ = fetch(clean)
    assert probes["still_probed"][0]["result_repr"] == "-3"


def test_bootstrap_twice_registers_one_transformer_and_survives_reset(clean):
    ok(clean, BOOTSTRAP)
    out = ok(
        clean,
        "print(sum(getattr(t, 'dynagraph_probes', False) for t in get_ipython().ast_transformers))",
    )
    assert out.stdout.strip() == "1"
    ok(clean, "%reset -f")
    ok(clean, "def after_reset(x):\n    return x\nafter_reset(5)\n")
    probes, _ = fetch(clean)
    assert probes["after_reset"][0]["result_repr"] == "5"
    ok(clean, "assert not hasattr(after_reset.__wrapped__, '__wrapped__')")  # wrapped once


# --------------------------------------------------------------------------- replay


CONSTANT_V1 = "def discounted(price, rate=0.1):\n    return round(price * (1 - rate) + 0.5, 6)\n"
CONSTANT_V2 = CONSTANT_V1.replace("+ 0.5", "+ 0.75")


def recorded_probe(kc, definition: str, call: str, name: str) -> dict:
    run(kc, definition + call)
    probes, _ = fetch(kc)
    return probes[name][-1]


def replay(kc, name: str, probe: dict) -> dict:
    result = run(kc, replay_code(name, probe))
    assert result.status == "ok", result.error
    return parse_verdict(result.stdout)


def test_replay_against_the_same_and_a_changed_function(clean, scratch):
    probe = recorded_probe(clean, CONSTANT_V1, "discounted(20.0, rate=0.25)\n", "discounted")
    ok(scratch, CONSTANT_V1)
    verdict = replay(scratch, "discounted", probe)
    assert verdict["ok"] is True and verdict["compared"] == "value"
    assert verdict["result_repr"] == "15.5" and verdict["error"] is None
    ok(scratch, CONSTANT_V2)
    verdict = replay(scratch, "discounted", probe)
    assert verdict["ok"] is False and verdict["result_repr"] == "15.75"


def test_replay_in_a_bootstrapped_kernel_and_of_a_dataframe_probe(clean):
    pytest.importorskip("pandas")
    definition = (
        "import pandas as pd\n"
        "def priciest(df):\n    return df.sort_values('price').tail(1)\n"
        "frame = pd.DataFrame({'item': ['a', 'b', 'c'], 'price': [3.0, 9.0, float('nan')]})\n"
    )
    probe = recorded_probe(clean, definition, "priciest(frame)\n", "priciest")
    assert replay(clean, "priciest", probe)["ok"] is True
    ok(clean, "def priciest(df):\n    return df.sort_values('price').head(1)\n")
    assert replay(clean, "priciest", probe)["ok"] is False


def test_replay_of_exceptions_unreplayable_probes_and_missing_functions(clean, scratch):
    raising = recorded_probe(
        clean, "def check(x):\n    raise ValueError(x)\n", "check(1)\n", "check"
    )
    ok(scratch, "def check(x):\n    raise ValueError(x)\n")
    assert replay(scratch, "check", raising)["ok"] is True
    ok(scratch, "def check(x):\n    return x\n")
    verdict = replay(scratch, "check", raising)
    assert verdict["ok"] is False and "expected ValueError" in verdict["error"]

    lambda_probe = recorded_probe(
        clean, "def call_it(f):\n    return f()\n", "call_it(lambda: 1)\n", "call_it"
    )
    assert lambda_probe["args_b64"] is None
    ok(scratch, "def call_it(f):\n    return f()\n")
    verdict = replay(scratch, "call_it", lambda_probe)
    assert verdict["replayable"] is False and verdict["ok"] is False

    verdict = replay(scratch, "never_defined_anywhere", raising)
    assert verdict["ok"] is False and "not defined" in verdict["error"]


def test_replay_of_an_async_probe(clean, scratch):
    definition = "async def plus_one(x):\n    return x + 1\n"
    probe = recorded_probe(clean, definition, "await plus_one(41)\n", "plus_one")
    ok(scratch, definition)
    assert replay(scratch, "plus_one", probe) | {"error": None} == {
        "ok": True,
        "result_repr": "42",
        "error": None,
        "replayable": True,
        "compared": "value",
    }


def test_replay_prints_after_the_function_own_output(scratch):
    ok(scratch, "def noisy(x):\n    print('working...')\n    return x\n")
    probe = {"args_b64": "gASVCQAAAAAAAABLAYWUfZSGlC4=", "result_repr": "1", "result_b64": None}
    result = run(scratch, replay_code("noisy", probe))
    assert result.stdout.startswith("working...")
    assert parse_verdict(result.stdout)["compared"] == "repr"
    assert parse_verdict(result.stdout)["ok"] is True


# --------------------------------------------------------------------------- host-side helpers


def test_results_equal_numbers_containers_and_fallbacks():
    assert results_equal(5, 5.0)
    assert results_equal(0.1 + 0.2, 0.3)
    assert results_equal(1e20, 1e20 * (1 + 1e-12))
    assert not results_equal(1.0, 1.0001)
    assert results_equal(float("nan"), math.nan)
    assert not results_equal(float("nan"), 0.0)
    assert results_equal(10**40, 10**40) and not results_equal(10**40, 10**40 + 1)
    assert results_equal({"a": [1, 2.0], "b": (3,)}, {"b": (3.0,), "a": [1.0, 2]})
    assert not results_equal({"a": 1}, {"a": 1, "b": 2})
    assert not results_equal([1, 2], (1, 2))
    assert results_equal("x", "x") and not results_equal("x", "y")
    assert results_equal({1, 2}, {2, 1})

    class NoEq:
        def __repr__(self):
            return "NoEq()"

    assert results_equal(NoEq(), NoEq())  # no __eq__: compared by repr


def test_results_equal_numpy_and_pandas():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    assert results_equal(np.array([1.0, np.nan]), np.array([1.0, np.nan]))
    assert not results_equal(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert not results_equal(np.array([1, 2]), np.array([1, 2, 3]))
    assert results_equal(np.array(["a", "b"]), np.array(["a", "b"]))
    assert results_equal(np.float64(2.5), 2.5) and results_equal(np.int64(3), 3)
    frame = pd.DataFrame({"x": [1.0, np.nan]})
    assert results_equal(frame, frame.copy())
    assert not results_equal(frame, frame.assign(x=[1.0, 2.0]))
    assert not results_equal(frame["x"], frame)
    assert results_equal([frame, 1], [frame.copy(), 1.0])


def test_short_repr_bounds_size_and_never_raises():
    assert short_repr(7) == "7" and short_repr("a") == "'a'"
    assert len(short_repr(list(range(100_000)))) < 1000
    assert len(short_repr("x" * 100_000)) < 1000

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert short_repr(Broken()).startswith("<Broken ")


def test_parse_fetched_needs_the_marker_line():
    text = f'noise\n{PROBES_MARKER} {{"probes": {{"f": []}}, "calls": {{}}}}\n'
    assert parse_fetched(text) == ({"f": []}, {})
    with pytest.raises(ValueError):
        parse_fetched("nothing here")
    with pytest.raises(ValueError):
        parse_verdict("")


def test_probes_come_back_with_the_cells_own_reply(tmp_path):
    """One round trip per successful step: the probes ride in the execute_reply; a failed cell
    (IPython skips user_expressions then) costs one fetch cell more, and its calls still count."""
    from dynagraph.tools.kernel import KernelSession
    from dynagraph.tools.kernel.probes import execute_with_probes, fetch_probes

    with KernelSession(tmp_path, bootstrap=BOOTSTRAP) as session:
        sent: list[str] = []
        execute = session.execute

        def spy(code, *args, **kwargs):
            sent.append(code)
            return execute(code, *args, **kwargs)

        session.execute = spy  # type: ignore[method-assign]
        cell = "def h(x):\n    return x * 3\nh(2)"
        result, (recorded, calls) = execute_with_probes(session, cell, 10)
        assert sent == [cell] and result.result == "6"
        assert recorded["h"][0]["result_repr"] == "6" and calls["h"]["calls"] == 1
        assert result.user_expressions == {}  # the probe data is not left in the result
        failed, (recorded, calls) = execute_with_probes(session, "h(5)\n1/0", 10)
        assert failed.status == "error" and len(sent) == 3 and sent[2] == FETCH_CODE
        assert calls == {"h": {"calls": 1, "errors": 0}}
        assert recorded["h"][0]["args_repr"] == "(5,)"
        assert fetch_probes(session) == ({}, {})  # every fetch clears the store
