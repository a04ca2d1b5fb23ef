"""Output attribution against a real ipykernel: a thread's output belongs to the cell that
started it (or submitted its job), never to whatever cell runs when it prints.

A thread left running by an earlier cell is reported as background output in a note of the
cell during which it arrived, never in that cell's stdout, outputs or [output] section.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dynagraph.tools.kernel import KernelSession
from dynagraph.tools.kernel.cell import BACKGROUND_NOTE

pytestmark = pytest.mark.timeout(120)

TICKER = """
import threading, time
stop = threading.Event()
def tick():
    n = 0
    while not stop.is_set():
        print(f"tick {n}", flush=True)
        n += 1
        time.sleep(0.02)
ticker = threading.Thread(target=tick, daemon=True)
ticker.start()
time.sleep(0.1)
print("one")
"""


@pytest.fixture
def session(tmp_path) -> Iterator[KernelSession]:
    with KernelSession(tmp_path / "work", sandbox="none") as kernel:
        yield kernel


def _background_notes(result) -> list[str]:
    return [note for note in result.notes if note.startswith(BACKGROUND_NOTE)]


def test_a_thread_that_keeps_printing_is_not_credited_to_the_next_cell(session):
    first = session.execute(TICKER, timeout=30)
    assert first.ok(), first.to_observation()
    assert "tick 0" in first.stdout and "one" in first.stdout  # its own cell: its output

    second = session.execute("import time; time.sleep(0.5); print('two')", timeout=30)
    assert second.ok(), second.to_observation()
    assert second.stdout == "two\n"
    assert all("tick" not in text for _, text in second.outputs), second.outputs
    observation = second.to_observation()
    output_section = observation.split("[output]\n", 1)[1].split("[note]", 1)[0]
    assert "tick" not in output_section, observation
    notes = _background_notes(second)
    assert len(notes) == 1 and "tick" in notes[0], second.notes
    assert len(notes[0]) < 1000  # quoted briefly, however much the thread printed

    third = session.execute("stop.set(); ticker.join(); print('three')", timeout=30)
    assert third.ok() and third.stdout == "three\n", third.to_observation()


def test_a_thread_joined_by_its_cell_still_counts_as_that_cells_output(session):
    code = """
import threading
def work():
    print("from the thread", flush=True)
t = threading.Thread(target=work)
t.start(); t.join()
print("main")
"""
    result = session.execute(code, timeout=30)
    assert result.stdout == "from the thread\nmain\n", result.to_observation()
    assert not _background_notes(result)


def test_a_pool_job_belongs_to_the_cell_that_submitted_it(session):
    """Pool threads outlive cells: a job submitted by a later cell prints for that cell."""
    setup = """
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(2)
pool.submit(print, "warm-up").result()
"""
    first = session.execute(setup, timeout=30)
    assert first.stdout == "warm-up\n", first.to_observation()
    second = session.execute("pool.submit(print, 'job of cell two').result()", timeout=30)
    assert second.stdout == "job of cell two\n", second.to_observation()
    assert not _background_notes(second)
    session.execute("pool.shutdown()", timeout=30)


def test_attribution_survives_a_restart(session):
    session.restart()
    session.execute(TICKER, timeout=30)
    later = session.execute("import time; time.sleep(0.3); print('later')", timeout=30)
    assert later.stdout == "later\n", later.to_observation()
    assert _background_notes(later)
    session.execute("stop.set(); ticker.join()", timeout=30)
