"""Config files for tests: every model pointed at the loopback stub, every path in tmp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support.waiting import wait_for


def stub_config(base_url: str, home: Path, **sections: Any) -> dict[str, Any]:
    """A config dict using the stub for every node, with its files under ``home``."""
    data: dict[str, Any] = {
        "models": {
            "default": {
                "model": "stub-default",
                "base_url": base_url,
                "api_key_env": "OPENAI_API_KEY",
                "temperature": 0.0,
                "timeout": 30.0,
                "max_retries": 0,
            },
        },
        "library": {"backend": "sqlite", "path": str(home / "library.db")},
        "executor": {"workdir": str(home / "runs"), "timeout": 20.0},
        "agent": {"max_steps": 6, "max_code_retries": 2, "max_parse_retries": 2},
        "checkpoint_path": str(home / "checkpoints.db"),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def write_stub_config(path: Path, base_url: str, home: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(stub_config(base_url, home, **sections)), encoding="utf-8")
    return path


def with_stub_config(
    env: dict[str, str], stub_env: dict[str, Any], path: Path, **sections: Any
) -> dict[str, str]:
    """A copy of a ``dynagraph`` subprocess's ``env`` whose DYNAGRAPH_CONFIG is a stub config
    (:func:`write_stub_config`) with ``sections`` on top, written to ``path``."""
    config = write_stub_config(path, stub_env["base_url"], stub_env["home"], **sections)
    return {**env, "DYNAGRAPH_CONFIG": str(config)}


def planner_step(step: str, plan: list[str] | None = None) -> str:
    import json

    return json.dumps({"thought": "next", "plan": plan or [step], "next_step": step})


#: A three-step task whose steps depend on each other's variables (a, then b), with its cells.
PLAN = ["Set a to 2.", "Set b to a * 3.", "Print b."]
CELLS = ["a = 2\nprint('OUT-ONE', a)", "b = a * 3\nprint('OUT-TWO', b)", "print(b)"]


def planner_keeping_to(plan: list[str], answer: str) -> list[str]:
    """Planner replies that take ``plan``'s steps one turn each, each turn with the rest of the
    plan ahead, then give ``answer``."""
    return [planner_step(step, plan=plan[i:]) for i, step in enumerate(plan)] + [
        planner_answer(answer)
    ]


def after_coder_requests(
    stub: Any, count: int, reply: str, seen: list[bool]
) -> Callable[[dict], str]:
    """A planner reply sent only once the coder has received ``count`` requests in all (or
    after 20 s): under speculation the coder's request for the plan's next step comes while
    this planner call is out; without it, it never would (``seen`` records which)."""

    def respond(_request: dict) -> str:
        seen.append(wait_for(lambda: len(stub.requests_for("coder")) >= count, 20))
        return reply

    return respond


def planner_answer(answer: str) -> str:
    import json

    return json.dumps({"thought": "done", "final_answer": answer})


def coder_cell(code: str) -> str:
    return f"Here is the cell.\n```python\n{code.strip()}\n```\n"
