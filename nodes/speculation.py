"""Speculative coder calls: the coder writes the plan's next step while the planner decides.

Why: in the default mode a step is two model calls in a row, the planner's and then the
coder's, so with a real model a step waits for both. The planner usually keeps to its own plan,
and then everything the coder is given is known before the planner answers: the task, the
steps so far (the planner reads the same ones) and the plan's next step. With
``agent.speculate`` the planner node starts that coder call in a background thread beside its
own. When the planner's next step is the plan's next step (the same words, as nodes/plan.py
compares them) the coder node takes the speculative cell instead of asking again, and the step
waits for the slower of the two calls instead of their sum; when the planner changes course,
the speculative reply is dropped and its tokens are still counted. Unlike ``agent.follow_plan``
the planner still reads every observation and decides every step: speculation trades tokens
(one wasted coder call per change of course) for latency, never the planner's judgement.

The registry lives in the process (a thread cannot be checkpointed): a task resumed in another
process finds nothing and its coder simply asks. A speculative call still out when its task
ends is not waited for, and its tokens are not counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dynagraph.nodes.plan import same_step
from dynagraph.nodes.protocol import add_usage
from dynagraph.nodes.state import HitRow

log = logging.getLogger(__name__)

#: What a speculative coder call yields: (code, hit rows, token usage).
Cell = tuple[str, list[HitRow], dict[str, int]]


@dataclass
class Speculation:
    """One speculative coder call for ``instruction``: running until ``done`` is set."""

    instruction: str
    done: threading.Event = field(default_factory=threading.Event)
    cell: Cell | None = None
    usage: dict[str, int] = field(default_factory=dict)  # of the call(s), even when it failed


class Speculations:
    """Speculative coder calls per task (keyed like the kernels: nodes/services.kernel_key).

    At most one is open per task; those dropped stay until their usage is collected by
    :meth:`settle`, so a change of course still pays for the tokens it wasted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Speculation] = {}
        self._dropped: dict[str, list[Speculation]] = {}

    def start(self, key: str, instruction: str, work: Callable[[], Cell]) -> None:
        """Run ``work`` (the coder's search and model call for ``instruction``) in a daemon
        thread: a call still out at the interpreter's exit does not hold the exit up."""
        speculation = Speculation(instruction)

        def run() -> None:
            try:
                speculation.cell = work()
                speculation.usage = speculation.cell[2]
            except Exception as exc:  # the coder's own call reports it again, if it recurs
                speculation.usage = dict(getattr(exc, "usage", None) or {})
                log.debug("the speculative coder call failed: %s", exc)
            finally:
                speculation.done.set()

        with self._lock:
            self._drop_locked(key)
            self._open[key] = speculation
        threading.Thread(target=run, name="dynagraph-speculative-coder", daemon=True).start()

    def take(self, key: str, instruction: str) -> Cell | None:
        """The speculative cell for ``instruction``, waited for if still out; None when there
        is none, it was for another step (then it is dropped) or it failed."""
        with self._lock:
            speculation = self._open.pop(key, None)
            if speculation is not None and not same_step(speculation.instruction, instruction):
                self._dropped.setdefault(key, []).append(speculation)
                speculation = None
        if speculation is None:
            return None
        speculation.done.wait()
        if speculation.cell is None:
            with self._lock:  # its failed calls' tokens are counted by the next settle
                self._dropped.setdefault(key, []).append(speculation)
        return speculation.cell

    def close(self, key: str) -> dict[str, int]:
        """The task is ending (the planner answered or failed): the open call's reply will not
        be used. Returns the usage of the task's dropped calls that have ended; the others
        are forgotten, uncounted."""
        with self._lock:
            self._drop_locked(key)
        usage = self.settle(key)
        with self._lock:
            self._dropped.pop(key, None)
        return usage

    def settle(self, key: str) -> dict[str, int]:
        """Token usage of this task's dropped calls that have ended since the last settle."""
        with self._lock:
            dropped = self._dropped.pop(key, [])
            ended = [s for s in dropped if s.done.is_set()]
            if len(ended) < len(dropped):
                self._dropped[key] = [s for s in dropped if not s.done.is_set()]
        usage: dict[str, int] = {}
        for speculation in ended:
            usage = add_usage(usage, speculation.usage)
        return usage

    def _drop_locked(self, key: str) -> None:
        speculation = self._open.pop(key, None)
        if speculation is not None:
            self._dropped.setdefault(key, []).append(speculation)
