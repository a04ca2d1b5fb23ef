"""No hidden dependencies (issue 15, item 2): a cell may use a name that only a retrieved library
function imported (the hits are defined at the kernel's top level, imports included); the
function the cell defines is stored with that import and verifies in a fresh kernel."""

from __future__ import annotations

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings
from dynagraph.tools.kernel import KernelSession

from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.librarian import BOX

pytestmark = pytest.mark.timeout(240)

FRACTION_CELL = '''
from fractions import Fraction

def as_fraction(text: str) -> str:
    """A decimal written as an exact fraction."""
    return str(Fraction(text).limit_denominator())

print(as_fraction("0.75"))
'''
# No import: `Fraction` is in the kernel only because the retrieved as_fraction imported it.
HALF_CELL = '''
def half_as_fraction(text: str) -> str:
    """Half of a decimal, as an exact fraction."""
    return str(Fraction(text) / 2)

print(half_as_fraction("0.75"))
'''


def two_tasks(stub_env, tmp_path, first: tuple[str, str, str], second: tuple[str, str, str]):
    """Run a task that stores a function, then one whose cell uses it: each ``(task, cell,
    answer)`` with a one-step plan. The second task's new function must retrieve the first,
    run, and be admitted as verified in the scratch kernel; returns its stored record."""
    stub = stub_env["stub"]
    path = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    settings = load_settings(path)
    results = []
    for task, cell, answer in (first, second):
        stub.script("planner", [planner_step(task), planner_answer(answer)])
        stub.script("coder", [coder_cell(cell)])
        results.append(run_task(task, settings))
    [stored] = results[0].functions_created
    step = results[1].steps[0]
    assert step["retrieved"] == [stored]
    assert step["status"] == "ok" and second[2] in step["observation"]
    [name] = [d["name"] for d in results[1].report if d["name"] != stored]
    decision = [d for d in results[1].report if d["name"] == name][-1]
    assert decision["action"] == "added", decision
    assert "reproduces 1/1 probes" in decision["reason"]  # verified in the scratch kernel
    services = Services(settings)
    try:
        return services.library.get_by_name(name)
    finally:
        services.close()


def test_a_name_imported_only_by_a_library_hit_is_stored_with_its_import(stub_env, tmp_path):
    record = two_tasks(
        stub_env,
        tmp_path,
        ("Write 0.75 as a fraction.", FRACTION_CELL, "3/4"),
        ("What is half of 0.75, as a fraction?", HALF_CELL, "3/8"),
    )
    assert record.name == "half_as_fraction"
    assert record.imports == ["from fractions import Fraction"]
    assert "unverified" not in record.tags and record.depends_on == []
    source = record.kernel_source()
    fresh = KernelSession(tmp_path / "fresh")
    fresh.start()
    try:  # alone in a fresh kernel: nothing else defined
        result = fresh.execute(source + "\nprint(half_as_fraction('0.75'))\n", timeout=30)
        assert result.ok() and result.stdout.strip() == "3/8", result.to_observation()
    finally:
        fresh.shutdown()


BOX_CELL = BOX + "\nprint(box_area(Box(3, 4)))\n"
# No class: `Box` is in the kernel only because the retrieved box_area's source defined it.
BOXES_CELL = '''
def total_box_area(sizes: list) -> float:
    """Total area of boxes given as (width, height) pairs."""
    return sum(box_area(Box(w, h)) for w, h in sizes)

print(total_box_area([(3, 4), (1, 2)]))
'''


def test_a_class_defined_only_by_a_library_hit_is_stored_with_the_function(stub_env, tmp_path):
    """A library function's class is offered to the cell (kernel_side/define.py), so a cell's
    function may build it: it is stored with its own copy of the class and calls the stored
    function, and it verifies in the scratch kernel, where each is defined on its own."""
    record = two_tasks(
        stub_env,
        tmp_path,
        ("What is the area of a 3 by 4 box?", BOX_CELL, "12"),
        ("What is the total area of a 3 by 4 box and a 1 by 2 box?", BOXES_CELL, "14"),
    )
    assert record.name == "total_box_area" and record.depends_on == ["box_area"]
    assert [g.split(":")[0] for g in record.globals] == ["class Box"]
