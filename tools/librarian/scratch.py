"""Probe replay in a scratch kernel: does a function still give the results recorded for it?

Why a separate kernel: the task's kernel holds the task's whole namespace, so a function that
only works there (a global set by an earlier cell, a helper never extracted, an import alias
lost) would pass there. A fresh kernel, bootstrapped like a task kernel, in which only the
function, its imports and globals and the functions it calls are defined, each in a namespace
of its own as a later task's kernel defines them (tools/librarian/context.py builds those
cells), proves that what the library would store is self-sufficient; replaying the recorded
calls proves that it still computes what it computed during the task.

One scratch kernel serves a whole librarian run (every candidate of a task, every tool of a
bench): it is asked for on the first check only (a task whose candidates are all exact
duplicates needs none; a fresh kernel costs ~0.4 s, more on a busy machine), and handed back by
:meth:`ScratchVerifier.close` to ``release`` (the agent's graphs/scratch.py keeps it warm for up
to ``librarian.scratch_reuse`` tasks of the process). Isolation between checks:
before each check the kernel's names are reset to what the bootstrap left (names added are
deleted, names replaced are restored), then the definitions the check needs are run, so a
function that relies on a name an earlier check defined (an import alias, a helper) fails as
it would in a fresh kernel. The reset and the definitions are one cell; each check leaves a
mark the next reset must clear, so a reset that a checked function's code deleted or replaced
is seen, and the kernel is restarted instead of trusted. What a reset cannot undo (modules
already imported and their state, the working directory, environment variables) is shared,
as it would be by successive cells of one task, and by the next tasks of a kept kernel (one
whose modules a replay patched is not kept: :func:`modules_changed`). A replay that runs past
``probe_timeout`` is interrupted (the kernel restarts if it must and is bootstrapped again by
the kernel factory's hook), and counts as a failed probe.

Replays compare kernel-side (``tools/kernel/probes.py: replay_code``): the recorded pickles
are only ever loaded inside kernels, never in this process. What a replay found is described by
tools/librarian/replay.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import secrets
import shutil
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dynagraph.tools.kernel import KernelSession, definitions, reaper
from dynagraph.tools.kernel import probes as probe_codec
from dynagraph.tools.librarian.replay import (
    SHIM_NAME,
    ProbeOutcome,
    ReplayReport,
    expected_outcome,
    probe_call,
    refused_call,
    returned,
)
from dynagraph.tools.librarian.settings import LibrarianSettings
from dynagraph.tools.tempfolders import SCRATCH_PREFIX, private_folder

__all__ = ["ScratchVerifier", "modules_changed"]

log = logging.getLogger(__name__)

_REPLAY_OUTPUT_LIMIT = 4 * 1024 * 1024

#: Run once after the bootstrap (a kernel kept from an earlier verifier has it already):
#: remembers the kernel's names and compiler flags and defines the reset.
BASELINE_CODE = """
if '__dynagraph_baseline__' not in globals():
  def __dynagraph_reset__(ns=globals(), compiler=get_ipython().compile):
    base = ns['__dynagraph_baseline__']
    for key in [k for k in ns if k not in base]:
        del ns[key]
    for key, value in base.items():
        if ns.get(key) is not value:
            ns[key] = value
    compiler.flags = base['__dynagraph_compile_flags__']  # a checked __future__ import's
  def __dynagraph_modules_changed__(base=None, _missing=object()):
    import sys
    if base is None:  # the first call takes the snapshot: {module: {name: id(function)}}
        base = {}
        for name, module in list(sys.modules.items()):
            values = getattr(module, '__dict__', None)
            if name != '__main__' and isinstance(values, dict):
                skip = ('_', '__', '___', 'last_type', 'last_value', 'last_traceback', 'last_exc')
                base[name] = {
                    k: id(v) for k, v in values.items() if callable(v) and k not in skip
                }
        return base
    swapped = {('sys', 'excepthook'), ('builtins', 'input'), ('getpass', 'getpass')}  # by
    for name, ids in base.items():  # ipykernel itself, around every request
        values = getattr(sys.modules.get(name), '__dict__', None)
        if not isinstance(values, dict):
            return True
        for k, i in ids.items():
            if id(values.get(k, _missing)) != i and (name, k) not in swapped:
                return True
    return False
  __dynagraph_modules__ = __dynagraph_modules_changed__()
  __dynagraph_compile_flags__ = get_ipython().compile.flags
  __dynagraph_baseline__ = dict(globals())
  __dynagraph_baseline__['__dynagraph_baseline__'] = __dynagraph_baseline__
__dynagraph_reset__()
"""
#: Prints whether a function or class of a module the kernel had at its baseline was replaced
#: or removed since (a replay monkeypatched ``json.dumps`` or ``builtins.abs``). Data values
#: are not compared (importing pandas resets ``time.tzname``), nor names added (importing a
#: submodule adds one to its package), nor what ipykernel swaps around every request.
MODULES_CHANGED_CODE = "print(__dynagraph_modules_changed__(__dynagraph_modules__))\n"


def reset_code(failed_marker: str) -> str:
    """Run before each check: back to the names (and compiler flags: a ``__future__`` import)
    the bootstrap left. The check's mark must be gone after it, so a reset that a checked
    function's code deleted, replaced or broke is seen, not trusted: then ``failed_marker``
    (the verifier's own, not guessable by the code checked) is printed first."""
    return f"""try:
    __dynagraph_reset__()
    assert '__dynagraph_checked__' not in globals()
except BaseException:
    print({failed_marker!r})
    raise
__dynagraph_checked__ = True
"""


#: Seconds the definitions of one check may take (imports of heavy modules included).
DEFINE_TIMEOUT = 60.0
_DEFAULT_PROBE_TIMEOUT: float = LibrarianSettings.model_fields["probe_timeout"].default


def outcome_of(
    name: str, probe: dict[str, Any], verdict: dict[str, Any], call: str, expected: str | None
) -> ProbeOutcome:
    """A kernel-side verdict as a :class:`ProbeOutcome`. The kernel compares a raising call by
    exception type only; here a raising call agrees only if the message is the same too
    (``NameError("name 'x' is not defined")`` is not ``NameError("name 'y' ...")``); with the
    same type and another message the call settles nothing (counted as not replayable)."""
    raised = not returned(probe)
    ok = bool(verdict.get("ok"))
    replayable = bool(verdict.get("replayable", True))
    if ok and raised and verdict.get("error") != probe.get("raised"):
        # same type, other message (an address, another name): neither agreement nor proof
        ok, replayable = False, False
    return ProbeOutcome(
        ok=ok,
        replayable=replayable,
        call=call,
        expected=expected,
        got=verdict.get("result_repr"),
        error=verdict.get("error"),
        refused=not ok and refused_call(name, verdict.get("error")),
        raised=raised,
    )


def modules_changed(session: KernelSession) -> bool:
    """Whether the kernel's modules differ from its baseline (see MODULES_CHANGED_CODE); True
    when it cannot tell (no baseline, the kernel does not answer): such a kernel is not kept for
    another task (graphs/scratch.py)."""
    try:
        result = session.execute(MODULES_CHANGED_CODE, timeout=30, silent=True)
    except Exception:  # a closed or broken session: not worth keeping
        return True
    return not (result.ok() and result.stdout.strip() == "False")


class ScratchVerifier:
    """Replays probes in one scratch kernel, asked for on first use, handed back by :meth:`close`.

    ``kernel_factory(workdir)`` returns a started, bootstrapped kernel (``Services.
    scratch_kernel``); the verifier owns the temporary folder it passes. ``cwd``, when it
    exists, is where replays run (the task's working directory, so that a function reading a
    file the task used finds it); it is passed on as ``kernel_factory(workdir, cwd=cwd)``, so
    that a sandboxed kernel can be given that folder. ``release(session, then=cleanup)``
    takes the kernel back at :meth:`close` (default: reaped in the background;
    ``Services.release_scratch`` may keep it warm for the next task, whose verifier then
    resets it to its baseline before its first check like before any check).
    """

    def __init__(
        self,
        kernel_factory: Callable[..., KernelSession],
        *,
        probe_timeout: float = _DEFAULT_PROBE_TIMEOUT,
        cwd: str | Path | None = None,
        release: Callable[..., None] | None = None,
    ) -> None:
        self._factory = kernel_factory
        self._release = release or reaper.reap
        self.probe_timeout = probe_timeout
        self.cwd = Path(cwd) if cwd else None
        self._session: KernelSession | None = None
        self._folder: Path | None = None
        self._reset_failed = f"__DYNAGRAPH_RESET_FAILED_{secrets.token_hex(8)}__"
        self._reset_cell = reset_code(self._reset_failed)

    # -- lifecycle ------------------------------------------------------------------------------
    def session(self) -> KernelSession:
        if self._session is None:
            self._folder = private_folder(SCRATCH_PREFIX)  # named after this process
            # a sandboxed kernel sees `cwd` only if its factory binds it in (Services does)
            cwd = {"cwd": self.cwd} if self.cwd is not None else {}
            session = self._factory(self._folder, **cwd)
            self._prepare(session)
            session.on_restart.append(self._prepare)  # after the factory's bootstrap hook
            self._session = session
        return self._session

    def _prepare(self, session: KernelSession) -> None:
        """Enter the working directory, install the compare helpers (a task kernel's bootstrap
        has them; another factory's kernel may not) and the definition helper, and take the
        baseline the checks reset to: the replays then leave the helpers out
        (``replay_code(installed=True)``), and the definition cells do not install theirs again
        after each reset."""
        code = probe_codec.INSTALL_COMPARE_CODE + definitions.INSTALL_CODE + BASELINE_CODE
        if self.cwd is not None and self.cwd.is_dir():
            code = f"__import__('os').chdir({str(self.cwd)!r})\n" + code
        result = session.execute(code, timeout=30, silent=True)
        if not result.ok():
            raise RuntimeError(f"the scratch kernel could not be prepared: {result.error_value}")

    def close(self) -> None:
        """Refuse further checks now; the kernel is shut down (then its folder removed) in the
        background (tools/kernel/reaper.py: reaper.drain() waits), so a task's answer never
        waits for it."""
        session, self._session = self._session, None
        folder, self._folder = self._folder, None
        if folder is None:
            return
        remove = functools.partial(shutil.rmtree, folder, ignore_errors=True)
        if session is not None:
            with contextlib.suppress(ValueError):  # the next verifier prepares it itself
                session.on_restart.remove(self._prepare)
            self._release(session, then=remove)
        else:
            remove()

    def __enter__(self) -> ScratchVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work -----------------------------------------------------------------------------------
    def define(self, sources: Sequence[str], *, reset: bool = False) -> str | None:
        """Run the sources in order, after the reset to the baseline when ``reset``; the first
        error as one line, or None if all ran. They run as one cell (a round trip each was
        most of a check's time), except a source that must begin a cell of its own. A reset
        that an earlier check's code broke restarts the kernel (bootstrap and baseline again,
        by the restart hooks), once, and the sources run in the new one."""
        failed = self._define_cells(sources, reset=reset)
        if failed != self._reset_failed:
            return failed
        log.warning("the scratch kernel's reset was broken by a checked function: restarting")
        self.session().restart()
        failed = self._define_cells(sources, reset=reset)
        if failed == self._reset_failed:  # a new kernel's own reset: its bootstrap is broken
            return "KernelError: the scratch kernel's reset failed in a new kernel"
        return failed

    def _define_cells(self, sources: Sequence[str], *, reset: bool) -> str | None:
        """One attempt of :meth:`define`: the first error as one line, the verifier's marker
        when the reset itself failed, or None."""
        session = self.session()
        start = [self._reset_cell] if reset else []
        count = sum(1 for source in sources if source.strip())
        for parts in _cell_parts(start, sources):
            cell = "".join(text for text, _ in parts)
            result = session.execute(cell, timeout=DEFINE_TIMEOUT, silent=True)
            if not result.ok():
                if reset and (result.stdout or "").startswith(self._reset_failed):
                    return self._reset_failed
                what = result.error_name or result.status
                error = result.error_value or result.to_observation(300)
                return f"{what}: {_located(error, parts, count)}"
            failed = definitions.reported_failures(result.stdout or "")  # its own report
            if failed:
                return _LIBRARY_FILE.sub(r"(line \2 of \1)", next(iter(failed.values())), count=1)
        return None

    def replay(self, name: str, probes: Sequence[dict[str, Any]]) -> list[ProbeOutcome]:
        """Call ``name`` (defined in the kernel) with each probe's arguments and compare."""
        session = self.session()
        outcomes: list[ProbeOutcome] = []
        lost = False
        for probe in probes:
            call, expected = probe_call(name, probe), expected_outcome(probe)
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
                probe_codec.replay_code(name, probe, installed=True),
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
            outcomes.append(outcome_of(name, probe, verdict, call, expected))
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
        on ``name``, or through ``shim`` (see ``replay.shim_source``) when one is given."""
        report = ReplayReport(function=name)
        report.define_error = self.define([*sources, shim or ""], reset=True)
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
        recorded, _calls = probe_codec.fetch_probes(self._session)
        return recorded


def _joined_cells(start: list[str], sources: Sequence[str]) -> list[str]:
    """``start`` and the non-blank ``sources`` (each dedented, as IPython runs a cell that
    begins indented) as few cells as may be. A ``__future__`` import must begin its cell, so
    its source begins a new one; a cell magic (``%%``) takes the whole cell, so its source is
    a cell alone."""
    return ["".join(text for text, _ in cell) for cell in _cell_parts(start, sources)]


def _cell_parts(start: list[str], sources: Sequence[str]) -> list[list[tuple[str, int | None]]]:
    """The cells of :func:`_joined_cells` as their parts: each text with the index of its
    source among the non-blank ``sources`` (None for ``start``'s)."""
    cells: list[list[tuple[str, int | None]]] = [[(text, None) for text in start]]
    for index, source in enumerate(s for s in sources if s.strip()):
        source = textwrap.dedent(source)
        magic = source.lstrip().startswith("%%")
        if cells[-1] and (magic or "__future__" in source):
            cells.append([])
        cells[-1].append((source if source.endswith("\n") else source + "\n", index))
        if magic:
            cells.append([])
    return [cell for cell in cells if cell]


#: Where a definition cell (tools/kernel/definitions.py) says an error is: its file, a line.
_LIBRARY_FILE = re.compile(r"\(<dynagraph library \d+: ([^<>()]*)>, line (\d+)\)")
_CELL_LINE = re.compile(r"\(([^()]*), line (\d+)\)")


def _located(error: str, parts: list[tuple[str, int | None]], count: int) -> str:
    """``error`` with the joined cell's file and line (``(123.py, line 9)``: a syntax error)
    told as the line of the source it is in, of ``count`` sources: the cell's other parts
    (the reset, dependencies) would make the number wrong for the reader."""

    def where(match: re.Match[str]) -> str:
        line, first = int(match.group(2)), 1
        for text, index in parts:
            lines = text.count("\n")
            if line < first + lines:
                if index is None:
                    return "(in the scratch kernel's reset)"
                which = f" of source {index + 1} of {count}" if count > 1 else ""
                return f"(line {line - first + 1}{which})"
            first += lines
        return match.group(0)

    return _CELL_LINE.sub(where, error, count=1)
