"""bench/peers.py's stub-side figures: steps timed inside a task by the stub's clock, and step
instructions that never repeat across tasks (a query cache must not flatter dynagraph)."""

from __future__ import annotations

import json

import pytest

from bench import peers
from bench.peers_figures import in_task_step_ms
from bench.peers_model import Run, TaskStats, scripted_reply
from bench.peers_setup import write_dynagraph_config


def test_in_task_steps_skip_the_first_step_and_end_at_the_answer_request() -> None:
    # requests opening steps 1..4, then the one asking for the answer (seconds)
    task = {"stub_step_starts": [10.0, 10.5, 10.510, 10.530, 10.560]}
    assert [round(ms, 3) for ms in in_task_step_ms(task)] == [10.0, 20.0, 30.0]
    assert in_task_step_ms({"stub_step_starts": [1.0, 2.0]}) == []


def test_dynagraph_step_instructions_differ_between_tasks() -> None:
    run = Run("dynagraph")
    planner_body = {"messages": [{"role": "system", "content": "You are the planner"}]}
    steps = []
    for index in (1, 2):
        run.task, run.served = index, {}
        run.tasks[index] = TaskStats(2)
        _, text, scripted = scripted_reply(run, planner_body)
        assert scripted
        steps.append(json.loads(text)["next_step"])
    assert steps[0] != steps[1] and all("sum(range(1000))" in s for s in steps)


def test_planned_steps_open_at_the_coder_and_the_planner_answers_after_the_last() -> None:
    """agent.follow_plan: the planner is asked once, the coder runs every step; the stub
    answers by the steps run (the planner's history, not planner turns nor coder requests) and
    opens a step at a coder request that follows another coder request."""
    from bench.peers_model import ModelStub

    planner = {"messages": [{"role": "system", "content": "You are the planner"}]}
    coder = {"messages": [{"role": "system", "content": "You are the coder"}]}
    with ModelStub() as stub:
        url, run = stub.new_run("dynagraph")
        rid = url.split("/run/")[1].split("/")[0]
        stub.start_task(rid, 0, 3)
        first = json.loads(stub.chat(rid, planner)[0])
        assert len(first["plan"]) == 3
        steps = [first["next_step"], *first["plan"][1:]]
        for done in range(3):  # the coder's request shows the steps run before it
            assert "```python" in stub.chat(rid, with_history(coder, steps[:done]))[0]
        last = with_history(planner, steps)
        assert json.loads(stub.chat(rid, last)[0])["final_answer"] == "499500"
        stats = run.tasks[0]
        # planner (step 1), coder 2, coder 3 (planned steps), planner (the answer)
        assert len(stats.step_starts) == 4
        assert stats.unscripted == 0


def with_history(body: dict, steps: list[str]) -> dict:
    """``body`` with a user message listing ``steps`` as run, as nodes/history.py shows them."""
    history = "\n\n".join(f"Step {i}: {s}\n```python\nx = 1\n```" for i, s in enumerate(steps, 1))
    return {"messages": [*body["messages"], {"role": "user", "content": history or "(none)"}]}


def test_a_planner_changing_course_drops_what_was_written_ahead_and_no_step_is_miscounted() -> None:
    """--course-change K: every K-th planner turn asks for another step than its last plan had
    next; the coder's calls made ahead (speculate) and asked again open no step, and the coder
    calls they add are still scripted."""
    from bench.peers_model import ModelStub

    planner = {"messages": [{"role": "system", "content": "You are the planner"}]}
    coder = {"messages": [{"role": "system", "content": "You are the coder"}]}
    with ModelStub(course_change=2) as stub:
        url, run = stub.new_run("dynagraph")
        rid = url.split("/run/")[1].split("/")[0]
        stub.start_task(rid, 0, 4)
        run_steps: list[str] = []
        held = []
        turn = json.loads(stub.chat(rid, with_history(planner, run_steps))[0])
        stub.chat(rid, with_history(coder, run_steps))  # step 1's cell
        run_steps.append(turn["next_step"])
        for _ in range(3):  # the planner's turns after steps 1, 2, 3
            planned = turn["plan"][1]
            stub.chat(rid, with_history(coder, run_steps))  # written ahead for it, beside the turn
            turn = json.loads(stub.chat(rid, with_history(planner, run_steps))[0])
            held.append(turn["next_step"] == planned)
            if not held[-1]:  # dropped: the coder is asked again for the step asked for
                stub.chat(rid, with_history(coder, run_steps))
            run_steps.append(turn["next_step"])
        turn = json.loads(stub.chat(rid, with_history(planner, run_steps))[0])
        assert held == [True, False, True]  # every 2nd turn changes course
        assert turn["final_answer"] == "499500"
        stats = run.tasks[0]
        assert len(stats.step_starts) == 5  # the planner's turns: 4 steps and the answer
        # step 1's cell, 3 written ahead (one of them dropped), 1 asked again: all scripted
        assert stats.roles["coder"] == 5 and stats.unscripted == 0


def test_the_planner_is_answered_by_the_steps_its_history_shows() -> None:
    """agent.speculate: a coder request for the plan's next step comes while the planner's is
    out; the planner's reply must not count it as a step run."""
    from bench.peers_model import ModelStub

    system = {"role": "system", "content": "You are the planner"}
    coder = {"messages": [{"role": "system", "content": "You are the coder"}]}
    with ModelStub() as stub:
        url, _run = stub.new_run("dynagraph")
        rid = url.split("/run/")[1].split("/")[0]
        stub.start_task(rid, 0, 3)
        first = json.loads(stub.chat(rid, {"messages": [system]})[0])
        stub.chat(rid, coder)  # step 1's cell
        stub.chat(rid, coder)  # the speculative one for step 2
        one_step = {"role": "user", "content": f"Steps so far:\nStep 1: {first['next_step']}"}
        second = json.loads(stub.chat(rid, {"messages": [system, one_step]})[0])
        assert second["next_step"] == first["plan"][1]


def test_the_stub_waits_its_model_latency_before_each_reply() -> None:
    """--model-latency: each reply comes no sooner than the latency (what a real endpoint's
    latency hides is measured with it: the next step's query embedded during the calls)."""
    import time

    from bench.peers_model import ModelStub

    coder = {"messages": [{"role": "system", "content": "You are the coder"}]}
    with ModelStub(0.15) as stub:
        url, _ = stub.new_run("dynagraph")
        rid = url.split("/run/")[1].split("/")[0]
        stub.start_task(rid, 0, 1)
        started = time.perf_counter()
        assert "```python" in stub.chat(rid, coder)[0]
        assert time.perf_counter() - started >= 0.15


def test_an_unknown_variant_key_is_refused_before_anything_runs(capsys) -> None:
    """A renamed key (dynagraph-10k-parted became dynagraph-10k-joined) must not run nothing
    in silence: argparse refuses it, naming the choices."""
    with pytest.raises(SystemExit) as stopped:
        peers.main(["--only", "dynagraph-10k-parted"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "dynagraph-10k-parted" in err and "dynagraph-10k-joined" in err


def test_a_variants_config_sets_sections_and_top_level_settings(tmp_path) -> None:
    """The exit variants reach the agent: their top-level setting and a section merge into the
    written config, which the agent's own loader reads."""
    from dynagraph.graphs.settings import load_settings

    path = write_dynagraph_config(
        tmp_path,
        "http://127.0.0.1:9/v1",
        {"agent": {"follow_plan": 10}, "checkpoint_durability": "exit"},
    )
    settings = load_settings(str(path))
    assert settings.checkpoint_durability == "exit"
    assert settings.agent.follow_plan == 10 and settings.agent.max_steps == 12  # merged
