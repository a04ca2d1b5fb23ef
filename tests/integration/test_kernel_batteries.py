"""A kernel with batteries (issue 15, item 6): the default install's scientific stack imports
in a task's kernel, and a missing module's observation says what to install and how."""

from __future__ import annotations

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.settings import load_settings
from dynagraph.tools.packages import missing_module_note, pip_name

from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

pytestmark = pytest.mark.timeout(240)

STACK_CELL = """
import sympy, scipy
from scipy import stats
x = sympy.symbols('x')
print(sympy.solve(x**2 - 4, x), round(float(stats.norm.cdf(0)), 2))
"""


def test_sympy_and_scipy_import_in_a_task_kernel_and_a_missing_module_says_how(stub_env, tmp_path):
    stub = stub_env["stub"]
    settings = load_settings(
        write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    )
    stub.script("planner", [planner_step("Solve it."), planner_answer("2")])
    stub.script("coder", [coder_cell(STACK_CELL)])
    result = run_task("Solve x^2 = 4.", settings)
    assert result.steps[0]["status"] == "ok", result.steps[0]["observation"]
    assert "[-2, 2] 0.5" in result.steps[0]["observation"]

    stub.script("planner", [planner_step("Fit it."), planner_answer("")])
    retries = settings.agent.max_code_retries
    stub.script("coder", [coder_cell("import sklearn_not_here_xyz.svm\n")] * (retries + 1))
    failed = run_task("Fit a model.", settings)
    observation = failed.steps[0]["observation"]
    assert "ModuleNotFoundError" in observation
    assert "`%pip install sklearn-not-here-xyz`" in observation


def test_missing_module_note_names_the_package():
    note = missing_module_note("ModuleNotFoundError", "No module named 'sklearn.svm'")
    assert note and "'scikit-learn'" in note and "`%pip install scikit-learn`" in note
    offline = missing_module_note("ModuleNotFoundError", "No module named 'cv2'", network=False)
    assert offline and "opencv-python" in offline and "no network" in offline
    assert "%pip" not in offline
    assert missing_module_note("ImportError", "cannot import name 'x' from 'y'") is None
    assert pip_name("PIL.Image") == "pillow" and pip_name("my_pkg") == "my-pkg"
