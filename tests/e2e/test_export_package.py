"""`dynagraph library export --package`: a library built by real tasks (run_task against the
loopback stub model) becomes a package that installs into a fresh virtual environment, whose
generated tests (the recorded calls) pass there."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.settings import load_settings

from tests.support.cli import dynagraph, user_env
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

pytestmark = pytest.mark.timeout(300)

FIRST_CELL = '''
import math
from fractions import Fraction

UNITS = {"mm": 0.001, "cm": 0.01, "m": 1.0}

def hypotenuse(a: float, b: float) -> float:
    """Length of the hypotenuse of a right triangle with legs a and b."""
    return math.sqrt(a * a + b * b)

def to_meters(value: float, unit: str = "m") -> float:
    """Convert a length in mm, cm or m to meters."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    return value * UNITS[unit]

def as_fraction(x: float) -> Fraction:
    """The exact fraction of a float."""
    return Fraction(x)

print(hypotenuse(3, 4), to_meters(250, unit="cm"), as_fraction(0.5))
try:
    to_meters(1, "inch")
except ValueError as exc:
    print("refused:", exc)
'''

SECOND_CELL = '''
def diagonal_in_meters(a: float, b: float, unit: str) -> float:
    """The diagonal of an a-by-b rectangle measured in `unit`, in meters."""
    return to_meters(hypotenuse(a, b), unit)

print(diagonal_in_meters(30, 40, "cm"))
'''


def _fresh_venv(folder: Path) -> Path:
    """A venv on the base interpreter, seeing its site-packages; if pytest is not there, this
    environment's site-packages are appended to its path (no download either way)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(folder)], check=True
    )
    python = folder / "bin" / "python"
    probe = "import pytest, setuptools"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        Path(site, "zz_host_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def assert_package_tests_pass(package: Path, count: int) -> None:
    """The package's own tests, run from its folder with the package on the path."""
    run_env = {**os.environ, "PYTHONPATH": str(package)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        capture_output=True, text=True, timeout=240, check=False, cwd=package, env=run_env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{count} passed" in run.stdout, run.stdout


def test_exported_package_installs_and_its_tests_pass(stub_env, tmp_path):
    stub, home = stub_env["stub"], stub_env["home"]
    config = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], home,
        librarian={"generalize": False, "ask_model": False},
    )  # fmt: skip
    settings = load_settings(config)
    stub.script("planner", [planner_step("Write the helpers and try them."), planner_answer("5")])
    stub.script("coder", [coder_cell(FIRST_CELL)])
    first = run_task("Right triangle with legs 3 and 4: the hypotenuse?", settings)
    assert first.status == "done", first.error
    assert set(first.functions_created) == {"hypotenuse", "to_meters", "as_fraction"}
    stub.script("planner", [planner_step("Use the helpers."), planner_answer("0.5")])
    stub.script("coder", [coder_cell(SECOND_CELL)])
    second = run_task("A 30 cm by 40 cm rectangle: its diagonal in meters?", settings)
    assert second.status == "done", second.error
    assert set(second.functions_reused) >= {"hypotenuse", "to_meters"}

    env = user_env(DYNAGRAPH_HOME=str(home), DYNAGRAPH_CONFIG=str(config))
    package = tmp_path / "pkg"
    proc = dynagraph(
        "library", "export", "--package", str(package), "--name", "geometry_tools", env=env,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "4 functions" in proc.stderr and "as_fraction" in proc.stderr

    folder = package / "geometry_tools"
    init = (folder / "__init__.py").read_text()
    assert init.index("import hypotenuse") < init.index("import diagonal_in_meters")
    assert init.index("import to_meters") < init.index("import diagonal_in_meters")
    meters = (folder / "_fn_to_meters.py").read_text()  # one module a function, its names
    assert meters.index("UNITS = ") < meters.index("def to_meters")
    diagonal = (folder / "_fn_diagonal_in_meters.py").read_text()
    assert "from ._fn_hypotenuse import hypotenuse" in diagonal
    assert "from ._fn_to_meters import to_meters" in diagonal and "UNITS" not in diagonal
    assert "import math" in (folder / "_fn_hypotenuse.py").read_text()
    assert "from fractions import Fraction" in (folder / "_fn_as_fraction.py").read_text()
    tests = (package / "tests" / "test_geometry_tools.py").read_text()
    assert "pytest.raises(ValueError)" in tests  # the recorded refusal
    assert "holds a fractions.Fraction object" in tests  # listed, not dropped
    readme = (package / "README.md").read_text()
    assert "### `diagonal_in_meters(a: float, b: float, unit: str) -> float`" in readme
    assert "Convert a length in mm, cm or m to meters." in readme
    assert "- uses: 1 (1 successful)" in readme and "capabilities (tags)" in readme
    assert "as_fraction" in readme.split("## Recorded calls not exported as tests")[1]
    cases = tests.count("\ndef test_")
    assert cases == 4  # hypotenuse, to_meters (a value and the refusal), diagonal_in_meters

    python = _fresh_venv(tmp_path / "venv")
    # the build backend is this environment's setuptools (a venv's bundled one may predate
    # bdist_wheel); the package is installed into the fresh venv, from the folder, offline
    build_env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    build_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation",
         "--no-deps", "-q", str(package)],
        capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path, env=build_env,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    where = subprocess.run(
        [str(python), "-c", "import geometry_tools as g; print(g.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert str(tmp_path / "venv") in where  # the installed copy, not the folder
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{cases} passed" in run.stdout, run.stdout


WORDS = '''
import re


def count_words(text: str) -> int:
    """Count the words in a text."""
    return len(re.findall(r"[\\w']+", text))


def split_sentences(text: str) -> list[str]:
    """Split a text into sentences, each ending at '.', '!' or '?'."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\\s+", text.strip()) if s.strip()]


def average_words_per_sentence(text: str) -> float:
    """The mean number of words per sentence of a text."""
    sentences = split_sentences(text)
    return sum(count_words(s) for s in sentences) / len(sentences) if sentences else 0.0


def describe_text(text: str) -> str:
    """A one-line description of a text's sentence length."""
    return f"{average_words_per_sentence(text):.1f} words per sentence"


def first_sentence(text: str) -> str:
    """The first sentence of a text."""
    sentences = split_sentences(text)
    return sentences[0] if sentences else ""


def shout(text: str) -> str:
    """The text in capital letters with an exclamation mark."""
    return text.upper().rstrip(".!?") + "!"


def shout_first(text: str) -> str:
    """The first sentence of a text, shouted."""
    return shout(first_sentence(text))
'''
WORD_CALLS = """
t = "I came. I saw. I conquered."
count_words(t)
split_sentences(t)
average_words_per_sentence(t)
describe_text(t)
first_sentence(t)
shout("hello there")
shout_first(t)
"""


def test_a_function_whose_callee_is_not_active_is_left_out_and_the_rest_works(tmp_path):
    """The README's promise: every exported function comes with the functions it calls. One
    that calls a quarantined or archived function (directly or through another) is left out
    with a line naming that callee; the package that is written imports and its tests pass."""
    env = user_env(DYNAGRAPH_HOME=str(tmp_path / "home"))
    env.pop("OPENAI_API_KEY", None)
    (tmp_path / "words.py").write_text(WORDS)
    (tmp_path / "calls.py").write_text(WORD_CALLS)
    added = dynagraph("library", "add", str(tmp_path / "words.py"), "--probe",
                      str(tmp_path / "calls.py"), env=env)  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.count(": added [add]") == 7, added.stdout
    assert (
        dynagraph("library", "quarantine", "count_words", "--reason", "bad", env=env).returncode
        == 0
    )
    assert dynagraph("library", "archive", "shout", env=env).returncode == 0

    package = tmp_path / "pkg"
    proc = dynagraph("library", "export", "--package", str(package), "--name", "wordtools", env=env)
    assert proc.returncode == 0, proc.stderr
    left = [line for line in proc.stderr.splitlines() if line.startswith("left out ")]
    assert sorted(left) == [
        "left out average_words_per_sentence: it calls count_words, which is quarantined",
        "left out describe_text: it needs count_words (through average_words_per_sentence), "
        "which is quarantined",
        "left out shout_first: it calls shout, which is archived",
    ]
    assert "2 functions, 2 tests, 3 functions left out" in proc.stderr
    modules = sorted(p.name for p in (package / "wordtools").glob("*.py"))
    assert modules == ["__init__.py", "_fn_first_sentence.py", "_fn_split_sentences.py"]
    assert "## Functions left out" in (package / "README.md").read_text()

    run_env = {**os.environ, "PYTHONPATH": str(package)}
    imported = subprocess.run(
        [sys.executable, "-c", "import wordtools; print(sorted(wordtools.__all__))"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=run_env,
    )  # fmt: skip
    assert imported.stdout.strip() == "['first_sentence', 'split_sentences']", imported.stderr
    assert_package_tests_pass(package, 2)

    # a folder that cannot be made (a file stands where its parent should be): one line, exit
    # 2, and no partial package beside it
    (tmp_path / "afile").write_text("not a folder")
    bad = dynagraph("library", "export", "--package", str(tmp_path / "afile" / "pkg"), env=env)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "cannot write the package at" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


SHOP = {
    "vat.py": ('RATE = 0.2\n\ndef add_vat(amount: float) -> float:\n    """With 20% VAT."""\n'
               "    return amount * (1 + RATE)\n", "add_vat(100)"),
    "discount.py": ('RATE = 0.05\n\ndef apply_discount(amount: float) -> float:\n'
                    '    """After a 5% discount."""\n    return amount * (1 - RATE)\n',
                    "apply_discount(100)"),
    "pretty.py": ('import json\n\ndef dumps_pretty(value: dict) -> str:\n'
                  '    """The value as indented JSON."""\n    return json.dumps(value, indent=1)\n',
                  'dumps_pretty({"a": 1})'),
    "jsonfn.py": ('def json(text: str) -> str:\n    """The text wrapped as a JSON string."""\n'
                  "    return '\"' + text + '\"'\n", 'json("x")'),
}  # fmt: skip


def test_functions_that_share_a_module_level_name_each_keep_theirs_in_the_package(tmp_path):
    """Two functions set RATE to other values, and one is named json beside another's
    ``import json``: each function is its own module in the package, so the package's tests
    (their recorded calls) pass; once they shared one __init__.py and failed (105.0 == 120.0,
    'function' object has no attribute 'dumps'). A package name that would hide a standard
    module (json) or the tests folder is refused."""
    env = user_env(DYNAGRAPH_HOME=str(tmp_path / "home"))
    env.pop("OPENAI_API_KEY", None)
    for file, (source, calls) in SHOP.items():
        (tmp_path / file).write_text(source)
        (tmp_path / "calls.py").write_text(calls + "\n")
        added = dynagraph("library", "add", str(tmp_path / file), "--probe",
                          str(tmp_path / "calls.py"), env=env)  # fmt: skip
        assert added.returncode == 0 and ": added [add]" in added.stdout, added.stderr
    for bad in ("json", "tests"):
        refused = dynagraph("library", "export", "--package", str(tmp_path / bad), "--name", bad,
                            env=env)  # fmt: skip
        assert refused.returncode == 2 and "standard-library module" in refused.stderr
    package = tmp_path / "pkg"
    proc = dynagraph("library", "export", "--package", str(package), "--name", "shop", env=env)
    assert proc.returncode == 0, proc.stderr
    assert_package_tests_pass(package, 4)
    # written again under another name: the first package and its tests are gone (pytest in
    # the folder ran both), a file of the user's beside them stays
    (package / "shop" / "notes.txt").write_text("mine")
    proc = dynagraph("library", "export", "--package", str(package), "--name", "store", env=env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (package / "tests").iterdir()) == ["test_store.py"]
    assert [p.name for p in (package / "shop").iterdir()] == ["notes.txt"]
    assert_package_tests_pass(package, 4)


SHAPES = '''from dataclasses import dataclass
import math


@dataclass
class Point:
    x: float
    y: float


def norm(p: Point) -> float:
    """Length of a vector."""
    return math.hypot(p.x, p.y)


def unit(p: Point) -> Point:
    """The vector scaled to length 1."""
    n = norm(p)
    return Point(p.x / n, p.y / n)
'''


def test_functions_that_carry_the_same_class_share_it_in_the_package(tmp_path):
    """norm and unit are each stored with a copy of the file's Point; the package gives them one
    class, as a kernel does (unit's module imports norm's): unit's Point is the Point norm
    takes and the one the package's users build."""
    env = user_env(DYNAGRAPH_HOME=str(tmp_path / "home"))
    env.pop("OPENAI_API_KEY", None)
    (tmp_path / "shapes.py").write_text(SHAPES)
    (tmp_path / "calls.py").write_text("norm(Point(3, 4))\nunit(Point(3, 4))\n")
    added = dynagraph("library", "add", str(tmp_path / "shapes.py"), "--probe",
                      str(tmp_path / "calls.py"), env=env)  # fmt: skip
    assert added.returncode == 0 and added.stdout.count(": added [add]") == 2, added.stdout
    package = tmp_path / "pkg"
    proc = dynagraph("library", "export", "--package", str(package), "--name", "shapes", env=env)
    assert proc.returncode == 0, proc.stderr
    use = (
        "from shapes import norm, unit\nfrom shapes._fn_norm import Point\n"
        "u = unit(Point(3, 4))\nprint(u == Point(0.6, 0.8), isinstance(u, Point), norm(u))\n"
    )
    run = subprocess.run([sys.executable, "-c", use], capture_output=True, text=True, timeout=60,
                         cwd=package, env={**os.environ, "PYTHONPATH": str(package)})  # fmt: skip
    assert run.stdout == "True True 1.0\n", run.stdout + run.stderr
