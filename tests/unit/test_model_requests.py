"""A node's model sends the request stock ChatOpenAI sends, without openai's transform walk.

Real parts: ChatOpenAI and the openai client against the loopback stub server (the model's
brain is the only stand-in). Each request is made twice, once by the node's model
(ModelFactory) and once by a stock ``ChatOpenAI``, and the bodies the server received must be
equal; openai's ``maybe_transform`` is counted to show which one skipped it.
"""

from __future__ import annotations

from typing import Annotated, Any, Required

import openai._utils._transform as transform_module
import openai.resources.chat.completions.completions as completions_module
import pytest
from dynagraph.tools.model_requests import (
    declares_transforms,
    is_plain_json,
)
from dynagraph.tools.models import ModelFactory, ModelSettings, ModelsSettings
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI
from openai._utils import PropertyInfo
from typing_extensions import TypedDict

from tests.support.openai_stub import StubLLM

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/x8AAwMCAO+ip1sAAAAASUVORK5CYII="

CONVERSATION = [
    SystemMessage("You are the coder. Write one cell."),
    HumanMessage("Task: add the numbers.\nStep: sum 1..10"),
    AIMessage(
        "",
        tool_calls=[{"name": "lookup", "args": {"q": "sum", "n": 2}, "id": "call_1"}],
    ),
    ToolMessage('{"hits": []}', tool_call_id="call_1"),
    HumanMessage(
        content=[
            {"type": "text", "text": "and the picture"},
            {"type": "image_url", "image_url": {"url": PNG}},
        ]
    ),
    AIMessage("```python\nprint(sum(range(11)))\n```"),
    HumanMessage("Observation: 55 \u00e9\u4e2d"),
]


# params trees for the check: module level, so their string annotations resolve
class Inner(TypedDict, total=False):
    name: Annotated[str, PropertyInfo(alias="Name")]


class Dated(TypedDict, total=False):
    when: Annotated[str, PropertyInfo(format="iso8601")]


class Outer(TypedDict, total=False):
    items: Required[list[Inner | str]]
    kind: Annotated[str, PropertyInfo(discriminator="type")]


class Plain(TypedDict, total=False):
    kind: Annotated[str, PropertyInfo(discriminator="type")]
    nested: dict[str, list[Plain]]


@pytest.fixture
def stub():
    with StubLLM(role_of=lambda _body: "coder") as server:
        server.add_rule("coder", lambda _request: "```python\nprint(1)\n```")
        yield server


def _count_calls(monkeypatch, module: Any, name: str) -> list[int]:
    """Replace ``module.name`` with a function that counts its calls and calls the original."""
    calls: list[int] = []
    original = getattr(module, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


@pytest.fixture
def transforms(monkeypatch) -> list[int]:
    """How many times openai's transform walked a body (its ``transform``, which its
    ``maybe_transform`` calls)."""
    return _count_calls(monkeypatch, transform_module, "transform")


def _models(stub: StubLLM, **entry: Any) -> tuple[Any, ChatOpenAI]:
    settings = ModelsSettings(
        default=ModelSettings(
            model="stub-model", base_url=stub.base_url, api_key_env="", max_retries=0, **entry
        )
    )
    ours = ModelFactory(settings).for_node("coder")
    stock = ChatOpenAI(
        model="stub-model",
        base_url=stub.base_url,
        api_key="not-needed",
        max_retries=0,
        stream_usage=True,
        **entry,
    )
    return ours, stock


def _bodies(stub: StubLLM) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "_role"} for r in stub.requests]


def test_invoke_sends_the_stock_body_without_the_transform(stub, transforms):
    ours, stock = _models(stub, temperature=0.0, max_tokens=300)
    mine = ours.invoke(CONVERSATION, stop=["Observation:"])
    assert len(transforms) == 0
    theirs = stock.invoke(CONVERSATION, stop=["Observation:"])
    assert len(transforms) == 1
    first, second = _bodies(stub)
    assert first == second
    assert first["messages"][4]["content"][1]["image_url"]["url"] == PNG
    assert mine.content == theirs.content == "```python\nprint(1)\n```"
    assert mine.usage_metadata == theirs.usage_metadata
    assert mine.usage_metadata["input_tokens"] > 0


def test_streaming_and_tools_send_the_stock_body(stub, transforms):
    ours, stock = _models(stub)

    def lookup(q: str, n: int = 1) -> str:
        """Look q up, n hits."""
        return q

    mine = "".join(str(c.content) for c in ours.bind_tools([lookup]).stream(CONVERSATION))
    theirs = "".join(str(c.content) for c in stock.bind_tools([lookup]).stream(CONVERSATION))
    first, second = _bodies(stub)
    assert first["stream"] is True and "tools" in first
    assert first == second
    assert mine == theirs == "```python\nprint(1)\n```"
    assert len(transforms) == 1  # the stock model's


def test_a_body_that_is_not_plain_json_goes_through_the_transform(stub, transforms):
    ours, _stock = _models(stub)
    reply = ours.client.create(
        model="stub-model", messages=({"role": "user", "content": "a tuple of messages"},)
    )
    assert len(transforms) == 1
    assert reply.choices[0].message.content == "```python\nprint(1)\n```"
    assert stub.requests[-1]["messages"] == [{"role": "user", "content": "a tuple of messages"}]


def test_the_check_finds_an_alias_or_a_format_anywhere_in_the_params():
    assert declares_transforms(Outer)
    assert declares_transforms(Dated | None)
    assert not declares_transforms(Plain)


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"a": [1, 2.5, None, True, "x", {"b": []}]}, True),
        ({"a": (1, 2)}, False),
        ({1: "int key"}, False),
        ({"a": b"bytes"}, False),
        ({"a": [object()]}, False),
    ],
)
def test_plain_json_is_only_json_values(value, plain):
    assert is_plain_json(value) is plain


def test_request_options_reach_the_body_as_openai_sends_them(stub, transforms):
    """``extra_body`` is merged into the JSON and ``extra_headers`` sent, as by openai's own
    create (ChatOpenAI passes its ``extra_body`` and ``model_kwargs`` this way)."""
    ours, _stock = _models(stub)
    plain = ours.client
    stock = ours.root_client.chat.completions  # openai's own resource, same client
    for resource in (plain, stock):
        reply = resource.create(
            model="stub-model",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"top_k": 3, "chat_template_kwargs": {"thinking": False}},
            extra_headers={"X-Title": "dynagraph"},
            n=None,
        )
        assert reply.choices[0].message.content == "```python\nprint(1)\n```"
    first, second = _bodies(stub)
    assert first == second
    assert first["top_k"] == 3 and first["n"] is None
    assert len(transforms) == 1  # the stock resource's


def test_the_body_keeps_openais_key_order(stub):
    ours, stock = _models(stub, temperature=0.0)
    ours.bind_tools([{"type": "function", "function": {"name": "f", "parameters": {}}}]).invoke(
        CONVERSATION[:2], stop=["x"]
    )
    stock.bind_tools([{"type": "function", "function": {"name": "f", "parameters": {}}}]).invoke(
        CONVERSATION[:2], stop=["x"]
    )
    first, second = _bodies(stub)
    assert list(first) == list(second)  # json.loads keeps the order the bytes had


def test_a_keyword_openai_does_not_take_is_refused_before_anything_is_sent(stub):
    """A misconfiguration (``model_kwargs`` with a key openai's create does not know) fails
    in the client as it does for stock ChatOpenAI, instead of reaching the server."""
    ours, _stock = _models(stub)
    stock = ChatOpenAI(
        model="stub-model", base_url=stub.base_url, api_key="k", model_kwargs={"top_k": 3}
    )
    mine = ours.model_copy(update={"model_kwargs": {"top_k": 3}})
    for model in (mine, stock):
        with pytest.raises(TypeError, match="top_k"):
            model.invoke("hi")
    assert stub.requests == []


def test_an_empty_api_key_is_refused_as_openai_refuses_it(stub, monkeypatch):
    """openai's create sends only bearer auth; with no api_key it refuses rather than send
    an admin key from the environment to the endpoint (an attack found the first version of
    the plain path sent it)."""
    import openai
    from dynagraph.tools.model_requests import plain_completions

    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-not-for-this-endpoint")
    client = openai.OpenAI(base_url=stub.base_url, api_key="", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    for resource in (plain_completions(client), client.chat.completions):
        with pytest.raises(TypeError, match="authentication"):
            resource.create(model="stub-model", messages=messages)
    assert stub.requests == []


def test_another_patch_of_the_transform_still_runs_for_every_other_call(stub, monkeypatch):
    """A function put in place of the chat module's maybe_transform after ours (a user's or a
    test's patch) is wrapped in turn: stock calls reach it, a node's plain body does not."""
    ours, stock = _models(stub)
    seen = _count_calls(monkeypatch, completions_module, "maybe_transform")
    ours.invoke("hi")
    assert seen == []
    stock.invoke("hi")
    assert seen == [1]
    first, second = _bodies(stub)
    assert first == second
