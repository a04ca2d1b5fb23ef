"""Probes, agent side: the cells that install, fetch and replay them, and their decoding.

The recorder itself runs in the kernel (kernel_side/probe_recorder.py, comparisons in
kernel_side/compare.py). Here:

- :data:`BOOTSTRAP` installs it; task kernels run it as part of their session's bootstrap;
- :func:`execute_with_probes` runs a cell and returns the probes it recorded with the cell's
  own reply (``user_expressions``): one round trip per step. IPython evaluates user
  expressions only after a cell that raised no error, so after a failed cell (whose calls
  still count, as failed uses) :func:`fetch_probes` runs the separate fetch cell;
- :func:`fetch_probes` is the one fetch every caller shares (the executor, the librarian's
  scratch verifier, benches): from a result's reply when it carries them, else by a fetch cell.
  Fetching clears the kernel-side store;
- :func:`replay_code` / :func:`parse_verdict`: replay one probe in a kernel where the function is
  defined. Unpickling and comparison happen kernel-side: a pickle made by model-written code is
  never loaded in this process by the normal path. :func:`decode_b64` is for tests and trusted
  data only.
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import TYPE_CHECKING, Any

from dynagraph.tools.kernel import kernel_side
from dynagraph.tools.kernel.kernel_side.compare import results_equal, short_repr
from dynagraph.tools.kernel.result import ExecutionResult

if TYPE_CHECKING:
    from dynagraph.tools.kernel.session import KernelSession

__all__ = [
    "BOOTSTRAP",
    "COMPARE_SOURCE",
    "FETCH_CODE",
    "INSTALL_COMPARE_CODE",
    "MAX_PICKLE_BYTES",
    "MAX_PROBES",
    "PROBE_EXPRESSIONS",
    "PROBES_MARKER",
    "VERDICT_MARKER",
    "Recorded",
    "decode_b64",
    "execute_with_probes",
    "fetch_probes",
    "parse_fetched",
    "parse_verdict",
    "replay_code",
    "results_equal",
    "short_repr",
]

#: Probes kept per function definition between two fetches.
MAX_PROBES = 5
#: Arguments or results whose pickle is larger than this are kept as reprs only.
MAX_PICKLE_BYTES = 256 * 1024
#: Prefix of the line FETCH_CODE prints (the rest of the line is JSON).
PROBES_MARKER = "__DYNAGRAPH_PROBES__"
#: Prefix of the line replay code prints (the rest of the line is JSON).
VERDICT_MARKER = "__DYNAGRAPH_VERDICT__"
#: Output limit of the fetch cell: its output is data, not text for a model.
FETCH_OUTPUT_LIMIT = 64 * 1024 * 1024

#: (probes per function name, call counts per function name)
Recorded = tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]

#: Defines ``__dynagraph_short_repr__``, ``__dynagraph_results_equal__`` and
#: ``__dynagraph_replay__`` in a kernel (BOOTSTRAP defines them too).
COMPARE_SOURCE = kernel_side.cell(
    "compare",
    exports={
        "__dynagraph_short_repr__": "short_repr",
        "__dynagraph_results_equal__": "results_equal",
        "__dynagraph_replay__": "replay_probe",
    },
)


#: Installs the probe recorder; part of every task kernel's bootstrap.
BOOTSTRAP = kernel_side.cell(
    ("compare", "probe_recorder"), "install", f"get_ipython(), {MAX_PROBES}, {MAX_PICKLE_BYTES}"
)

#: Prints one line, PROBES_MARKER + JSON {"probes": {...}, "calls": {...}}, and clears the store.
FETCH_CODE = (
    f"print({PROBES_MARKER!r}, __dynagraph_fetch__() if '__dynagraph_fetch__' in globals() "
    """else '{"probes": {}, "calls": {}}')\n"""
)
_PROBES_EXPRESSION = "dynagraph_probes"
#: Pass to KernelSession.execute: the reply then carries the probes the cell recorded.
PROBE_EXPRESSIONS = {_PROBES_EXPRESSION: "__dynagraph_probe_payload__()"}


# =========================================================================== fetching


def _unpack(payload: Any) -> Recorded:
    if not isinstance(payload, dict):
        raise ValueError(f"probe payload is {type(payload).__name__}, not a JSON object")
    return dict(payload.get("probes") or {}), dict(payload.get("calls") or {})


def _from_reply(result: ExecutionResult) -> Recorded | None:
    """The probes a cell's reply carries (PROBE_EXPRESSIONS), or None if it carries none."""
    entry = result.user_expressions.get(_PROBES_EXPRESSION)
    if not isinstance(entry, dict) or entry.get("status") != "ok":
        return None
    data = entry.get("data") or {}
    if "application/json" not in data:
        return None
    try:
        return _unpack(data["application/json"])
    except ValueError:
        return None


def fetch_probes(session: KernelSession, after: ExecutionResult | None = None) -> Recorded:
    """The calls recorded since the last fetch, and clear them: taken from `after`'s reply when
    it was run with PROBE_EXPRESSIONS and succeeded (no round trip), else fetched by a silent
    cell. Empty when the kernel has no recorder or the fetch fails (a lost kernel lost them)."""
    if after is not None:
        carried = _from_reply(after)
        if carried is not None:
            return carried
    fetched = session.execute(FETCH_CODE, timeout=30, silent=True, output_limit=FETCH_OUTPUT_LIMIT)
    if not fetched.ok():
        return {}, {}
    try:
        return parse_fetched(fetched.stdout)
    except ValueError:
        return {}, {}


def execute_with_probes(
    session: KernelSession, code: str, timeout: float | None
) -> tuple[ExecutionResult, Recorded]:
    """Run a user cell and return it with the calls it recorded (one round trip when it
    succeeds). The reply's probe data is removed from the result."""
    result = session.execute(code, timeout=timeout, user_expressions=PROBE_EXPRESSIONS)
    recorded = fetch_probes(session, after=result)
    result.user_expressions.pop(_PROBES_EXPRESSION, None)
    return result, recorded


# =========================================================================== decoding


def _marked_json(text: str, marker: str) -> Any:
    for line in reversed(text.splitlines()):
        if line.startswith(marker + " "):
            return json.loads(line[len(marker) + 1 :])
    raise ValueError(f"no line starting with {marker} in the output ({len(text)} characters)")


def parse_fetched(text: str) -> Recorded:
    """(probes per function name, call counts per function name) from FETCH_CODE's stdout.

    Each probe: function, defined_in (execution count of the defining cell), is_async,
    args_repr, kwargs_repr, args_b64, result_repr, result_b64, raised, raised_type.
    Raises ValueError if the output has no probes line (the fetch did not run).
    """
    return _unpack(_marked_json(text, PROBES_MARKER))


def parse_verdict(text: str) -> dict[str, Any]:
    """The verdict printed by :func:`replay_code`'s cell (the function's own prints may precede
    it). Raises ValueError if there is none (the replay cell failed before printing)."""
    return dict(_marked_json(text, VERDICT_MARKER))


def decode_b64(s: str) -> Any:
    """Unpickle a probe's ``args_b64`` / ``result_b64``.

    Unpickling runs code chosen by whoever made the pickle: use only on trusted data (tests,
    your own kernels). The librarian compares kernel-side with :func:`replay_code` instead.
    """
    return pickle.loads(base64.b64decode(s))


_PROBE_KEYS = ("args_b64", "result_b64", "result_repr", "raised", "raised_type", "is_async")


#: Defines the compare helpers in a kernel that lacks them (the scratch verifier runs it once
#: per kernel, before its baseline: scratch.py).
INSTALL_COMPARE_CODE = (
    f"if '__dynagraph_replay__' not in globals():\n    exec({COMPARE_SOURCE!r})\n"
)


def replay_code(function_name: str, probe: dict[str, Any], *, installed: bool = False) -> str:
    """Code that, run in a kernel where ``function_name`` is defined, calls it with the probe's
    arguments and prints VERDICT_MARKER + a JSON verdict (see compare.replay_probe).

    Self-contained: it loads COMPARE_SOURCE if the kernel lacks it, unless ``installed`` says
    the kernel has the helpers (INSTALL_COMPARE_CODE ran): the cell is then 0.3 KB instead of
    8, about 1.8 ms less a replay. For an async probe it uses top-level ``await`` (IPython's
    autoawait).
    """
    probe_json = json.dumps({k: probe.get(k) for k in _PROBE_KEYS})
    lines = [] if installed else INSTALL_COMPARE_CODE.splitlines()
    lines += [
        f"__dynagraph_verdict__ = __dynagraph_replay__(globals(), {function_name!r}, "
        f"{probe_json!r})",
    ]
    if probe.get("is_async"):
        lines += [
            "if hasattr(__dynagraph_verdict__, '__await__'):",
            "    __dynagraph_verdict__ = await __dynagraph_verdict__",
        ]
    lines += [
        f"print({VERDICT_MARKER!r}, __import__('json').dumps(__dynagraph_verdict__, default=str))",
        "del __dynagraph_verdict__",
    ]
    return "\n".join(lines) + "\n"
