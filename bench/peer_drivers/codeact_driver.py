"""langgraph-codeact against the loopback model (run in its venv by bench/peers.py).

As its README sets it up: ``create_codeact(model, tools, eval_fn)`` compiled with a
``MemorySaver``, the model a ``langchain_openai.ChatOpenAI``, and the README's ``eval`` function
(``exec`` in this process, stdout captured). No tools.
"""

from __future__ import annotations

import time

STARTED = time.time()

import builtins  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import uuid  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from langgraph.checkpoint.memory import MemorySaver  # noqa: E402
from langgraph_codeact import create_codeact  # noqa: E402


def eval_fn(code: str, _locals: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The eval function of langgraph-codeact's README."""
    original_keys = set(_locals.keys())
    try:
        with contextlib.redirect_stdout(io.StringIO()) as f:
            exec(code, builtins.__dict__, _locals)
        result = f.getvalue()
        if not result:
            result = "<code ran, no output printed to stdout>"
    except Exception as e:
        result = f"Error during execution: {repr(e)}"
    new_keys = set(_locals.keys()) - original_keys
    new_vars = {key: _locals[key] for key in new_keys}
    return result, new_vars


def main() -> None:
    args = common.parse_args()
    model = ChatOpenAI(model="stub-model", base_url=args.base_url, api_key="sk-stub", max_retries=0)
    agent = create_codeact(model, [], eval_fn).compile(checkpointer=MemorySaver())

    def run_one(text: str, n: int, index: int):
        config = {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": 4 * n + 20}
        state = agent.invoke({"messages": [{"role": "user", "content": text}]}, config)
        messages = state["messages"]
        executed = sum(1 for m in messages if m.type == "human") - 1  # sandbox outputs
        return messages[-1].content, executed

    common.run_all(args, "langgraph-codeact", version("langgraph-codeact"), run_one, STARTED)


if __name__ == "__main__":
    main()
