"""Library functions defined in a kernel in one cell, agent side (kernel_side/define.py runs it).

:func:`define_code` builds the cell for records' sources in dependency order;
:func:`failures` reads what it reports. Each source runs on its own, in a namespace of its own
(two functions that set ``RATE`` to other values each keep theirs): one that fails is named
with its error and the others are still defined.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dynagraph.tools.kernel import kernel_side
from dynagraph.tools.kernel.result import ExecutionResult

if TYPE_CHECKING:
    from dynagraph.tools.kernel.session import KernelSession

__all__ = [
    "DEFINED_MARKER",
    "INSTALL_CODE",
    "define_code",
    "failures",
    "helper_missing",
    "reported_failures",
    "run_definitions",
]

#: Prefix of the line the definition cell prints (the rest of the line is JSON).
DEFINED_MARKER = "__DYNAGRAPH_DEFINED__"


#: Defines ``__dynagraph_define_all__`` in a kernel that lacks it (the first definition cell of
#: a kernel, or after a ``%reset``): later cells only call it.
_INSTALL = kernel_side.cell("define", exports={"__dynagraph_define_all__": "define_all"})


#: Defines ``__dynagraph_define_all__`` where it is missing; every :func:`define_code` cell
#: begins with it. A kernel that runs it once up front (the scratch kernel, before the baseline
#: its checks reset to) keeps it across resets.
INSTALL_CODE = "if '__dynagraph_define_all__' not in globals():\n" + "".join(
    f"    {line}\n" for line in _INSTALL.splitlines()
)


def define_code(sources: list[tuple[str, str, list[str]]], *, install: bool = True) -> str:
    """One cell that defines each ``(name, source, depends_on)``, in order, each in a namespace
    of its own (kernel_side/define.py): its imports and module-level names are its own.

    ``install=False`` leaves out :data:`INSTALL_CODE`, for a kernel known to have the helper
    (the scratch kernel's baseline, a task kernel's earlier definition cell): the helper's
    ~8 KB of source in a cell cost ~5 ms a cell to IPython's input transformers, even when its
    guard skips it. Without the helper the cell fails with a NameError (:func:`helper_missing`).
    """
    pairs = [[str(name), str(source), [str(d) for d in deps]] for name, source, deps in sources]
    call = f"__dynagraph_define_all__(get_ipython(), {pairs!r}, {DEFINED_MARKER!r})\n"
    return INSTALL_CODE + call if install else call


def helper_missing(result: ExecutionResult) -> bool:
    """Whether a definition cell made without the helper ran where it was not (a ``%reset``)."""
    return result.error_name == "NameError" and "__dynagraph_define_all__" in (
        result.error_value or ""
    )


def run_definitions(
    session: KernelSession,
    sources: list[tuple[str, str, list[str]]],
    *,
    helper: bool,
    timeout: float,
    output_limit: int | None = None,
) -> ExecutionResult:
    """Run :func:`define_code`'s cell for ``sources``, silently. ``helper`` says the kernel
    holds the helper (an earlier cell of it ran): the cell then leaves its source out, and is
    sent again with it if a ``%reset`` removed it meanwhile (:func:`helper_missing`)."""

    def run(install: bool) -> ExecutionResult:
        code = define_code(sources, install=install)
        return session.execute(code, timeout=timeout, silent=True, output_limit=output_limit)

    result = run(install=not helper)
    if helper and helper_missing(result):
        result = run(install=True)
    return result


def failures(result: ExecutionResult, names: list[str]) -> dict[str, str]:
    """{name: "ErrorName: message"} for each of ``names`` the cell did not define. A cell
    that failed as a whole (timeout, lost kernel) or printed no report fails every name."""
    if result.ok():
        failed = reported_failures(result.stdout)
        if failed is not None:
            return {k: v for k, v in failed.items() if k in names}
        error = "no report from the definition cell"
    else:
        error = f"{result.error_name}: {result.error_value}"
    return dict.fromkeys(names, error)


def reported_failures(stdout: str) -> dict[str, str] | None:
    """{name: "ErrorName: message"} from every report a cell printed (one per definition
    cell it ran), in order; None when it printed none. A line that does not parse is not a
    report (a defined function's own output may begin like one)."""
    found: dict[str, str] | None = None
    for line in stdout.splitlines():
        if line.startswith(DEFINED_MARKER):
            try:
                failed = json.loads(line[len(DEFINED_MARKER) :]).get("failed") or {}
                items = {str(k): str(v) for k, v in failed.items()}
            except (ValueError, AttributeError):
                continue
            found = {**(found or {}), **items}
    return found
