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


def test_a_name_imported_only_by_a_library_hit_is_stored_with_its_import(stub_env, tmp_path):
    stub = stub_env["stub"]
    path = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    settings = load_settings(path)
    stub.script("planner", [planner_step("Write 0.75 as a fraction."), planner_answer("3/4")])
    stub.script("coder", [coder_cell(FRACTION_CELL)])
    first = run_task("Write 0.75 as a fraction.", settings)
    assert first.functions_created == ["as_fraction"], first.report

    stub.script("planner", [planner_step("Halve 0.75 as a fraction."), planner_answer("3/8")])
    stub.script("coder", [coder_cell(HALF_CELL)])
    second = run_task("What is half of 0.75, as a fraction?", settings)
    assert second.steps[0]["retrieved"] == ["as_fraction"]
    assert second.steps[0]["status"] == "ok" and "3/8" in second.steps[0]["observation"]
    decision = [d for d in second.report if d["name"] == "half_as_fraction"][-1]
    assert decision["action"] == "added", decision
    assert "reproduces 1/1 probes" in decision["reason"]  # verified in the scratch kernel

    services = Services(settings)
    try:
        record = services.library.get_by_name("half_as_fraction")
        assert record.imports == ["from fractions import Fraction"]
        assert "unverified" not in record.tags and record.depends_on == []
        source = record.kernel_source()
    finally:
        services.close()
    fresh = KernelSession(tmp_path / "fresh")
    fresh.start()
    try:  # alone in a fresh kernel: nothing else defined
        result = fresh.execute(source + "\nprint(half_as_fraction('0.75'))\n", timeout=30)
        assert result.ok() and result.stdout.strip() == "3/8", result.to_observation()
    finally:
        fresh.shutdown()


BOX_CELL = '''
class Box:
    def __init__(self, w, h):
        self.w, self.h = w, h

def box_area(box: Box) -> float:
    """Area of a box."""
    return box.w * box.h

print(box_area(Box(3, 4)))
'''
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
    stub = stub_env["stub"]
    path = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    settings = load_settings(path)
    stub.script("planner", [planner_step("Area of a 3 by 4 box."), planner_answer("12")])
    stub.script("coder", [coder_cell(BOX_CELL)])
    first = run_task("What is the area of a 3 by 4 box?", settings)
    assert first.functions_created == ["box_area"], first.report

    stub.script("planner", [planner_step("Total area of boxes."), planner_answer("14")])
    stub.script("coder", [coder_cell(BOXES_CELL)])
    second = run_task("What is the total area of a 3 by 4 box and a 1 by 2 box?", settings)
    assert second.steps[0]["retrieved"] == ["box_area"]
    assert second.steps[0]["status"] == "ok" and "14" in second.steps[0]["observation"]
    decision = [d for d in second.report if d["name"] == "total_box_area"][-1]
    assert decision["action"] == "added", decision
    assert "reproduces 1/1 probes" in decision["reason"]

    services = Services(settings)
    try:
        record = services.library.get_by_name("total_box_area")
        assert record.depends_on == ["box_area"]
        assert [g.split(":")[0] for g in record.globals] == ["class Box"]
    finally:
        services.close()
