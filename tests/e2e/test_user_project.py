"""dynagraph used from a user's own project, whose folder has its own tools.py, nodes.py,
graphs.py and evals.py (most LangChain projects have a tools.py): the installed names live under
``dynagraph.*``, so nothing of the user's shadows ours, and the script runs a task to its answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import user_env
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

pytestmark = pytest.mark.timeout(240)

USER_SCRIPT = """
import json, sys
import tools, nodes, graphs, evals  # the user's own modules, imported first on purpose
from dynagraph import Context, build_graph, load_settings, run_task

assert tools.MINE and nodes.MINE and graphs.MINE and evals.MINE
settings = load_settings(sys.argv[1])
graph = build_graph(settings)  # the compiled graph, for the user's own invocation
result = run_task("What is 6 * 7?", settings, context=Context(max_steps=3))
print(json.dumps({"answer": result.answer, "status": result.status,
                  "graph": type(graph).__name__, "tools": tools.__file__}))
"""


def test_script_beside_user_modules_runs_a_task(stub_env, tmp_path: Path) -> None:
    project = tmp_path / "userproj"
    project.mkdir()
    for name in ("tools", "nodes", "graphs", "evals"):
        (project / f"{name}.py").write_text(f"MINE = {name!r}\nprobes = None\n")
    (project / "script.py").write_text(USER_SCRIPT)
    config = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Multiply."), planner_answer("42")])
    stub.script("coder", [coder_cell("print(6 * 7)")])

    env = user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(stub_env["home"]))
    proc = subprocess.run(
        [sys.executable, "script.py", str(config)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "answer": "42",
        "status": "done",
        "graph": "CompiledStateGraph",
        "tools": str(project / "tools.py"),
    }
    # the cell really ran in the kernel: the planner's second prompt holds its output
    assert stub.remaining("planner") == 0 and stub.remaining("coder") == 0
    second_prompt = json.dumps(stub.requests_for("planner")[-1]["messages"])
    assert "42" in second_prompt
