"""What replaying a function's recorded calls found: one :class:`ProbeOutcome` per call, one
:class:`ReplayReport` per function. Pure data; the kernel side is tools/librarian/scratch.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "SHIM_NAME",
    "ProbeOutcome",
    "ReplayReport",
    "has_returned_call",
    "main_classes",
    "refused_call",
    "returned",
    "shim_source",
]

ReplayStatus = Literal["pass", "fail", "untested", "undefinable"]

#: Name of the adapter a generalized function is replayed through (see :func:`shim_source`);
#: names starting with ``__dynagraph`` are never wrapped by the probe recorder.
SHIM_NAME = "__dynagraph_shim__"


def clip(text: str | None, limit: int = 160) -> str:
    text = "None" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class ProbeOutcome:
    """One recorded call replayed: did it give the recorded result (or raise the same error)?"""

    ok: bool
    replayable: bool
    call: str
    expected: str | None = None
    got: str | None = None
    error: str | None = None
    #: the function refused the arguments themselves (Python could not bind them to its
    #: parameters): it cannot be called this way, which is not the same as computing otherwise
    refused: bool = False
    #: the recorded call raised: agreeing on it (same exception type and message) is a
    #: secondary check, never proof that the function computes anything right
    raised: bool = False

    def describe(self) -> str:
        if not self.replayable:
            return f"{self.call}: not replayable ({self.error})"
        if self.ok:
            return f"{self.call} -> {self.got}"
        got = self.got if self.got is not None else self.error
        return f"{self.call} gave {clip(got)}, recorded {clip(self.expected)}"


@dataclass
class ReplayReport:
    """Every probe of one function replayed (or why none could be)."""

    function: str
    outcomes: list[ProbeOutcome] = field(default_factory=list)
    define_error: str | None = None

    @property
    def passed(self) -> int:
        """Recorded calls that returned and gave the recorded result again: the only proof."""
        return sum(1 for o in self.outcomes if o.replayable and o.ok and not o.raised)

    @property
    def raised_agreed(self) -> int:
        """Recorded calls that raised and raised the same exception (type and message) again."""
        return sum(1 for o in self.outcomes if o.replayable and o.ok and o.raised)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.replayable and not o.ok)

    @property
    def tested(self) -> int:
        return self.passed + self.raised_agreed + self.failed

    @property
    def untestable(self) -> int:
        return sum(1 for o in self.outcomes if not o.replayable)

    @property
    def refused_only(self) -> bool:
        """Every failed probe failed because the function cannot take its arguments."""
        failures = [o for o in self.outcomes if o.replayable and not o.ok]
        return bool(failures) and all(o.refused for o in failures)

    @property
    def status(self) -> ReplayStatus:
        """``pass`` needs at least one recorded call that *returned* and reproduces; a function
        whose replayable calls all raised (and raise alike again) is ``untested``."""
        if self.define_error is not None:
            return "undefinable"
        if self.failed:
            return "fail"
        return "pass" if self.passed else "untested"

    def summary(self) -> str:
        """One line for the librarian's report."""
        if self.define_error is not None:
            return f"does not define in a fresh kernel: {clip(self.define_error, 300)}"
        skipped = f" ({self.untestable} not replayable)" if self.untestable else ""
        if self.failed:
            first = next(o for o in self.outcomes if o.replayable and not o.ok)
            return (
                f"{self.failed}/{self.tested} probes do not reproduce{skipped}: {first.describe()}"
            )
        agreed = (
            f" ({self.raised_agreed} raising call(s) raise alike)" if self.raised_agreed else ""
        )
        if self.passed:
            return f"reproduces {self.passed}/{self.tested} probes{agreed}{skipped}"
        if self.raised_agreed:
            return (
                f"no recorded call returned: {self.raised_agreed} raising call(s) raise alike, "
                f"which proves nothing{skipped}"
            )
        if self.outcomes:
            return f"none of its {len(self.outcomes)} probes can be replayed"
        return "no recorded calls to replay"


def probe_call(name: str, probe: dict[str, Any]) -> str:
    """A recorded call as it reads in a report: ``name(3, 4, **{'k': 5})``."""
    args = str(probe.get("args_repr") or "()")
    kwargs = str(probe.get("kwargs_repr") or "{}")
    inner = args[1:-1].rstrip(",") if args.startswith("(") and args.endswith(")") else args
    if kwargs not in ("{}", ""):
        inner = f"{inner}, **{kwargs}" if inner else f"**{kwargs}"
    return clip(f"{name}({inner})", 200)


def returned(probe: dict[str, Any]) -> bool:
    """The recorded call returned a value (it did not raise)."""
    return probe.get("raised") is None


def has_returned_call(probes: list[dict[str, Any]]) -> bool:
    """Some recorded call returned and can be replayed: the function can be verified."""
    return any(returned(p) and p.get("args_b64") for p in probes)


def expected_outcome(probe: dict[str, Any]) -> str | None:
    if probe.get("raised") is not None:
        return f"raise {probe['raised']}"
    return probe.get("result_repr")


_BINDING_ERRORS = (
    r"got an unexpected keyword argument|missing \d+ required|takes \d+ positional|"
    r"takes from \d+ to \d+ positional|got multiple values for argument|"
    r"got some positional-only arguments"
)


def refused_call(name: str, error: str | None) -> bool:
    """Whether ``error`` (a replay verdict's repr of the exception) is Python refusing to bind
    the arguments to ``name``'s parameters, as opposed to an error inside the function."""
    if not error:
        return False
    pattern = rf"^TypeError\(['\"]{re.escape(name)}\(\) (?:{_BINDING_ERRORS})"
    return re.search(pattern, error) is not None


def shim_source(parameters: str, call: str) -> str:
    """An adapter with the original function's parameters (``Parameters.source``) that returns
    ``call``: replaying the original's probes through it checks a generalized function that
    takes other parameters (``call`` is written with the original's parameter names, e.g.
    ``count_above(data_frame=df, column="Score", threshold=8)``)."""
    return f"def {SHIM_NAME}({parameters}):\n    return {call}\n"


#: Opcodes that push a string (the module and name a STACK_GLOBAL takes come from these).
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)


def main_classes(probes: list[dict[str, Any]]) -> set[str]:
    """The names a recorded call's pickled arguments look up in ``__main__`` (classes the
    task's cells defined, such as the ``Item`` a ``total(items)`` was called with), read from
    the pickles' opcodes: nothing is unpickled, so no recorded code runs here."""
    import base64
    import pickletools

    names: set[str] = set()
    for probe in probes:
        try:
            data = base64.b64decode(probe.get("args_b64") or "")
            ops = list(pickletools.genops(data))
        except Exception:  # noqa: BLE001 - not base64, or a truncated or foreign pickle
            continue
        memo: dict[int, Any] = {}
        recent: list[Any] = []  # the values pushed last (strings, or None for anything else)
        for op, arg, _ in ops:
            if op.name == "GLOBAL" and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                if module == "__main__":
                    names.add(name)
            elif op.name == "STACK_GLOBAL" and recent[-2:-1] == ["__main__"] and recent[-1]:
                names.add(str(recent[-1]))
            if op.name in _STRING_OPS:
                recent.append(arg)
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(arg)))
            elif op.name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = recent[-1] if recent else None
            elif op.name != "FRAME":
                recent.append(None)
            recent = recent[-2:]
    return {n for n in names if n.isidentifier()}
