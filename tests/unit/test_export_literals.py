"""Recorded values become test literals only when they are plain data; a pickle that names any
class or callable is refused without running it."""

from __future__ import annotations

import base64
import os
import pickle
from fractions import Fraction

from dynagraph.tools.library.base import FunctionRecord
from dynagraph.tools.library.export_literals import literal_of_pickle
from dynagraph.tools.library.export_package import dependency_order


def b64(value) -> str:
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode()


def test_plain_values_round_trip():
    for value in [3, 2.5, "x'y", b"\x00", None, True, (1, [2, {"a": {3}}]), set(), -0.0, 1 + 2j]:
        text, why = literal_of_pickle(b64(value))
        assert text is not None, why
        assert eval(text) == value  # noqa: S307  (our own literal)


def test_objects_are_listed_not_loaded(tmp_path):
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    text, why = literal_of_pickle(b64(Boom()))
    assert text is None and "system" in why
    assert not marker.exists()
    text, why = literal_of_pickle(b64(Fraction(1, 2)))
    assert text is None and "fractions.Fraction" in why
    assert literal_of_pickle(b64(float("nan")))[0] is None
    assert literal_of_pickle(None)[1].startswith("it was not recorded")


def test_dependency_order_puts_callees_first():
    def rec(name, deps=(), when="1"):
        return FunctionRecord(name=name, code=f"def {name}(): pass", ast_hash=name,
                              depends_on=list(deps), created_at=when)  # fmt: skip

    records = [
        rec("c", ["b"]),
        rec("b", ["a"]),
        rec("a"),
        rec("loop", ["loop2"]),
        rec("loop2", ["loop"]),
    ]
    names = [r.name for r in dependency_order(records)]
    assert names.index("a") < names.index("b") < names.index("c")
    assert sorted(names) == sorted(r.name for r in records)


def test_complete_records_leave_out_what_lacks_a_callee():
    """A callee found by alias counts; a cycle stays whole when all of it is there; one that
    lacks a callee, directly or through another, is left out with the callee named."""
    from types import SimpleNamespace

    from dynagraph.tools.library.export_package import complete_records

    def rec(name, deps=(), aliases=()):
        return FunctionRecord(name=name, code=f"def {name}(): pass", ast_hash=name,
                              depends_on=list(deps), aliases=list(aliases))  # fmt: skip

    gone = rec("gone")
    gone.status = "quarantined"
    library = SimpleNamespace(
        get_by_name=lambda name, include_inactive=False: gone if name == "gone" else None
    )
    records = [
        rec("a", aliases=["alias_of_a"]),
        rec("b", ["alias_of_a"]),
        rec("loop", ["loop2"]),
        rec("loop2", ["loop"]),
        rec("c", ["gone"]),
        rec("d", ["c"]),
        rec("e", ["nowhere"]),
        rec("bad_loop", ["bad_loop2"]),
        rec("bad_loop2", ["bad_loop", "gone"]),
    ]
    kept, left = complete_records(library, records)
    assert [r.name for r in kept] == ["a", "b", "loop", "loop2"]
    assert dict(left) == {
        "c": "it calls gone, which is quarantined",
        "d": "it needs gone (through c), which is quarantined",
        "e": "it calls nowhere, which is not in the library",
        "bad_loop2": "it calls gone, which is quarantined",
        "bad_loop": "it needs gone (through bad_loop2), which is quarantined",
    }
