"""Probe replay in a real scratch kernel (tools/librarian/scratch.py).

Probes are recorded the way the agent records them: the function is defined in a kernel
bootstrapped with the probe recorder and called, and the recorded calls are fetched. One
scratch kernel serves the module, as one serves a librarian run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dynagraph.tools.kernel import KernelSession, probes
from dynagraph.tools.librarian.replay import shim_source
from dynagraph.tools.librarian.scratch import ScratchVerifier
from dynagraph.tools.librarian.signature import parameters

from tests.support.librarian import bootstrapped_kernel as bootstrapped
from tests.support.librarian import record_calls

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def verifier():
    v = ScratchVerifier(bootstrapped, probe_timeout=3.0)
    yield v
    v.close()


def recorded(verifier: ScratchVerifier, source: str, calls: str, name: str) -> list[dict]:
    """Define ``source``, run ``calls``, return the calls recorded to ``name``."""
    return record_calls(verifier, source, calls)[name]


SCALE = "import math\ndef scale(x, k=2):\n    return math.floor(x * k)\n"


class CountingFactory:
    """The kernel factory, counting the kernels it started and keeping the last one."""

    def __init__(self) -> None:
        self.sessions: list[KernelSession] = []

    def __call__(self, folder: Path, cwd: Path | None = None) -> KernelSession:
        self.sessions.append(bootstrapped(folder))
        return self.sessions[-1]


def test_kernel_starts_on_first_use_only():
    factory = CountingFactory()
    ScratchVerifier(factory).close()  # closing an unstarted verifier starts nothing
    assert factory.sessions == []


def test_same_function_reproduces_and_a_changed_one_does_not(verifier):
    calls = recorded(verifier, SCALE, "scale(3.5)\nscale(2, k=5)", "scale")
    assert len(calls) == 2
    same = verifier.check("scale", [SCALE], calls)
    assert same.status == "pass" and same.summary() == "reproduces 2/2 probes"
    changed = verifier.check("scale", [SCALE.replace("x * k", "x * k + 1")], calls)
    assert changed.status == "fail" and changed.failed == 2
    assert "gave 8, recorded 7" in changed.summary()  # scale(3.5): floor(7) + 1


def test_missing_import_does_not_define_and_a_lost_alias_fails(verifier):
    calls = recorded(verifier, SCALE, "scale(1.5)", "scale")
    broken = verifier.check("scale", ["import no_such_module_xyz\n" + SCALE], calls)
    assert broken.status == "undefinable" and "no_such_module_xyz" in broken.summary()
    # DynaSaur's bug: `import math as m` stored as `import math` -> NameError on the call
    lost = verifier.check(
        "scale", ["import math\ndef scale(x, k=2):\n    return m.floor(x * k)\n"], calls
    )
    assert lost.status == "fail" and "NameError" in lost.summary()


def test_recorded_exceptions_must_be_raised_again(verifier):
    source = "def ratio(a, b):\n    return a / b\n"
    calls = recorded(
        verifier, source, "try:\n    ratio(1, 0)\nexcept ZeroDivisionError:\n    pass", "ratio"
    )
    alike = verifier.check("ratio", [source], calls)
    # raising alike is a secondary check: it never verifies a function on its own
    assert alike.status == "untested" and alike.raised_agreed == 1 and alike.passed == 0
    assert "proves nothing" in alike.summary()
    safe = "def ratio(a, b):\n    return a / b if b else 0.0\n"
    report = verifier.check("ratio", [safe], calls)
    assert report.status == "fail" and "ZeroDivisionError" in report.summary()


def test_a_raising_call_agrees_only_on_type_and_message(verifier):
    source = "def use_x():\n    return x + 1\n"
    calls = recorded(verifier, source, "try:\n    use_x()\nexcept NameError:\n    pass", "use_x")
    other = "def use_x():\n    return y + 1\n"  # NameError too, about another name
    report = verifier.check("use_x", [other], calls)
    assert report.status == "untested" and report.raised_agreed == 0 and report.untestable == 1
    mixed = recorded(
        verifier,
        SCALE,
        "scale(2)\ntry:\n    scale('a', k=None)\nexcept TypeError:\n    pass",
        "scale",
    )
    both = verifier.check("scale", [SCALE], mixed)
    assert both.status == "pass" and (both.passed, both.raised_agreed) == (1, 1)


def test_a_replay_past_the_timeout_fails_and_the_kernel_goes_on(verifier):
    calls = recorded(verifier, "def wait(s):\n    return s\n", "wait(30)", "wait")
    slow = "import time\ndef wait(s):\n    time.sleep(s)\n    return s\n"
    report = verifier.check("wait", [slow], calls)
    assert report.status == "fail" and "timed out after 3 s" in report.summary()
    assert verifier.check("wait", ["def wait(s):\n    return s\n"], calls).status == "pass"


def test_unpicklable_arguments_leave_the_function_untested(verifier):
    source = "def first(items):\n    return next(iter(items))\n"
    calls = recorded(verifier, source, "first(x for x in [4, 5])", "first")  # a generator
    report = verifier.check("first", [source], calls)
    assert report.status == "untested" and report.untestable == 1
    assert "can be replayed" in report.summary()
    assert verifier.check("first", [source], []).summary() == "no recorded calls to replay"


def test_generalized_function_checked_through_a_shim_records_its_own_probes(verifier):
    specific = "def count_above_8(values):\n    return sum(v > 8 for v in values)\n"
    calls = recorded(verifier, specific, "count_above_8([3, 9, 12])", "count_above_8")
    general = "def count_above(values, threshold):\n    return sum(v > threshold for v in values)\n"
    shim = shim_source(parameters(specific).source, "count_above(values, threshold=8)")
    verifier.recorded_probes()
    report = verifier.check("count_above_8", [general], calls, shim=shim)
    assert report.status == "pass"
    assert report.outcomes[0].call.startswith("count_above_8(")
    mine = verifier.recorded_probes()["count_above"]
    assert mine[0]["kwargs_repr"] == "{'threshold': 8}" and mine[0]["result_repr"] == "2"
    wrong = shim_source(parameters(specific).source, "count_above(values, threshold=10)")
    assert verifier.check("count_above_8", [general], calls, shim=wrong).status == "fail"


def test_replays_run_in_the_given_working_directory(tmp_path):
    (tmp_path / "data.txt").write_text("41")
    source = "def read_number(path):\n    return int(open(path).read()) + 1\n"
    factory = CountingFactory()
    with ScratchVerifier(factory, cwd=tmp_path) as v:
        calls = recorded(v, source, "read_number('data.txt')", "read_number")
        assert v.check("read_number", [source], calls).status == "pass"
    [session] = factory.sessions  # one kernel for every check, shut down on leaving
    assert not session.is_alive()


def test_a_kernel_without_the_bootstrap_gets_the_compare_helpers_once(verifier):
    """Replays leave the compare helpers out of their cells (replay_code(installed=True)): the
    verifier installs them before its baseline, so a plain kernel works too, and the reset
    before each check, which deletes every name a check added, keeps them."""
    calls = recorded(verifier, SCALE, "scale(3.5)", "scale")
    plain = ScratchVerifier(lambda folder, cwd=None: KernelSession(folder), probe_timeout=3.0)
    try:
        for _ in range(2):  # the second check runs after a reset
            report = plain.check("scale", [SCALE], calls)
            assert report.status == "pass", report.outcomes
        session = plain.session()
        shown = session.execute("print('__dynagraph_replay__' in __dynagraph_baseline__)")
        assert shown.stdout.strip() == "True"
    finally:
        plain.close()


def test_definitions_run_as_few_cells_as_may_be():
    from dynagraph.tools.librarian.scratch import _joined_cells

    reset = "RESET()\n"
    future = "from __future__ import annotations\ndef f(x: X) -> X:\n    return x\n"
    indented = "    import math\n    def h():\n        return math.pi\n"
    assert _joined_cells([reset], ["A = 1", "", "def g():\n    return A\n", indented]) == [
        reset + "A = 1\ndef g():\n    return A\nimport math\ndef h():\n    return math.pi\n"
    ]
    assert _joined_cells([reset], ["A = 1", future, "B = 2\n"]) == [
        reset + "A = 1\n",
        future + "B = 2\n",
    ]
    assert _joined_cells([], ["%%capture\nimport math", "C = 3"]) == [
        "%%capture\nimport math\n",
        "C = 3\n",
    ]


def test_a_syntax_error_names_its_line_in_the_source_not_in_the_joined_cell(verifier):
    """The reset and the dependencies share the check's cell: the line a syntax error reports
    is counted in the source it is in, and the cell's file name is left out."""
    broken = "def f(x):\n    return x +\n"
    assert verifier.define([broken], reset=True) == "SyntaxError: invalid syntax (line 2)"
    tabs = "def h(x):\n\treturn x\n        return 2\n"
    error = verifier.define(["A = 1\nB = 2\n", "", tabs], reset=True)
    assert error == (
        "TabError: inconsistent use of tabs and spaces in indentation (line 3 of source 2 of 2)"
    )
    report = verifier.check("f", ["import math\n", broken], [])
    assert report.summary() == (
        "does not define in a fresh kernel: SyntaxError: invalid syntax (line 2 of source 2 of 2)"
    )


def test_a_definition_cell_s_own_report_of_a_failure_stops_the_check(verifier):
    """A function defined in a namespace of its own (tools/kernel/definitions.py, as the
    librarian defines candidates and stored functions) reports its error instead of raising
    it: the check still stops, with the error and its line in that function's source."""
    from dynagraph.tools.kernel.definitions import define_code

    good = define_code([("double", "def double(x):\n    return 2 * x\n", [])])
    broken = define_code([("half", "import math\ndef half(x):\n    return x /\n", [])])
    report = verifier.check("half", [good, broken], [])
    assert report.define_error == "SyntaxError: invalid syntax (line 3 of half)"
    missing = define_code([("f", "import no_such_module_here\ndef f():\n    pass\n", [])])
    assert verifier.define([missing], reset=True) == (
        "ModuleNotFoundError: No module named 'no_such_module_here'"
    )
    assert verifier.define([good], reset=True) is None


def test_a_checked_future_import_does_not_change_later_checks(verifier):
    """A ``__future__`` import sets the kernel's compiler flags, which outlive the names the
    reset clears: the reset restores them, so a later check compiles as a fresh kernel would."""
    future = "from __future__ import annotations\ndef f(x: int) -> int:\n    return x\n"
    assert verifier.check("f", [future], []).define_error is None
    assert verifier.check("g", ["def g(x: int) -> int:\n    return x\n"], []).define_error is None
    shown = verifier.session().execute("print(g.__annotations__['x'] is int)")
    assert shown.stdout == "True\n"


def test_a_check_resets_and_defines_in_one_round_trip_and_still_isolates(verifier, monkeypatch):
    """One cell for the reset and the definitions, one per probe; a name an earlier check
    defined is gone all the same, and a failing definition stops the check with its error."""
    calls = recorded(verifier, SCALE, "scale(3.5)", "scale")
    session = verifier.session()
    cells: list[str] = []
    real_execute = session.execute
    monkeypatch.setattr(
        session, "execute", lambda code, **kw: (cells.append(code), real_execute(code, **kw))[1]
    )
    assert verifier.check("scale", ["HELPER = 1\n", SCALE], calls).status == "pass"
    assert len(cells) == 2  # the reset and both definitions, then the one probe
    helper = "def scale(x, k=2):\n    return HELPER + __import__('math').floor(x * k) - 1\n"
    report = verifier.check("scale", [helper], calls)
    assert report.define_error is None and report.status == "fail"  # HELPER was reset away
    assert "HELPER" in (report.outcomes[0].error or ""), report.outcomes
    failing = verifier.check("scale", ["raise ValueError('broken helper')\n", SCALE], calls)
    assert failing.define_error == "ValueError: broken helper" and not failing.outcomes


def test_a_definition_that_breaks_the_reset_gets_a_new_kernel_not_a_shared_namespace(verifier):
    """A checked function's code that deletes the reset, or replaces it with one that clears
    nothing, is seen at the next check (the check's mark is still there): the kernel restarts,
    the check runs in it, and what that code left is gone."""
    calls = recorded(verifier, SCALE, "scale(3.5)", "scale")
    reads_leak = "def scale(x, k=2):\n    return LEAK + __import__('math').floor(x * k) - 1\n"
    own = ScratchVerifier(bootstrapped, probe_timeout=3.0)
    try:
        for sabotage in ("del __dynagraph_reset__\n", "__dynagraph_reset__ = lambda: None\n"):
            pid = own.session().pid
            for _ in range(2):  # the second runs in a new kernel, and leaves its mark there
                assert own.check("scale", [sabotage + "LEAK = 1\n" + SCALE], calls).status == "pass"
            report = own.check("scale", [reads_leak], calls)
            assert report.define_error is None and report.status == "fail", sabotage
            assert "LEAK" in (report.outcomes[0].error or "")  # gone with the old kernel
            assert own.session().pid != pid  # restarted
            assert own.check("scale", [SCALE], calls).status == "pass"  # and it goes on
    finally:
        own.close()


def test_an_async_function_is_recorded_and_replayed_with_top_level_await(verifier):
    """Its calls are recorded from a cell that awaits it, and its replay awaits it too: both
    need a kernel that answers a cell with a top-level ``await`` (they timed out before)."""
    source = "import asyncio\nasync def twice(x):\n    await asyncio.sleep(0)\n    return 2 * x\n"
    calls = recorded(verifier, source, "print(await twice(21))", "twice")
    assert len(calls) == 1 and calls[0].get("is_async")
    report = verifier.check("twice", [source], calls)
    assert report.status == "pass", report.outcomes
    changed = source.replace("2 * x", "3 * x")
    assert verifier.check("twice", [changed], calls).status == "fail"


def test_output_that_looks_like_the_reset_marker_restarts_nothing(verifier):
    calls = recorded(verifier, SCALE, "scale(3.5)", "scale")
    pid = verifier.session().pid
    noisy = "print('__DYNAGRAPH_RESET_FAILED__')\nraise ValueError('after printing')\n"
    report = verifier.check("scale", [noisy, SCALE], calls)
    assert report.define_error == "ValueError: after printing"
    assert verifier.session().pid == pid


def test_a_reset_that_fails_in_a_new_kernel_too_is_one_error_and_one_restart():
    """A kernel whose own bootstrap defeats the reset (a hook that puts the check's mark back
    before every cell): the check restarts the kernel once, then says why, and never loops."""
    sticky_mark = (
        "get_ipython().events.register('pre_execute', "
        "lambda: get_ipython().user_ns.__setitem__('__dynagraph_checked__', True))"
    )
    sessions: list[KernelSession] = []

    def factory(folder: Path, cwd: Path | None = None) -> KernelSession:
        session = KernelSession(folder, bootstrap=probes.BOOTSTRAP + "\n" + sticky_mark)
        session.start()
        sessions.append(session)
        return session

    own = ScratchVerifier(factory, probe_timeout=3.0)
    try:
        error = own.define(["x = 1\n"], reset=True)
        assert error == "KernelError: the scratch kernel's reset failed in a new kernel"
        assert len(sessions) == 1 and sessions[0].restarts == 1  # one restart, no loop
    finally:
        own.close()
