"""A replay model: recorded model output served to the real graph, so the graph, kernels and
library run on code an LLM really wrote, with no LLM.

It is a loopback OpenAI-compatible server (``tests/support/openai_stub.StubLLM``) with one rule
per role. Every task it can answer is registered with the cells to replay, in order
(:meth:`ReplayModel.add`). The replies follow docs/protocols.md.

Replay protocol (which request gets which reply)
-------------------------------------------------
- **Which task.** A request belongs to the registered task whose text occurs in its user message
  (the longest one when several do). A request for no registered task gets HTTP 500, so the run
  fails loudly instead of replaying the wrong code.
- **Where in the task.** ``n`` = the number of executed steps shown in the user message (one
  ``Observation (<status>):`` line per step, as ``nodes/history.py`` renders them).
- **Planner.** While ``n`` < the number of cells: ``next_step`` = the cell's instruction
  (default "Solve the problem with the given code"). After the last cell:
  ``final_answer`` = the answer read from the last observation (below), or ``""`` when that step
  did not succeed (status other than ``ok``).
- **Coder.** Cell ``n`` in one ```python block. A retry of a failed cell gets the same cell
  again (the replay is deterministic), so replay runs set ``agent.max_code_retries: 0``.
- **Answer read from an observation.** The last non-empty line of the cell's printed output
  (the ``[output]`` section); when the cell printed nothing, the last non-empty line of its
  displayed result (``[result]``: the value of a bare last expression, as Jupyter shows it).
- **Librarian.** No replay: there is no recorded librarian output, so replay settings turn the
  librarian's model stages off (``librarian.generalize`` and ``librarian.ask_model``); its
  model-free stages run as usual. A librarian request would get HTTP 500.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dynagraph.graphs.settings import DEFAULT_CONFIG, Settings, load_settings  # noqa: E402

from tests.support.openai_stub import StubLLM  # noqa: E402

DEFAULT_INSTRUCTION = "Solve the problem with the given code"

_OBSERVATION = re.compile(r"^Observation \((\w+)\):\n", re.MULTILINE)
# What follows the last observation in the planner's message (nodes/prompts/planner_user.md).
_LIMIT_NOTE = re.compile(r"\n\n(Steps left: \d+\.|You have used all \d+ steps)")
_SECTION = re.compile(r"^\[(output|result|error|note)\]", re.MULTILINE)


@dataclass
class ReplayCell:
    """One step to replay: the planner's instruction and the coder's code."""

    code: str
    instruction: str = DEFAULT_INSTRUCTION


def user_text(request: dict[str, Any]) -> str:
    """The text of every user message of a chat request."""
    parts = []
    for message in request.get("messages") or []:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(str(content or ""))
    return "\n".join(parts)


def executed_steps(text: str) -> int:
    """How many executed steps a planner or coder message shows."""
    return len(_OBSERVATION.findall(text))


def last_observation(text: str) -> tuple[str, str] | None:
    """(status, observation text) of the last step a planner message shows; None: no step yet."""
    matches = list(_OBSERVATION.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    body = text[last.end() :]
    notes = list(_LIMIT_NOTE.finditer(body))
    if notes:
        body = body[: notes[-1].start()]
    return last.group(1), body


def sections(observation: str) -> dict[str, str]:
    """The ``[output]``, ``[result]``, ``[error]`` and ``[note]`` parts of an observation."""
    found: dict[str, str] = {}
    marks = list(_SECTION.finditer(observation))
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        end = after.start() if after else len(observation)
        found.setdefault(mark.group(1), observation[mark.end() : end].strip("\n"))
    return found


def answer_from_observation(status: str, observation: str) -> str:
    """The replay planner's final answer for a step (see the module docstring)."""
    if status != "ok":
        return ""
    parts = sections(observation)
    for name in ("output", "result"):
        lines = [line.strip() for line in parts.get(name, "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


class ReplayModel:
    """A loopback OpenAI-compatible server replaying registered cells (see the module doc)."""

    def __init__(self) -> None:
        self.stub = StubLLM()
        self._tasks: dict[str, list[ReplayCell]] = {}
        self.stub.add_rule("planner", self.planner_reply)
        self.stub.add_rule("coder", self.coder_reply)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.stub.base_url

    def start(self) -> ReplayModel:
        self.stub.start()
        return self

    def stop(self) -> None:
        self.stub.stop()

    def __enter__(self) -> ReplayModel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- registration -------------------------------------------------------------------------
    def add(self, task: str, cells: list[ReplayCell] | str) -> None:
        """Register the cells to replay for ``task`` (a string: one cell of that code)."""
        if isinstance(cells, str):
            cells = [ReplayCell(cells)]
        if not cells:
            raise ValueError("a replayed task needs at least one cell")
        self._tasks[task] = list(cells)

    def cells_for(self, text: str) -> list[ReplayCell] | None:
        matches = [task for task in self._tasks if task in text]
        return self._tasks[max(matches, key=len)] if matches else None

    # -- replies ------------------------------------------------------------------------------
    def planner_reply(self, request: dict[str, Any]) -> str | None:
        text = user_text(request)
        cells = self.cells_for(text)
        if cells is None:
            return None
        done = executed_steps(text)
        if done < len(cells):
            step = cells[done].instruction
            plan = [c.instruction for c in cells[done:]]
            return json.dumps({"thought": "replay", "plan": plan, "next_step": step})
        status, observation = last_observation(text) or ("missing", "")
        answer = answer_from_observation(status, observation)
        return json.dumps({"thought": "replay", "final_answer": answer})

    def coder_reply(self, request: dict[str, Any]) -> str | None:
        text = user_text(request)
        cells = self.cells_for(text)
        if cells is None:
            return None
        cell = cells[min(executed_steps(text), len(cells) - 1)]
        return f"```python\n{cell.code.strip()}\n```\n"


def replay_settings(base_url: str, home: Path, **overrides: Any) -> Settings:
    """Settings for a replay run: configs/default.yaml with every model at ``base_url`` (no
    key), every file under ``home``, no code retries (a replayed retry repeats the cell) and no
    librarian model stages (nothing recorded to replay for them).
    ``overrides`` are dotted keys, as for ``load_settings``."""
    values: dict[str, Any] = {
        "models.default.base_url": base_url,
        "models.default.api_key_env": "",
        "models.default.model": "replay",
        "models.default.max_retries": 0,
        "models.default.timeout": 60.0,
        "library.path": str(home / "library.db"),
        "library.outbox_path": str(home / "outbox.db"),
        "executor.workdir": str(home / "runs"),
        "checkpoint_path": str(home / "checkpoints.db"),
        "agent.max_code_retries": 0,
        "librarian.generalize": False,
        "librarian.ask_model": False,
    }
    values.update(overrides)
    return load_settings(DEFAULT_CONFIG, **values)
