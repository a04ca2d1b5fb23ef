"""dynagraph as a user's project gets it: a wheel built from this tree, installed on its own
(not the checkout's editable install), used from a folder of the user's with its own tools.py.
What an editable install hides shows here: data files the wheel leaves out (the prompts, the
demo's replies, the shipped configs, the kernel-side code) and paths that only exist in a
checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
#: not needed to build the wheel (and large, or built from it)
SKIP = (".git", ".venv", "build", "dist", "bench", "tests", "*.egg-info", "__pycache__", ".*cache")
#: the installed tree first, the checkout's editable finder gone: only the wheel's files count
WHEEL_ONLY = (
    "import sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]; "
    "sys.argv = ['dynagraph', *sys.argv[1:]]; "
    "from dynagraph.graphs.cli import main; sys.exit(main())"
)
PROBE = """
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]
import tools  # the user's own module, imported first on purpose
import dynagraph
from dynagraph import load_settings
from dynagraph.graphs.settings import shipped_configs
settings = load_settings("local-llm")
print(json.dumps({"package": dynagraph.__file__, "config": settings.source,
                  "base_url": settings.models.default.base_url, "shipped": shipped_configs()}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the wheel is installed into (``pip install --target``, no dependencies: the
    test's own venv has them)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("dynagraph-*.whl")
    target = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "tools.py").write_text("MINE = True\n")
    return folder


def _env(site: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAGRAPH_", "OPENAI_"))}
    env["PYTHONPATH"] = str(site)
    env["DYNAGRAPH_HOME"] = str(tmp_path / "home")
    return env


def test_the_wheel_ships_its_configs_by_name(installed: Path, tmp_path: Path) -> None:
    project = _user_folder(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=project, env=_env(installed, tmp_path),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(installed)  # the wheel's, not the checkout's
    assert Path(seen["config"]) == installed / "dynagraph" / "configs" / "local-llm.yaml"
    assert seen["base_url"].startswith("http://localhost")
    assert set(seen["shipped"]) >= {"default", "local-llm", "openai", "weaviate"}


def test_the_wheel_runs_the_demo_from_a_user_project(installed: Path, tmp_path: Path) -> None:
    """The recorded replies, the prompts, the kernel-side code and the library all come from
    the wheel: the three tasks end with their answers and the function reused."""
    project = _user_folder(tmp_path)
    (project / "tools.py").write_text('raise SystemExit("the user\'s tools.py was imported")\n')
    proc = subprocess.run(
        [sys.executable, "-c", WHEEL_ONLY, "demo", "--home", "demo-home"], cwd=project,
        env=_env(installed, tmp_path), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "answer: 2.0" in proc.stdout
    assert "task 3 reused count_words from the library" in proc.stdout
    assert (project / "demo-home" / "library.db").is_file()
