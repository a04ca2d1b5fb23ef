"""A step's library functions are defined in one kernel cell (tools/kernel/definitions.py), each
source on its own: one that fails is reported by name and the others are still defined, wrapped
by the probe recorder like a cell's own functions, with their source readable in tracebacks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from dynagraph.nodes.executor import ExecutorNode
from dynagraph.tools.codeparse import normalized_hash
from dynagraph.tools.kernel import KernelSession, definitions, probes
from dynagraph.tools.library import FunctionRecord, SqliteLibrary

from tests.support.librarian import CountedCells
from tests.support.weaviate_fake import TinyEmbedder

pytestmark = pytest.mark.timeout(120)

BASE = 'def base(x):\n    """Twice x."""\n    return 2 * x\n'
TOP = 'def top(x):\n    """Twice x, plus one."""\n    return base(x) + 1\n'
BROKEN = 'def broken(x):\n    """Needs a module nobody has."""\n    return nope.f(x)\n'
SQRT = 'def root(x):\n    """Square root."""\n    return m.sqrt(x)\n'


def rec(code: str, **fields) -> FunctionRecord:
    name = code.split("(")[0].removeprefix("def ").strip()
    return FunctionRecord(name=name, code=code, ast_hash=normalized_hash(code), **fields)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with KernelSession(tmp_path_factory.mktemp("k"), bootstrap=probes.BOOTSTRAP) as s:
        yield s


@pytest.fixture
def library(tmp_path):
    """A real library file (a tiny embedder: no search happens here)."""
    with SqliteLibrary(tmp_path / "library.db", TinyEmbedder()) as lib:
        yield lib


def test_one_cell_defines_every_record_and_a_failing_one_stops_no_other(session, library) -> None:
    base, top, broken, root = (
        library.add(r)
        for r in (
            rec(BASE),
            rec(TOP, depends_on=["base"]),
            rec(BROKEN, imports=["import nope_not_installed_anywhere as nope"]),
            rec(SQRT, imports=["import math as m"], aliases=["square_root"]),
        )
    )
    node = ExecutorNode(SimpleNamespace(library=library))  # type: ignore[arg-type]
    counted = CountedCells(session)
    cells = counted.cells
    defined, notes = node.define_library_functions(counted, [top.id, broken.id, root.id])
    assert len(cells) == 1  # one round trip for the whole step
    assert defined == {"base": base.id, "top": top.id, "root": root.id}
    assert notes == [
        "library function broken could not be defined: ModuleNotFoundError: "
        "No module named 'nope_not_installed_anywhere'"
    ]
    # already defined: no cell at all
    again, notes = node.define_library_functions(counted, [top.id, root.id])
    assert len(cells) == 1 and again == defined and notes == []
    # the broken one is tried again, alone: one cell, for it only
    again, notes = node.define_library_functions(counted, [top.id, broken.id])
    assert len(cells) == 2 and "nope_not_installed_anywhere" in cells[1] and again == defined
    assert "def top" not in cells[1]
    assert notes == [
        "library function broken could not be defined: ModuleNotFoundError: "
        "No module named 'nope_not_installed_anywhere'"
    ]

    result, (recorded, calls) = probes.execute_with_probes(
        session, "print(top(3), square_root(16.0))", 30
    )
    assert result.ok() and result.stdout.strip() == "7 4.0"
    # wrapped by the probe recorder exactly as a cell's own functions are
    assert calls["top"]["calls"] == 1 and calls["root"]["calls"] == 1
    assert recorded["top"][0]["result_repr"] == "7"
    assert session.execute("import inspect; print(inspect.getsource(top))").stdout == TOP + "\n"
    failing = session.execute("top('a')")
    assert failing.error_name == "TypeError" and "return base(x) + 1" in failing.traceback


def test_a_syntax_error_or_a_lost_kernel_is_reported_per_name(session) -> None:
    cell = definitions.define_code(
        [("bad", "def bad(:\n", []), ("good", "def good():\n    return 1\n", [])]
    )
    result = session.execute(cell, timeout=30, silent=True)
    failed = definitions.failures(result, ["bad", "good"])
    assert list(failed) == ["bad"] and failed["bad"].startswith("SyntaxError")
    assert session.execute("good()").result == "1"
    lost = SimpleNamespace(ok=lambda: False, error_name="KernelDied", error_value="gone")
    assert definitions.failures(lost, ["a", "b"]) == {
        "a": "KernelDied: gone",
        "b": "KernelDied: gone",
    }  # type: ignore[arg-type]
    silent = SimpleNamespace(ok=lambda: True, stdout="")
    assert set(definitions.failures(silent, ["a"])) == {"a"}  # type: ignore[arg-type]


VAT = 'def add_vat(amount):\n    """Amount with VAT."""\n    return amount * (1 + RATE)\n'
DISCOUNT = (
    'def apply_discount(amount):\n    """Amount after the discount."""\n'
    "    return amount * (1 - RATE)\n"
)


def test_each_library_function_keeps_its_own_module_level_names(tmp_path, library) -> None:
    """Two library functions that each set ``RATE``, or import ``sqrt`` from another module,
    keep their own, in one cell or in two, and a cell that sets ``RATE`` later changes
    neither (the attack: ``add_vat(100)`` answered 105). Their imports are the cell's where
    the name was free, never in place of the cell's own."""
    vat, discount, real, cplx = (
        library.add(r)
        for r in (
            rec(VAT, globals=["RATE = 0.2"]),
            rec(DISCOUNT, globals=["RATE = 0.05"]),
            rec("def real_root(x):\n    return sqrt(x)\n", imports=["from math import sqrt"]),
            rec("def complex_root(z):\n    return sqrt(z)\n", imports=["from cmath import sqrt"]),
        )
    )
    node = ExecutorNode(SimpleNamespace(library=library))  # type: ignore[arg-type]
    with KernelSession(tmp_path / "k", bootstrap=probes.BOOTSTRAP) as real_session:
        session = CountedCells(real_session)  # the executor knows what it defined per session
        session.execute("sqrt = 'the cell s own'")
        node.define_library_functions(session, [vat.id, discount.id, real.id])
        node.define_library_functions(session, [cplx.id])  # a later step, its own cell
        shown = session.execute(
            "print(add_vat(100), apply_discount(100), real_root(4), complex_root(-4), sqrt)"
        )
        assert shown.stdout == "120.0 95.0 2.0 2j the cell s own\n", shown.to_observation()
        session.execute("RATE = 0.5")
        assert session.execute("print(add_vat(100), apply_discount(100))").stdout == "120.0 95.0\n"
        assert session.execute("print(math)").error_name == "NameError"  # nothing else leaks
        session.execute("del sqrt")
        ran = len(session.cells)
        node.define_library_functions(session, [real.id])
        assert len(session.cells) == ran  # already defined: no cell
        helper = library.add(rec("def area(w, h):\n    return w * h\n", imports=["import math"]))
        node.define_library_functions(session, [helper.id])
        assert session.execute("print(math.pi > 3)").stdout == "True\n"  # free: bound


def test_a_class_a_library_function_takes_is_offered_to_the_cell(session) -> None:
    """A record whose module-level code defines the class its function takes (``Box``) gives
    the cell that class where the name is free, as it gives its imports: a cell can build the
    argument, and a recorded call's pickled ``Box`` (``__main__.Box``) is found on replay. A
    cell's own ``Box`` is never replaced."""
    box = "class Box:\n    def __init__(self, w, h):\n        self.w, self.h = w, h\n"
    area = "def box_area(box):\n    return box.w * box.h\n"
    cell = definitions.define_code([("box_area", box + area, [])])
    assert definitions.failures(session.execute(cell, silent=True), ["box_area"]) == {}
    shown = session.execute("import pickle\nprint(box_area(pickle.loads(pickle.dumps(Box(3, 4)))))")
    assert shown.stdout == "12\n", shown.to_observation()
    session.execute("del Box, box_area\nclass Box:\n    w, h = 1, 2")
    assert definitions.failures(session.execute(cell, silent=True), ["box_area"]) == {}
    assert session.execute("print(box_area(Box()))").stdout == "2\n"  # the cell's own Box


def test_records_defining_the_same_class_share_it_and_another_class_code_does_not(session):
    """Two stored functions each carry the cell's ``Point``: defined each on its own, they share
    one class object (equality and isinstance hold across them); a class that reads another
    module-level ``RATE`` is another class."""
    point = (
        "from dataclasses import dataclass\n\n"
        "@dataclass\nclass Point:\n    x: float\n    y: float\n"
    )
    norm = point + "import math\ndef norm(p):\n    return math.hypot(p.x, p.y)\n"
    unit = point + "def unit(p):\n    n = norm(p)\n    return Point(p.x / n, p.y / n)\n"
    taxer = "RATE = {}\nclass Taxer:\n    def tax(self, x):\n        return x * RATE\n"
    vat = taxer.format(0.2) + "def vat(x):\n    return Taxer().tax(x)\n"
    duty = taxer.format(0.5) + "def duty(x):\n    return Taxer().tax(x)\n"
    cell = definitions.define_code(
        [("norm", norm, []), ("unit", unit, ["norm"]), ("vat", vat, []), ("duty", duty, [])]
    )
    names = ["norm", "unit", "vat", "duty"]
    assert definitions.failures(session.execute(cell, silent=True), names) == {}
    shown = session.execute("print(unit(Point(3, 4)) == Point(0.6, 0.8), vat(100), duty(100))")
    assert shown.stdout == "True 20.0 50.0\n", shown.to_observation()
    again = definitions.define_code([("unit", unit, ["norm"])])  # a later step, another cell
    assert definitions.failures(session.execute(again, silent=True), ["unit"]) == {}
    assert session.execute("print(isinstance(unit(Point(3, 4)), Point))").stdout == "True\n"


def test_library_functions_that_call_each_other_are_defined(session):
    even = "def is_even(n):\n    return True if n == 0 else is_odd(n - 1)\n"
    odd = "def is_odd(n):\n    return False if n == 0 else is_even(n - 1)\n"
    cell = definitions.define_code([("is_even", even, ["is_odd"]), ("is_odd", odd, ["is_even"])])
    assert definitions.failures(session.execute(cell, silent=True), ["is_even", "is_odd"]) == {}
    assert session.execute("print(is_even(4), is_odd(3))").stdout == "True True\n"


def test_the_definition_helper_is_sent_once_a_kernel_and_again_after_a_reset(tmp_path, library):
    """The helper's ~8 KB of source cost ~5 ms a cell to IPython even when its guard skipped it:
    only a kernel's first definition cell carries it. A cell's ``%reset`` removes it; the next
    definitions see that and send it again, and are defined all the same."""
    first, second, third = (
        library.add(rec(f"def f{i}(x):\n    return x + {i}\n")) for i in (1, 2, 3)
    )
    node = ExecutorNode(SimpleNamespace(library=library))  # type: ignore[arg-type]
    with KernelSession(tmp_path / "k", bootstrap=probes.BOOTSTRAP) as real_session:
        session = CountedCells(real_session)
        carries = lambda: [definitions.INSTALL_CODE in cell for cell in session.cells]  # noqa: E731
        node.define_library_functions(session, [first.id])
        node.define_library_functions(session, [second.id])
        assert carries() == [True, False]
        session.execute("%reset -f")
        defined, notes = node.define_library_functions(session, [third.id])
        assert notes == [] and "f3" in defined
        assert carries()[3:] == [False, True]  # without it: NameError; then with it
        assert session.execute("print(f3(1))").stdout == "4\n"
