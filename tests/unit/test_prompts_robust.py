"""Bounded prompts and honest history, through the whole graph in-process (real ChatOpenAI
against the loopback stub, a real kernel, a real SQLite library).

- a 200 KB cell with a 200 KB output is not resent in full in later prompts;
- a re-ask quotes only a few hundred characters of the bad reply, and every call's tokens are
  counted, the failed ones too;
- a kernel restart on a retry is recorded on the step and told to the planner and the coder.
"""

from __future__ import annotations

import json

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.settings import load_settings
from dynagraph.nodes.history import RESTART_NOTE
from dynagraph.nodes.protocol import REASK_QUOTE_CHARS

from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

pytestmark = pytest.mark.timeout(240)

#: The planner's whole prompt (system + user) at step 10 must stay under this many characters.
PLANNER_PROMPT_LIMIT = 48_000
BIG = 200_000


def _settings(stub_env, tmp_path, **sections):
    path = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"], **sections
    )
    return load_settings(path)


def _prompt_chars(request: dict) -> int:
    return sum(len(json.dumps(m.get("content"))) for m in request["messages"])


def _big_cell(i: int) -> str:
    pad = "z" * BIG
    return f'PAD_{i} = "{pad}"\nprint("{i}" * {BIG})'


def test_planner_prompt_of_step_10_stays_bounded_with_200kb_cells(stub_env, tmp_path):
    stub = stub_env["stub"]
    steps = 10
    stub.script("planner", [planner_step(f"Step {i}.") for i in range(1, steps + 1)])
    stub.script("planner", [planner_answer("done")])
    stub.script("coder", [coder_cell(_big_cell(i)) for i in range(1, steps + 1)])
    settings = _settings(stub_env, tmp_path, agent={"max_steps": steps, "max_code_retries": 0})
    result = run_task("print big things ten times", settings)
    assert result.status == "done", result.error
    assert len(result.steps) == steps
    assert all(s["status"] == "ok" for s in result.steps)

    planner = stub.requests_for("planner")
    assert len(planner) == steps + 1
    step_10 = planner[9]  # the planner's request after 9 executed 200 KB steps
    assert "Step 9:" in json.dumps(step_10["messages"])
    sizes = [_prompt_chars(r) for r in planner]
    assert max(sizes) < PLANNER_PROMPT_LIMIT, sizes
    coder_sizes = [_prompt_chars(r) for r in stub.requests_for("coder")]
    assert max(coder_sizes) < PLANNER_PROMPT_LIMIT, coder_sizes


def test_reask_quotes_little_of_a_huge_bad_reply_and_counts_every_call(stub_env, tmp_path):
    stub = stub_env["stub"]
    bad = "not json at all " * (BIG // 16)
    stub.script("planner", [bad, bad, bad])  # 1 ask + 2 re-asks (max_parse_retries: 2)
    result = run_task("anything", _settings(stub_env, tmp_path))
    assert result.status == "failed"
    assert "broke its reply protocol 3 times" in (result.error or "")
    assert len(result.error) < 600

    requests = stub.requests_for("planner")
    assert len(requests) == 3
    first, *reasks = (_prompt_chars(r) for r in requests)
    for size in reasks:  # the original prompt, a clipped quote and the error: not 200 KB more
        assert size < first + REASK_QUOTE_CHARS + 1_000, (first, reasks)
    # the failed calls' tokens are in usage
    usage = result.usage.get("planner") or {}
    assert usage.get("calls") == 3, result.usage
    assert usage.get("output_tokens", 0) >= 3 * len(bad.split())


def test_restart_on_a_retry_is_recorded_and_told(stub_env, tmp_path):
    stub = stub_env["stub"]
    stub.script(
        "planner",
        [
            planner_step("Set x to 41."),
            planner_step("Print x + 1."),
            planner_step("Check x."),
            planner_answer("42"),
        ],
    )
    stub.script(
        "coder",
        [
            coder_cell("x = 41\nprint(x)"),
            coder_cell("import os\nos._exit(3)"),  # the kernel dies: restarted, x is gone
            coder_cell("print('after the restart')"),  # the retry succeeds in the new kernel
            coder_cell("print('x' in globals())"),
        ],
    )
    result = run_task("x plus one", _settings(stub_env, tmp_path))
    assert result.status == "done", result.error
    first, second, third = result.steps
    assert second["status"] == "ok" and second["attempts"] == 2
    assert second["restarted"] is True  # the retry succeeded, yet the step lost its variables
    assert first["restarted"] is False and third["restarted"] is False
    assert "False" in third["observation"]

    planner = stub.requests_for("planner")
    told = json.dumps(planner[2]["messages"])  # the planner deciding after step 2
    assert RESTART_NOTE in told
    assert RESTART_NOTE not in json.dumps(planner[1]["messages"])
    coder = stub.requests_for("coder")
    assert RESTART_NOTE in json.dumps(coder[2]["messages"])  # the retry of step 2
    assert RESTART_NOTE in json.dumps(coder[3]["messages"])  # step 3 sees the history
