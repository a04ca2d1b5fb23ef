"""The librarian's pure parts: the one parameter reader, the one candidate shape and its
conversions, the reply parsers of the librarian model's protocol, and the JSON-object reader
every reply protocol shares."""

from __future__ import annotations

import json

import pytest
from dynagraph.tools.codeparse import extract_functions
from dynagraph.tools.librarian.candidate import Candidate, Origin, merge_task_candidates, to_record
from dynagraph.tools.librarian.generalize import flag_specific
from dynagraph.tools.librarian.model import parse_generalize_reply, parse_verdict_reply
from dynagraph.tools.librarian.signature import parameters
from dynagraph.tools.replies import ReplyParseError, first_json_object


# -- parameters ------------------------------------------------------------------------------------
def test_parameters_from_code_and_from_a_signature_agree():
    code = "@cache\ndef f(a, /, b, c=2, *rest, d, e=1, **kw) -> int:\n    return a\n"
    from_code, from_signature = (
        parameters(code),
        parameters("(a, /, b, c=2, *rest, d, e=1, **kw) -> int"),
    )
    assert from_code == from_signature
    assert from_code.positional == ("a", "b", "c") and from_code.keyword_only == ("d", "e")
    assert from_code.count == 7 and from_code.shape == (2, 5)
    assert not from_code.keyword_defaults_all
    assert from_code.source == "a, /, b, c=2, *rest, d, e=1, **kw"


def test_parameters_of_what_does_not_parse_is_none():
    assert parameters("def broken(:\n    pass\n") is None
    assert parameters("(a, b") is None
    assert parameters("x = 1") is None


def test_a_function_extends_another_when_old_calls_still_bind():
    old = parameters("def f(price): pass")
    assert parameters("def g(price, rate=0.2): pass").extends(old)
    assert not parameters("def g(price, rate): pass").extends(old)  # rate has no default
    assert not parameters("def g(rate=0.2, price=1): pass").extends(old)  # other order
    assert not parameters("def g(price, *, rate): pass").extends(old)


def test_magics_in_a_function_do_not_hide_its_parameters():
    assert parameters("def f(x, y=1):\n    %time x\n    return x\n").names == ("x", "y")


# -- candidate -----------------------------------------------------------------------------------
SOURCE = (
    "import math as m\nUNIT = 100\ndef scaled(x: float) -> float:\n    return m.floor(x * UNIT)\n"
)


def test_a_candidate_survives_the_state_and_becomes_a_record():
    [fn] = extract_functions(SOURCE)
    cand = Candidate.from_function(fn, [{"args_repr": "(1.5,)", "result_repr": "150"}], step=3)
    entry = cand.to_entry()
    assert json.loads(json.dumps(entry)) == entry  # the graph's state stays serializable
    back = Candidate.from_entry({**entry, "from_an_older_checkpoint": True})
    assert back == cand
    cand.tags, cand.aliases, cand.calls = ["specific"], ["scale", "scaled"], ["scaled", "helper"]
    record = to_record(
        cand, Origin(task="t", thread="th", model="m", tags=["user"]), depends_on=cand.calls
    )
    assert record.imports == ["import math as m"] and record.globals == ["UNIT = 100"]
    assert record.depends_on == ["helper"]  # never itself
    assert record.tags == ["user", "specific"] and record.aliases == ["scale"]
    assert (record.origin_task, record.origin_thread, record.origin_model) == ("t", "th", "m")
    assert record.probes == cand.probes and record.id  # id from the hash


def test_merge_keeps_the_first_place_of_a_redefined_name():
    entries = [
        {"name": "g", "code": "def g(): pass", "ast_hash": "g1"},
        {"name": "f", "code": "def f(): return 1", "ast_hash": "f1"},
        {"name": "g", "code": "def g(): return 2", "ast_hash": "g2", "probes": [{"p": 1}]},
        {"name": "h", "probes": [{"p": 2}], "probes_only": True},  # never defined: dropped
    ]
    merged = merge_task_candidates(entries)
    assert [(c.name, c.ast_hash) for c in merged] == [("g", "g2"), ("f", "f1")]


# -- replies ------------------------------------------------------------------------------------
def test_first_json_object_prefers_a_json_fence_and_skips_broken_braces():
    assert first_json_object('Sure: {oops} then ```json\n{"a": 1}\n```') == {"a": 1}
    assert first_json_object('x {not json} y {"b": 2} z') == {"b": 2}
    with pytest.raises(ReplyParseError, match="no JSON object"):
        first_json_object("no braces here")


def test_generalize_reply_must_define_its_name_and_call_it():
    code = "def total(q, p=0.5):\n    return q * p\n"
    reply = parse_generalize_reply(json.dumps({"name": "total", "code": code, "call": "null"}))
    assert (reply.name, reply.call) == ("total", None)
    call = parse_generalize_reply(json.dumps({"name": "total", "code": code, "call": " total(6) "}))
    assert call.call == "total(6)"
    for bad, message in (
        ({"name": "class", "code": code}, "identifier"),
        ({"name": "other", "code": code}, "named other"),
        ({"name": "total", "code": "def total(:"}, "does not parse"),
        ({"name": "total", "code": code, "call": "other(1)"}, "must call total"),
        ({"name": "total", "code": code, "call": "total(1) + 1"}, "one call"),
    ):
        with pytest.raises(ReplyParseError, match=message):
            parse_generalize_reply(json.dumps(bad))
    with pytest.raises(ReplyParseError, match='reply with one JSON object: {"name"'):
        parse_generalize_reply("I would rename it.")


def test_verdict_reply_names_a_function_shown_unless_distinct():
    names = ["rect_area", "area"]
    got = parse_verdict_reply('{"verdict": "Duplicate", "of": "area", "reason": "same"}', names)
    assert (got.verdict, got.of, got.reason) == ("duplicate", "area", "same")
    distinct = parse_verdict_reply('{"verdict": "distinct", "of": "area"}', names)
    assert distinct.of is None
    with pytest.raises(ReplyParseError, match="one of the library functions shown"):
        parse_verdict_reply('{"verdict": "generalizes", "of": "volume"}', names)
    with pytest.raises(ReplyParseError, match="duplicate, generalizes or distinct"):
        parse_verdict_reply('{"verdict": "maybe"}', names)


# -- the static check ----------------------------------------------------------------------------
def test_task_words_in_a_name_are_not_a_flag_but_task_constants_are():
    task = "Each necklace has 12 rubies. How many rubies do 5 necklaces have?"
    narrow = "def calculate_rubies(necklaces):\n    return necklaces * 12\n"
    flagged, reasons = flag_specific("calculate_rubies", narrow, task)
    assert flagged and reasons == ["constants copied from the task: 12"]
    wide = "def calculate_rubies(necklaces, per):\n    return necklaces * per\n"
    assert flag_specific("calculate_rubies", wide, task) == (False, [])
    assert flag_specific("broken", "def broken(:", task) == (False, [])
