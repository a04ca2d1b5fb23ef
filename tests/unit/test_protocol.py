"""Reply protocols of the planner and the coder, and the re-ask loop."""

from __future__ import annotations

import pytest
from dynagraph.nodes.protocol import (
    ProtocolError,
    ReplyParseError,
    ask,
    parse_coder_reply,
    parse_planner_reply,
)
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage


def test_planner_next_step_and_final_answer():
    d = parse_planner_reply('{"thought": "t", "plan": ["a", "b"], "next_step": "a"}')
    assert (d.next_step, d.plan, d.final_answer) == ("a", ["a", "b"], None)
    d = parse_planner_reply('Sure.\n```json\n{"thought": "t", "final_answer": 42}\n```')
    assert d.final_answer == "42" and d.next_step is None
    d = parse_planner_reply('prose {"final_answer": "x {y}"} more prose')
    assert d.final_answer == "x {y}"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("no json at all", "no JSON object"),
        ('{"thought": "t"}', "exactly one of"),
        ('{"next_step": "a", "final_answer": "b"}', "exactly one of"),
        ('{"next_step": "a", "plan": "not a list"}', "plan"),
        ("[1, 2]", "one JSON object"),
    ],
)
def test_planner_protocol_errors_say_what_is_wrong(text, fragment):
    with pytest.raises(ReplyParseError, match=fragment):
        parse_planner_reply(text)


def test_coder_takes_first_python_block():
    reply = "Plan.\n```python\nx = 1\nprint(x)\n```\nthen\n```python\ny = 2\n```"
    assert parse_coder_reply(reply) == "x = 1\nprint(x)\n"
    assert parse_coder_reply("```\nz = 3\n```") == "z = 3\n"
    with pytest.raises(ReplyParseError, match="python"):
        parse_coder_reply("x = 1")
    with pytest.raises(ReplyParseError, match="empty"):
        parse_coder_reply("```python\n\n```")


def test_ask_reasks_with_the_error_then_gives_up():
    model = FakeListChatModel(responses=["oops", "```python\nprint(1)\n```"])
    code, usage = ask(model, [HumanMessage("go")], parse_coder_reply, retries=1, node="coder")
    assert code == "print(1)\n" and usage["calls"] == 2
    model = FakeListChatModel(responses=["bad", "still bad"])
    with pytest.raises(ProtocolError, match="coder model broke its reply protocol 2 times"):
        ask(model, [HumanMessage("go")], parse_coder_reply, retries=1, node="coder")
