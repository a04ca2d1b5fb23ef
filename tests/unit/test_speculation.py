"""nodes/speculation.py: the registry of speculative coder calls (threads, no models)."""

from __future__ import annotations

import threading

from dynagraph.nodes.speculation import Speculations

from tests.support.waiting import wait_for

USAGE = {"calls": 1, "input_tokens": 10}


def cell(code: str) -> tuple[str, list, dict]:
    return code, [], dict(USAGE)


def test_a_cell_for_the_same_step_is_taken_once_and_waited_for():
    speculations = Speculations()
    release = threading.Event()

    def work():
        release.wait(10)
        return cell("x = 1")

    speculations.start("t", "1. Set x to 1", work)
    threading.Timer(0.05, release.set).start()
    assert speculations.take("t", "set x to 1.") == cell("x = 1")  # numbering, case aside
    assert speculations.take("t", "set x to 1.") is None  # taken: gone
    assert speculations.settle("t") == {}  # used: its usage is the coder's own


def test_another_step_drops_the_cell_and_settle_counts_it_once_ended():
    speculations = Speculations()
    release = threading.Event()
    speculations.start("t", "Set x to 1.", lambda: (release.wait(10), cell("x = 1"))[1])
    assert speculations.take("t", "Print y.") is None
    assert speculations.settle("t") == {}  # still out: counted later
    release.set()
    usage: dict = {}

    def counted() -> bool:  # settle gives a dropped call's usage once, when it has ended
        nonlocal usage
        usage = speculations.settle("t")
        return bool(usage)

    assert wait_for(counted)
    assert usage == USAGE
    assert speculations.settle("t") == {}  # counted once


def test_a_failed_call_counts_its_tokens_and_gives_no_cell():
    class Broken(Exception):
        usage = {"calls": 3}

    def work():
        raise Broken("the model broke its reply protocol")

    speculations = Speculations()
    speculations.start("t", "Set x to 1.", work)
    assert speculations.take("t", "Set x to 1.") is None
    assert speculations.settle("t") == {"calls": 3}


def test_close_counts_what_ended_and_forgets_the_rest_and_tasks_are_apart():
    speculations = Speculations()
    speculations.start("a", "Set x to 1.", lambda: cell("x = 1"))
    hold = threading.Event()
    speculations.start("b", "Set y to 2.", lambda: (hold.wait(10), cell("y = 2"))[1])
    assert wait_for(speculations._open["a"].done.is_set)  # a's call ends at once
    assert speculations.close("a") == USAGE
    assert speculations.close("b") == {}  # still out: forgotten, uncounted
    hold.set()
    assert speculations.settle("b") == {}
    assert speculations.take("a", "Set x to 1.") is None
