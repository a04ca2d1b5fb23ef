"""The whole graph in-process: real ChatOpenAI against the loopback stub, a real kernel, a real
SQLite library with real embeddings. Only the models' replies are scripted."""

from __future__ import annotations

import json

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.services import Services
from dynagraph.nodes.context import Context

from tests.support.config import coder_cell, planner_answer, planner_step

pytestmark = pytest.mark.timeout(180)

MULTIPLY_CELL = '''
def multiply_numbers(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b

product = multiply_numbers(17, 23)
print(product)
'''


def test_task_end_to_end_creates_function(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Multiply 17 by 23."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    settings = settings_for()
    events = []
    result = run_task("What is 17 times 23?", settings, on_event=events.append)

    assert result.status == "done", result.error
    assert result.answer == "391"
    assert len(result.steps) == 1
    assert result.steps[0]["status"] == "ok"
    assert "391" in result.steps[0]["observation"]
    assert result.functions_created == ["multiply_numbers"]
    assert {"planner", "coder"} <= set(result.usage)
    assert result.usage["planner"]["calls"] == 2
    assert result.usage["coder"]["input_tokens"] > 0
    assert [e["node"] for e in events][:3] == ["planner", "coder", "executor"]

    services = Services(settings)
    try:
        record = services.library.get_by_name("multiply_numbers")
        assert record is not None
        assert record.origin_task == "What is 17 times 23?"
        assert record.probes and record.probes[0]["result_repr"] == "391"
        # the planner saw the observation of the cell
        last_planner = stub.requests_for("planner")[-1]
        assert "391" in json.dumps(last_planner["messages"])
    finally:
        services.close()


def test_the_nodes_run_in_the_callers_thread_and_call_its_listener_there(
    stub_env, settings_for, monkeypatch
):
    """run_task streams no ``custom`` events, so LangGraph runs each step's node in the
    caller's thread instead of handing it to a worker (0.2 ms a hop, and Ctrl-C reaches a
    running cell; bench/README.md 13g); ``on_event`` is called from the nodes, in that thread."""
    import threading

    from dynagraph.nodes.coder import CoderNode

    threads: list[threading.Thread] = []
    coder_call = CoderNode.__call__

    def spy(self, state, runtime, config):
        threads.append(threading.current_thread())
        return coder_call(self, state, runtime, config)

    monkeypatch.setattr(CoderNode, "__call__", spy)
    stub = stub_env["stub"]
    for _ in range(2):
        stub.script("planner", [planner_step("Multiply 17 by 23."), planner_answer("391")])
        stub.script("coder", [coder_cell("print(17 * 23)")])
    settings = settings_for()
    quiet = run_task("What is 17 times 23?", settings)
    assert (quiet.status, quiet.answer) == ("done", "391")
    heard: list[tuple[str, threading.Thread]] = []
    told = run_task(
        "What is 17 times 23?",
        settings,
        on_event=lambda event: heard.append((event["node"], threading.current_thread())),
    )
    assert (told.status, told.answer) == ("done", "391")
    assert threads == [threading.current_thread()] * 2
    assert [node for node, _ in heard] == ["planner", "coder", "executor", "planner", "librarian"]
    assert {thread for _, thread in heard} == {threading.current_thread()}


def test_failed_cell_goes_back_to_coder_with_traceback(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Compute the ratio."), planner_answer("0.5")])
    stub.script(
        "coder",
        [coder_cell("x = 1 / 0"), coder_cell("x = 1 / 2\nprint(x)")],
    )
    result = run_task("half of one", settings_for())
    assert result.status == "done"
    assert result.steps[0]["status"] == "ok"
    assert result.steps[0]["attempts"] == 2
    retry_request = stub.requests_for("coder")[1]
    text = json.dumps(retry_request["messages"])
    assert "ZeroDivisionError" in text
    assert "x = 1 / 0" in text


def test_cell_failing_every_retry_reaches_planner_as_error(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Divide."), planner_answer("cannot")])
    stub.script("coder", [coder_cell("1 / 0")] * 3)
    result = run_task("divide by zero", settings_for(agent={"max_code_retries": 2}))
    assert result.steps[0]["status"] == "error"
    assert result.steps[0]["attempts"] == 3
    assert result.functions_created == []
    assert "ZeroDivisionError" in json.dumps(stub.requests_for("planner")[-1]["messages"])


def test_malformed_reply_is_retried_with_the_parse_error(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script(
        "planner",
        ["I think we should multiply.", planner_step("Print 2."), planner_answer("2")],
    )
    stub.script("coder", ["no code here, sorry", coder_cell("print(2)")])
    result = run_task("print two", settings_for())
    assert result.status == "done"
    assert result.answer == "2"
    planner_retry = json.dumps(stub.requests_for("planner")[1]["messages"])
    assert "could not be used" in planner_retry and "JSON" in planner_retry
    coder_retry = json.dumps(stub.requests_for("coder")[1]["messages"])
    assert "```python" in coder_retry and "could not be used" in coder_retry


def test_malformed_replies_exhaust_retries_and_fail_clearly(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script("planner", ["nope"] * 3)
    result = run_task("anything", settings_for(agent={"max_parse_retries": 2}))
    assert result.status == "failed"
    assert "planner model broke its reply protocol 3 times" in result.error
    assert result.answer is None


def test_step_limit_forces_the_planner_to_answer(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script(
        "planner",
        [planner_step("Print 1."), planner_step("Print 2 again."), planner_answer("1")],
    )
    stub.script("coder", [coder_cell("print(1)")])
    result = run_task("count", settings_for(agent={"max_steps": 1}))
    assert result.status == "done"
    assert len(result.steps) == 1
    retry = json.dumps(stub.requests_for("planner")[-1]["messages"])
    assert "step limit is reached" in retry


def test_models_swapped_by_config_and_by_context(stub_env, settings_for):
    stub = stub_env["stub"]
    settings = settings_for(
        models={
            "default": {
                "model": "stub-default",
                "base_url": stub_env["base_url"],
                "api_key_env": "OPENAI_API_KEY",
                "max_retries": 0,
            },
            "coder": {"model": "coder-from-config"},
        }
    )
    stub.script("planner", [planner_step("Print 3."), planner_answer("3")])
    stub.script("coder", [coder_cell("print(3)")])
    run_task("three", settings)
    assert set(stub.models_seen("planner")) == {"stub-default"}
    assert stub.models_seen("coder") == ["coder-from-config"]

    stub.script("planner", [planner_step("Print 4."), planner_answer("4")])
    stub.script("coder", [coder_cell("print(4)")])
    run_task("four", settings, context=Context(planner_model="planner-from-context"))
    assert stub.models_seen("planner")[-2:] == ["planner-from-context"] * 2
    assert stub.models_seen("coder")[-1] == "coder-from-config"


def test_exact_duplicate_counts_a_use_instead_of_adding(stub_env, settings_for):
    stub = stub_env["stub"]
    settings = settings_for()
    for _ in range(2):
        stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
        # reformatted + renamed locals: the same normalized function
        stub.script("coder", [coder_cell(MULTIPLY_CELL)])
        result = run_task("What is 17 times 23?", settings, context=Context(use_library=False))
        assert result.report == [
            {"name": "multiply_numbers", "action": "skipped", "reason": "library off for this run"}
        ]
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    first = run_task("What is 17 times 23?", settings)
    assert [d["action"] for d in first.report] == ["added"]
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script(
        "coder", [coder_cell(MULTIPLY_CELL.replace("return a * b", "return (a) * (b)  # same"))]
    )
    second = run_task("What is 17 times 23?", settings)
    assert [d["action"] for d in second.report] == ["duplicate"]
    services = Services(settings)
    try:
        assert services.library.stats()["functions"] == 1
    finally:
        services.close()


def test_redefining_a_library_name_is_not_counted_as_reuse(stub_env, settings_for):
    """A cell that defines its own multiply_numbers calls its own, not the library's."""
    stub = stub_env["stub"]
    settings = settings_for()
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    assert run_task("What is 17 times 23?", settings).functions_created == ["multiply_numbers"]
    redefined = MULTIPLY_CELL.replace("return a * b", "return b * a")
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(redefined)])
    second = run_task("What is 17 times 23 again?", settings)
    assert second.steps[0]["retrieved"] == ["multiply_numbers"]  # the library was searched
    assert second.functions_reused == []
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell("print(multiply_numbers(17, 23))")])
    third = run_task("What is 17 times 23, reusing?", settings)
    assert third.functions_reused == ["multiply_numbers"]


@pytest.mark.parametrize("value", [5, ["a task"], "  ", None], ids=["int", "list", "blank", "none"])
def test_an_input_without_a_task_as_text_is_one_clear_error_and_starts_nothing(
    stub_env, settings_for, value
):
    """What a LangGraph server (Studio) passes on is any JSON: the planner refuses an input
    whose task is not text before a kernel starts or a model is asked, with an InputError."""
    from dynagraph.graphs.graph import build_graph
    from dynagraph.tools.errors import InputError

    graph = build_graph(settings_for())
    try:
        inputs = {} if value is None else {"task": value}
        with pytest.raises(InputError, match='the input needs "task", the task as text'):
            graph.invoke(inputs, {"configurable": {"thread_id": "bad-input"}})
        assert graph.services.kernels.peek("bad-input") is None
        assert not stub_env["stub"].requests
    finally:
        graph.services.close()


def test_a_run_that_fails_under_a_server_frees_its_kernel(stub_env, settings_for):
    """The graph as a LangGraph server runs it (graph.invoke, no run_task around it): the
    planner starts the task's kernel ahead, then the coder's endpoint fails. The kernel was
    kept until the server stopped (an attack); the failing node now frees it."""
    from dynagraph.graphs.graph import build_graph
    from dynagraph.tools.models import ModelEndpointError

    stub_env["stub"].script("planner", [planner_step("Multiply 17 by 23.")])  # no coder reply
    graph = build_graph(settings_for())
    try:
        with pytest.raises(ModelEndpointError):
            graph.invoke({"task": "What is 17 * 23?"}, {"configurable": {"thread_id": "t-err"}})
        assert graph.services.kernels.peek("t-err") is None  # released (and reaped)
    finally:
        graph.services.close()


def test_a_langgraph_server_shows_a_dynagraph_errors_line():
    """What a LangGraph server (Studio) sends for a run's error: the error's own line, not "An
    internal error occurred" (it passes messages on for a few types only; an attack)."""
    serde = pytest.importorskip("langgraph_api.serde", reason="langgraph-cli[inmem] absent")
    from dynagraph.tools.errors import ConfigError, InputError
    from dynagraph.tools.models import ModelEndpointError

    for error in (ModelEndpointError("the coder model m answered HTTP 500"),
                  ConfigError("set OPENAI_API_KEY"), InputError("the task is empty")):  # fmt: skip
        shown = serde.default(error)
        assert shown == {"error": type(error).__name__, "message": str(error)}, shown
