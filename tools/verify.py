"""Probe replay in a scratch kernel: does a function still give the results recorded for it?

Why a separate kernel: the task's kernel holds the task's whole namespace, so a function that
only works there (a global set by an earlier cell, a helper never extracted, an import alias
lost) would pass there. A fresh kernel, bootstrapped like a task kernel, in which only the
function, its imports and globals and the library functions it calls are defined, proves that
what the library would store is self-sufficient; replaying the recorded calls proves that it
still computes what it computed during the task.

One scratch kernel serves a whole librarian run (every candidate of a task, every tool of a
bench): it starts on the first check only (a task whose candidates are all exact duplicates
starts none; a fresh kernel costs ~0.4 s, more on a busy machine). Isolation between checks:
before each check the kernel's names are reset to what the bootstrap left (names added are
deleted, names replaced are restored), then the definitions the check needs are run, so a
function that relies on a name an earlier check defined (an import alias, a helper) fails as
it would in a fresh kernel. What a reset cannot undo (modules already imported and their
state, the working directory, environment variables) is shared, as it would be by successive
cells of one task. A replay that runs past ``probe_timeout`` is interrupted (the kernel
restarts if it must and is bootstrapped again by the kernel factory's hook), and counts as a
failed probe.

Replays compare kernel-side (``tools/probes.py: replay_code``): the recorded pickles are only
ever loaded inside kernels, never in this process.
"""

from __future__ import annotations

import ast
import re
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dynagraph.tools import probes as probe_codec
from dynagraph.tools.kernel import KernelSession

__all__ = ["ProbeOutcome", "ReplayReport", "ScratchVerifier", "shim_source"]

ReplayStatus = Literal["pass", "fail", "untested", "undefinable"]

#: Name of the adapter a generalized function is replayed through (see :func:`shim_source`);
#: names starting with ``__dynagraph`` are never wrapped by the probe recorder.
SHIM_NAME = "__dynagraph_shim__"
_REPLAY_OUTPUT_LIMIT = 4 * 1024 * 1024

#: Run once after the bootstrap: remembers the kernel's names and defines the reset.
BASELINE_CODE = """
def __dynagraph_reset__(ns=globals()):
    base = ns['__dynagraph_baseline__']
    for key in [k for k in ns if k not in base]:
        del ns[key]
    for key, value in base.items():
        if ns.get(key) is not value:
            ns[key] = value
__dynagraph_baseline__ = dict(globals())
__dynagraph_baseline__['__dynagraph_baseline__'] = __dynagraph_baseline__
"""
#: Run before each check: back to the names the bootstrap left.
RESET_CODE = "__dynagraph_reset__()\n"


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

    def describe(self) -> str:
        if not self.replayable:
            return f"{self.call}: not replayable ({self.error})"
        if self.ok:
            return f"{self.call} -> {self.got}"
        got = self.got if self.got is not None else self.error
        return f"{self.call} gave {_clip(got)}, recorded {_clip(self.expected)}"


@dataclass
class ReplayReport:
    """Every probe of one function replayed (or why none could be)."""

    function: str
    outcomes: list[ProbeOutcome] = field(default_factory=list)
    define_error: str | None = None

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.replayable and o.ok)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.replayable and not o.ok)

    @property
    def tested(self) -> int:
        return self.passed + self.failed

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
        if self.define_error is not None:
            return "undefinable"
        if self.failed:
            return "fail"
        return "pass" if self.passed else "untested"

    def summary(self) -> str:
        """One line for the librarian's report."""
        if self.define_error is not None:
            return f"does not define in a fresh kernel: {_clip(self.define_error, 300)}"
        skipped = f" ({self.untestable} not replayable)" if self.untestable else ""
        if self.failed:
            first = next(o for o in self.outcomes if o.replayable and not o.ok)
            return (
                f"{self.failed}/{self.tested} probes do not reproduce{skipped}: {first.describe()}"
            )
        if self.passed:
            return f"reproduces {self.passed}/{self.tested} probes{skipped}"
        if self.outcomes:
            return f"none of its {len(self.outcomes)} probes can be replayed"
        return "no recorded calls to replay"


def _clip(text: str | None, limit: int = 160) -> str:
    text = "None" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _probe_call(name: str, probe: dict[str, Any]) -> str:
    args = str(probe.get("args_repr") or "()")
    kwargs = str(probe.get("kwargs_repr") or "{}")
    inner = args[1:-1].rstrip(",") if args.startswith("(") and args.endswith(")") else args
    if kwargs not in ("{}", ""):
        inner = f"{inner}, **{kwargs}" if inner else f"**{kwargs}"
    return _clip(f"{name}({inner})", 200)


def _expected(probe: dict[str, Any]) -> str | None:
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
    """An adapter with the original function's parameters that returns ``call``: replaying the
    original's probes through it checks a generalized function that takes other parameters
    (``call`` is written with the original's parameter names, e.g.
    ``count_above(data_frame=df, column="Score", threshold=8)``)."""
    return f"def {SHIM_NAME}({parameters}):\n    return {call}\n"


def parameters_of(code: str) -> str:
    """The parameter list of the first function ``code`` defines, as source (``a, b=2``)."""
    tree = ast.parse(textwrap.dedent(code))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    return ast.unparse(node.args)


class ScratchVerifier:
    """Replays probes in one scratch kernel, started on first use, shut down by :meth:`close`.

    ``kernel_factory(workdir)`` returns a started, bootstrapped kernel (``Services.
    scratch_kernel``); the verifier owns the temporary folder it passes. ``cwd``, when it
    exists, is where replays run (the task's working directory, so that a function reading a
    file the task used finds it).
    """

    def __init__(
        self,
        kernel_factory: Callable[[Path], KernelSession],
        *,
        probe_timeout: float = 10.0,
        define_timeout: float = 60.0,
        cwd: str | Path | None = None,
    ) -> None:
        self._factory = kernel_factory
        self.probe_timeout = probe_timeout
        self.define_timeout = define_timeout
        self.cwd = Path(cwd) if cwd else None
        self._session: KernelSession | None = None
        self._folder: Path | None = None
        self.kernels_started = 0

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._session is not None

    def session(self) -> KernelSession:
        if self._session is None:
            self._folder = Path(tempfile.mkdtemp(prefix="dynagraph-scratch-"))
            session = self._factory(self._folder)
            self.kernels_started += 1
            self._prepare(session)
            session.on_restart.append(self._prepare)  # after the factory's bootstrap hook
            self._session = session
        return self._session

    def _prepare(self, session: KernelSession) -> None:
        """Enter the working directory and take the baseline the checks reset to."""
        code = BASELINE_CODE
        if self.cwd is not None and self.cwd.is_dir():
            code = f"__import__('os').chdir({str(self.cwd)!r})\n" + code
        result = session.execute(code, timeout=30, silent=True)
        if not result.ok():
            raise RuntimeError(f"the scratch kernel could not be prepared: {result.error_value}")

    def reset(self) -> None:
        """Back to the names the bootstrap left (see the module docstring)."""
        self.session().execute(RESET_CODE, timeout=30, silent=True)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.shutdown()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> ScratchVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work -----------------------------------------------------------------------------------
    def define(self, sources: Sequence[str]) -> str | None:
        """Run each source in order; the first error as one line, or None if all ran."""
        session = self.session()
        for source in sources:
            if not source.strip():
                continue
            result = session.execute(source, timeout=self.define_timeout, silent=True)
            if not result.ok():
                what = result.error_name or result.status
                return f"{what}: {result.error_value or result.to_observation(300)}"
        return None

    def replay(self, name: str, probes: Sequence[dict[str, Any]]) -> list[ProbeOutcome]:
        """Call ``name`` (defined in the kernel) with each probe's arguments and compare."""
        session = self.session()
        outcomes: list[ProbeOutcome] = []
        lost = False
        for probe in probes:
            call, expected = _probe_call(name, probe), _expected(probe)
            if not probe.get("args_b64"):
                outcomes.append(
                    ProbeOutcome(False, False, call, expected, error="arguments not pickled")
                )
                continue
            if lost:
                outcomes.append(
                    ProbeOutcome(False, True, call, expected, error="not run: the kernel restarted")
                )
                continue
            result = session.execute(
                probe_codec.replay_code(name, probe),
                timeout=self.probe_timeout,
                silent=True,
                output_limit=_REPLAY_OUTPUT_LIMIT,
            )
            if result.status == "timeout" or result.status == "died":
                lost = result.restarted or result.namespace_lost
                why = (
                    f"timed out after {self.probe_timeout:g} s"
                    if result.status == "timeout"
                    else "the kernel died"
                )
                outcomes.append(ProbeOutcome(False, True, call, expected, error=why))
                continue
            try:
                verdict = probe_codec.parse_verdict(result.stdout)
            except ValueError:
                error = f"{result.error_name}: {result.error_value}" if result.error_name else None
                outcomes.append(
                    ProbeOutcome(False, True, call, expected, error=error or "no verdict")
                )
                continue
            outcomes.append(
                ProbeOutcome(
                    ok=bool(verdict.get("ok")),
                    replayable=bool(verdict.get("replayable", True)),
                    call=call,
                    expected=expected,
                    got=verdict.get("result_repr"),
                    error=verdict.get("error"),
                    refused=not verdict.get("ok") and refused_call(name, verdict.get("error")),
                )
            )
        return outcomes

    def check(
        self,
        name: str,
        sources: Sequence[str],
        probes: Sequence[dict[str, Any]],
        *,
        shim: str | None = None,
    ) -> ReplayReport:
        """Define ``sources`` (dependencies first, the function last), then replay ``probes``
        on ``name``, or through ``shim`` (see :func:`shim_source`) when one is given."""
        report = ReplayReport(function=name)
        self.reset()
        report.define_error = self.define([*sources, shim or ""])
        if report.define_error is None and probes:
            report.outcomes = self.replay(SHIM_NAME if shim else name, probes)
            if shim:
                for outcome in report.outcomes:
                    outcome.call = outcome.call.replace(SHIM_NAME, name, 1)
        return report

    def recorded_probes(self) -> dict[str, list[dict[str, Any]]]:
        """The calls the kernel's probe recorder saw since the last fetch, per function name
        (the store is cleared). After a check, these are the probes of the functions called,
        in their own signatures (e.g. a generalized function called through a shim)."""
        if self._session is None:
            return {}
        result = self._session.execute(
            probe_codec.FETCH_CODE, timeout=30, silent=True, output_limit=64 * 1024 * 1024
        )
        if not result.ok():
            return {}
        try:
            recorded, _calls = probe_codec.parse_fetched(result.stdout)
        except ValueError:
            return {}
        return recorded
