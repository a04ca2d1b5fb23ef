"""What every benchmark loader produces: one :class:`EvalTask` per question."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynagraph.tools.errors import InputError


class EvalDataError(InputError, ValueError):
    """The data a user pointed at cannot be read; the message says what was expected."""


@dataclass
class EvalTask:
    """One benchmark question.

    ``question`` is the question as the dataset states it (kept in the results); ``prompt`` is
    what the agent is given: the question plus what it needs to answer it (a table, an attached
    file's path, choices) and the expected answer format.
    """

    id: str
    question: str
    prompt: str
    expected: str
    level: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
