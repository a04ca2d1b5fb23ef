"""How many of the plan's next steps the coder has embedded ahead, per task.

Why: a step's library search needs its query's vector, and the bundled embedder takes ~30-40
ms a short text on 2 busy cores, more than a zero-latency step; a batch costs less a text
(short texts on an idle core: ~15 ms a text in a batch of 10, ~29 alone; bench/README.md 13k).
The coder asks the library to embed the plan's next steps while this step's model call and
cell run (nodes/coder.py ``prepare_next``); how many is a read-ahead window, as file systems
read ahead: a task starts with the whole window (:data:`MAX_STEPS_AHEAD`: the first plan, the
next step alone and the rest in one batch), the window falls back to one when the step the
planner asked for was not one embedded ahead (it changed course) and doubles again each time
it was. A planner that rewrites its plan every turn costs, after its first turn, one text a
step, as without a window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["MAX_STEPS_AHEAD", "Readahead"]

#: the most steps embedded ahead at once
MAX_STEPS_AHEAD = 8


class Readahead:
    """The read-ahead window of each task (by kernel key), the last ``keep`` tasks kept."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._tasks: OrderedDict[str, tuple[int, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def steps(self, key: str, instruction: str, upcoming: list[str]) -> list[str]:
        """The steps of ``upcoming`` (the plan after ``instruction``, the step being written
        now) to embed ahead for task ``key``: the whole window at the task's first step, then
        the window doubled when ``instruction`` was among the steps chosen last time, else
        one."""
        with self._lock:
            before = self._tasks.pop(key, None)
            if before is None:  # the task's first plan: read ahead in full
                window = MAX_STEPS_AHEAD
            elif instruction in before[1]:
                window = min(before[0] * 2, MAX_STEPS_AHEAD)
            else:  # the planner changed course: what was embedded ahead was not used
                window = 1
            chosen = upcoming[:window]
            self._tasks[key] = (window, frozenset(chosen))
            while len(self._tasks) > self.keep:
                self._tasks.popitem(last=False)
        return chosen
