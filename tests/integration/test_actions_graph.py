"""Initial actions through the whole graph: a task downloads a file from a (loopback) web
server, reads it with read_file, and answers from it. The model's replies are scripted; the
kernel, the actions, the HTTP traffic and the library are real."""

from __future__ import annotations

import json

import pytest

from dynagraph.graphs.run import run_task
from dynagraph.graphs.settings import load_settings
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.web_fixtures import WebFixtureServer, make_xlsx

pytestmark = pytest.mark.timeout(180)


def test_task_downloads_reads_and_answers_from_a_file(stub_env, tmp_path):
    stub = stub_env["stub"]
    with WebFixtureServer() as web:
        url = web.add(
            "/data/sales.xlsx",
            make_xlsx({"Sales": [["region", "units"], ["North", 42], ["South", 17]]}),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        stub.script(
            "planner",
            [
                planner_step(f"Download {url} and read it."),
                planner_step("Answer from the table: units sold in the North."),
                planner_answer("42"),
            ],
        )
        stub.script(
            "coder",
            [
                coder_cell(f"path = download({url!r})\nprint(read_file(path))"),
                coder_cell("final_answer(42)"),
            ],
        )
        config = write_stub_config(tmp_path / "c.yaml", stub_env["base_url"], stub_env["home"])
        result = run_task("How many units were sold in the North?", load_settings(config))

    assert result.status == "done", result.error
    assert result.answer == "42"
    first = result.steps[0]
    assert first["status"] == "ok", first["observation"]
    assert "North" in first["observation"] and "42" in first["observation"]
    assert web.requests_to("/data/sales.xlsx"), "the kernel never fetched the file"
    # the coder was shown the initial actions, and the planner saw final_answer's proposal
    coder_system = stub.requests_for("coder")[0]["messages"][0]["content"]
    assert "download(" in coder_system and "read_file(" in coder_system
    last_planner = json.dumps(stub.requests_for("planner")[-1]["messages"])
    assert "final_answer('42')" in last_planner or 'final_answer(\\"42\\")' in last_planner
