"""The librarian inside the whole graph: real ChatOpenAI against the loopback stub (planner, coder
and librarian replies scripted), real task and scratch kernels, a real SQLite library with real
embeddings."""

from __future__ import annotations

import json
import time

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings

from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.librarian import count_scratch_starts

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def settings(stub_env, tmp_path):
    path = write_stub_config(
        tmp_path / "config.yaml",
        stub_env["base_url"],
        stub_env["home"],
        librarian={"near_threshold": 0.5},
    )
    return load_settings(path)


@pytest.fixture
def services(settings):
    """Services whose scratch kernels are counted."""
    svc = Services(settings)
    svc.scratch_started = 0
    make = svc.scratch_kernel

    def counting(workdir=None, **kwargs):
        svc.scratch_started += 1
        return make(workdir, **kwargs)

    svc.scratch_kernel = counting
    yield svc
    svc.close()


APPLES_CELL = """
def cost_of_6_apples():
    return 6 * 0.5

print(cost_of_6_apples())
"""
TOTAL_COST = (
    "def total_cost(quantity: float = 6, unit_price: float = 0.5) -> float:\n"
    '    """Total cost of a quantity of items at a unit price."""\n'
    "    return quantity * unit_price\n"
)


def test_a_specific_function_is_generalized_verified_and_reported(stub_env, services):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Compute the cost."), planner_answer("3.0")])
    stub.script("coder", [coder_cell(APPLES_CELL)])
    stub.script("librarian", [json.dumps({"name": "total_cost", "code": TOTAL_COST})])
    task = "Apples cost 0.5 each. What do 6 apples cost?"
    result = run_task(task, services=services)

    assert result.status == "done", result.error
    assert [(d["name"], d["action"], d["stage"]) for d in result.report] == [
        ("cost_of_6_apples", "generalized", "generalize"),
        ("total_cost", "added", "add"),
    ]
    assert "takes no parameters" in result.report[0]["reason"]
    assert "reproduces 1/1 probes" in result.report[0]["reason"]
    assert result.functions_created == ["total_cost"]
    assert result.usage["librarian"]["calls"] == 1
    assert services.scratch_started == 1
    library = services.library
    record = library.get_by_name("total_cost")
    assert record.origin_task == task and record.origin_thread == result.thread_id
    assert record.origin_model == "stub-default" and record.last_used_task == 1
    assert "generalized" in record.tags and record.aliases == ["cost_of_6_apples"]
    log = library.decision_log()
    assert [(e["name"], e["action"]) for e in log] == [
        ("cost_of_6_apples", "generalized"),
        ("total_cost", "added"),
    ]
    assert log[0]["task_index"] == 1 and log[0]["thread"] == result.thread_id
    prompt = stub.requests_for("librarian")[0]["messages"]
    assert prompt[0]["content"].startswith("You are the librarian of dynagraph")
    assert "def cost_of_6_apples" in prompt[1]["content"]


VAT_CELL = '''
def add_vat(price: float) -> float:
    """Price with 20% VAT added."""
    return round(price * 1.2, 2)

print(add_vat(100))
'''
TAX_CELL = '''
def add_tax(price: float, rate: float = 0.2) -> float:
    """Price with a tax rate added (20% unless given)."""
    return round(price * (1 + rate), 2)

print(add_tax(50, rate=0.1))
'''


def test_a_generalization_supersedes_across_tasks_and_the_old_name_stays_callable(
    stub_env, services
):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Add VAT to 100."), planner_answer("120.0")])
    stub.script("coder", [coder_cell(VAT_CELL)])
    first = run_task("What is 100 with VAT?", services=services)
    assert [d["action"] for d in first.report] == ["added"]

    stub.script("planner", [planner_step("Add a 10% tax to 50."), planner_answer("55.0")])
    stub.script("coder", [coder_cell(TAX_CELL)])
    second = run_task("What is 50 with a 10% tax?", services=services)
    [decision] = second.report
    assert (decision["action"], decision["stage"], decision["target"]) == (
        "supersedes",
        "near",
        "add_vat",
    )
    assert "generalizes it" in decision["reason"]

    # A later task calls the old name: the executor defines add_tax, which binds add_vat too.
    stub.script("planner", [planner_step("Add VAT to 10."), planner_answer("12.0")])
    stub.script("coder", [coder_cell("print(add_vat(10))")])
    third = run_task("Add VAT to a price of 10.", services=services)
    assert third.steps[0]["status"] == "ok", third.steps[0]["observation"]
    assert "12.0" in third.steps[0]["observation"]
    assert third.functions_reused == ["add_tax"]
    assert third.report == []
    library = services.library
    assert library.get_by_name("add_tax").last_used_task == 3
    assert library.task_index() == 3
    assert services.scratch_started == 2  # the third task had no candidate: no scratch kernel


MULTIPLY_CELL = '''
def multiply_numbers(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b

print(multiply_numbers(17, 23))
'''


def test_an_exact_duplicate_needs_no_scratch_kernel_and_a_broken_function_is_rejected(
    stub_env, services
):
    stub = stub_env["stub"]
    for _ in range(2):
        stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
        stub.script("coder", [coder_cell(MULTIPLY_CELL)])
        result = run_task("What is 17 times 23?", services=services)
    assert [(d["action"], d["stage"]) for d in result.report] == [("duplicate", "exact_hash")]
    assert services.scratch_started == 1

    # a function reading a global the cell rebinds after calling it: the stored function
    # (defined with the cell's bindings of RATE) computes something else than the call did
    drifting = "RATE = 2\n\ndef scaled(x: float) -> float:\n    return x * RATE\n\nprint(scaled(5))\nRATE = 3\nprint(scaled(5))\n"
    stub.script("planner", [planner_step("Scale 5."), planner_answer("15")])
    stub.script("coder", [coder_cell(drifting)])
    result = run_task("Scale five.", services=services)
    [decision] = result.report
    assert (decision["name"], decision["action"], decision["stage"]) == (
        "scaled",
        "rejected",
        "verify",
    )
    assert "scaled(5) gave 15, recorded 10" in decision["reason"]
    assert services.library.get_by_name("scaled") is None


def test_the_tasks_part_of_the_first_query_is_embedded_while_the_planner_thinks(stub_env, services):
    """library.query_embedding: parted (the default): the planner's first turn has the task's
    part of the coder's query embedded in the background, so the first step's search embeds
    only its instruction. The stub holds the planner's first reply until the task's vector is
    there (or 20 s pass: the assertion then fails)."""
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    run_task("What is 17 times 23?", services=services)  # one function: searches now embed

    embedder = services.embedder
    queries: list[str] = []
    real_query = embedder._embed_query
    embedder._embed_query = lambda text: (queries.append(text), real_query(text))[1]
    task = "Prices are in euros. What is 100 with VAT?"
    seen_while_out: list[bool] = []

    def first_reply(request: dict) -> str:
        deadline = time.monotonic() + 20
        while task not in queries and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_while_out.append(task in queries)
        return planner_step("Add VAT to 100.")

    stub.script("planner", [first_reply, planner_answer("120.0")])
    stub.script("coder", [coder_cell(VAT_CELL)])
    result = run_task(task, services=services)
    assert result.status == "done", result.error
    assert seen_while_out == [True]
    assert queries.count(task) == 1 and "Add VAT to 100." in queries  # each part once


def test_candidates_are_embedded_ahead_once_and_the_scratch_kernel_is_kept(
    stub_env, services, monkeypatch
):
    """The executor sends the functions a cell defines to be embedded before the cell runs; the
    librarian's neighbour search and write find the vectors, so no text is embedded twice. The
    scratch kernel of the first task serves the second."""
    from dynagraph.tools.kernel import probes

    events: list[str] = []
    real_execute = probes.execute_with_probes

    def executing(session, code, *args, **kwargs):
        events.append(f"cell: {code.strip()}")
        return real_execute(session, code, *args, **kwargs)

    monkeypatch.setattr(probes, "execute_with_probes", executing)
    embedder = services.embedder
    embedded: list[str] = []
    real_embed = embedder._embed_passages

    def recording(texts):
        embedded.extend(texts)
        return real_embed(texts)

    embedder._embed_passages = recording
    sent_ahead: list[str] = []
    real_ahead = services.embed_ahead

    def ahead(texts):
        events.extend(f"ahead: {t}" for t in texts)
        sent_ahead.extend(texts)
        real_ahead(texts)

    services.embed_ahead = ahead
    started = count_scratch_starts(services)

    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    first = run_task("What is 17 times 23?", services=services)
    assert [d["action"] for d in first.report] == ["added"], first.report
    record = services.library.get_by_name("multiply_numbers")
    assert {record.doc_view(), record.task_view()} <= set(sent_ahead)
    assert {record.doc_view(), record.task_view()} <= set(embedded)
    assert len(embedded) == len(set(embedded)), embedded  # each text once
    # the doc view and the task were sent to be embedded before the cell ran
    ahead = [f"ahead: {record.doc_view()}", f"ahead: {record.task_view()}"]
    assert events[:3] == [*ahead, f"cell: {MULTIPLY_CELL.strip()}"], events

    stub.script("planner", [planner_step("Add VAT to 100."), planner_answer("120.0")])
    stub.script("coder", [coder_cell(VAT_CELL)])
    second = run_task("What is 100 with VAT?", services=services)
    assert [d["action"] for d in second.report] == ["added"], second.report
    assert len(started) == 1  # one scratch kernel for both tasks
