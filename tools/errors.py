"""One error base for everything dynagraph raises on purpose.

Every error a user can meet is a :class:`DynagraphError` whose message is one line that says what
happened and what to set. The command line maps them to exit codes by *type* (``exit_code``),
never by matching message text: 2 for configuration, endpoint, environment and input problems (the
user must change something before trying again), 1 for a task that ran and failed.
"""

from __future__ import annotations

from collections.abc import Iterator


class DynagraphError(RuntimeError):
    """Base of every deliberate dynagraph error; ``str(error)`` is the one line to print.

    A RuntimeError so that a LangGraph server (Studio, ``langgraph dev``) shows its message:
    the server passes a run's error message on for RuntimeError and ValueError only, and
    said "An internal error occurred" for every other one (an attack)."""

    exit_code: int = 1


class ConfigError(DynagraphError):
    """The configuration is unusable; the message says which key or variable to set."""

    exit_code = 2


class EndpointError(DynagraphError):
    """A service the agent talks to (model, embedding, Weaviate) cannot be used right now."""

    exit_code = 2


class EnvironmentProblem(DynagraphError):
    """Something on this machine is missing or unusable (bubblewrap, a kernel, a read-only path)."""

    exit_code = 2


class InputError(DynagraphError):
    """A file or argument the user gave cannot be used; the message names the file and line."""

    exit_code = 2


class TaskFailed(DynagraphError):
    """A task ran and did not reach an answer."""

    exit_code = 1


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
