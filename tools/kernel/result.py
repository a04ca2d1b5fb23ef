"""What one cell did (ExecutionResult), and its rendering as an observation for the model."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dynagraph.tools.kernel.capture import (
    OutputCapture,
    collapse_carriage_returns,
    cut_marker,
    head_tail,
)

__all__ = ["NAMESPACE_LOST_NOTE", "ExecutionResult", "Status"]

Status = Literal["ok", "error", "timeout", "died"]

NAMESPACE_LOST_NOTE = "kernel restarted: namespace lost, re-define what you need"
FINAL_KINDS = ("result", "error")  # output kinds kept in their own fields and sections
_CUT_RE = re.compile(r"\[\.\.\. (\d+) characters cut \.\.\.\]")


@dataclass
class ExecutionResult:
    """What one cell did, kept structured for the executor and rendered for the model on demand.

    `outputs` holds the kept output in arrival order as (kind, text); kinds are "stdout", "stderr",
    "display", "truncated" (the cut marker, where the middle of the output was dropped), then
    "result" and "error" (also in `result` / `traceback`, which to_observation renders).
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    outputs: list[tuple[str, str]] = field(default_factory=list)
    result: str | None = None
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None
    restarted: bool = False
    namespace_lost: bool = False
    truncated_chars: int = 0
    files: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    timeout_s: float | None = None
    notes: list[str] = field(default_factory=list)
    #: the execute_reply's user_expressions (name -> {status, data, ...}); IPython evaluates
    #: them only after a cell that raised no error
    user_expressions: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> bool:
        return self.status == "ok"

    def _status_line(self) -> str:
        took = f"{self.duration_s:.2f} s"
        if self.status == "ok":
            return f"status: ok ({took})"
        if self.status == "error":
            return f"status: error ({self.error_name or 'unknown error'}) after {took}"
        if self.status == "timeout":
            limit = f"{self.timeout_s:g} s" if self.timeout_s is not None else "its time limit"
            if self.restarted:
                how = "did not stop when interrupted, so the kernel was restarted"
            else:
                how = "was interrupted; variables defined before this cell are kept"
            return f"status: timeout: the cell ran past {limit} and {how}"
        return f"status: died: the kernel process died during this cell ({took}) and was restarted"

    def to_observation(self, max_chars: int = 4000) -> str:
        """Text for the model: status, output, result, traceback and notes, within `max_chars`."""
        notes = list(self.notes)
        if self.files:
            notes.append("saved images: " + ", ".join(self.files))
        if self.namespace_lost:
            notes.append(NAMESPACE_LOST_NOTE)
        header = self._status_line()
        footer = "".join(f"\n[note] {note}" for note in notes)
        budget = max(max_chars - len(header) - len(footer) - 40, 200)

        error_text = ""
        has_output = any(kind not in FINAL_KINDS for kind, _ in self.outputs)
        if self.traceback or self.error_name:
            error_text = self.traceback or f"{self.error_name}: {self.error_value}"
            share = budget * 3 // 5 if (has_output or self.result) else budget
            error_text, _ = head_tail(error_text, share)
            budget -= len(error_text)
        result_text = ""
        if self.result is not None:
            share = budget // 2 if has_output else budget
            result_text, _ = head_tail(self.result, max(share, 0))
            budget -= len(result_text)

        output_chars = sum(len(text) for kind, text in self.outputs if kind not in FINAL_KINDS)
        if output_chars > budget:  # room for the cut marker and its newlines
            budget -= len(cut_marker(output_chars + self.truncated_chars)) + 2
        capture = OutputCapture(max(budget, 0))
        for kind, text in self.outputs:
            if kind in FINAL_KINDS:
                continue
            if kind == "truncated":
                match = _CUT_RE.search(text)
                capture.skip(int(match.group(1)) if match else 0)
            else:
                capture.add(kind, text)
        output_text = "".join(
            f"\n{text}\n" if kind == "truncated" else collapse_carriage_returns(text)
            for kind, text in capture.items()
        )
        sections = [header]
        if output_text.strip():
            sections.append("[output]\n" + output_text.strip("\n"))
        if result_text:
            sections.append("[result]\n" + result_text)
        if error_text:
            sections.append("[error]\n" + error_text.strip("\n"))
        if len(sections) == 1 and self.status == "ok":
            sections.append("(no output)")
        return "\n".join(sections) + footer
