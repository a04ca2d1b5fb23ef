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
