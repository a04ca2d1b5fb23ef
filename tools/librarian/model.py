"""The librarian's model, as the admission stages see it: a narrow protocol and its replies.

The stages never build prompts or talk to a chat model; the agent does (nodes/librarian_model.py
implements :class:`LibrarianModel` with its prompts and re-ask loop). What is fixed here is what
a reply must contain, checked by the pure parsers below, which the implementation runs on the
model's text (a :class:`ReplyParseError` is sent back to the model to act on).

Reply protocols (one JSON object each; prose around it and a ```json fence are tolerated, the
first object wins):

- Generalize (the task, the function with its imports, its recorded calls, why it was
  flagged)::

      {"name": "generic_name", "code": "def generic_name(...): ...", "call": null}

  ``code`` must define ``name`` at top level. ``call`` is null when the recorded calls work
  unchanged (original parameters first, lifted values as parameters with defaults equal to
  the original values); otherwise one expression in the original's parameter names that calls
  ``name`` the way the original behaved, e.g. ``"generic_name(table=df, threshold=8)"``.
- Judge neighbours (the new function, its calls, the library functions the probes could not
  settle with theirs)::

      {"verdict": "duplicate" | "generalizes" | "distinct", "of": "library name or null",
       "reason": "one sentence"}

  ``of`` must name one of the functions shown unless the verdict is ``distinct``.
"""

from __future__ import annotations

import ast
import keyword
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from dynagraph.tools.codeparse import parse_python
from dynagraph.tools.replies import ReplyParseError, json_object

__all__ = [
    "GeneralizeReply",
    "LibrarianModel",
    "Neighbour",
    "Verdict",
    "parse_generalize_reply",
    "parse_verdict_reply",
]

Probes = Sequence[dict[str, Any]]


@dataclass
class GeneralizeReply:
    """The model's generalized function. ``call``, when given, is an expression in the original
    function's parameter names that calls the new function the way the original behaved."""

    name: str
    code: str
    call: str | None = None


@dataclass
class Verdict:
    verdict: Literal["duplicate", "generalizes", "distinct"]
    of: str | None
    reason: str


class Neighbour(NamedTuple):
    """A library function shown to the model next to a candidate."""

    name: str
    source: str
    probes: Probes


class LibrarianModel(Protocol):
    """What the stages ask a model. Either call may raise (no key, endpoint down, protocol
    broken after every re-ask): the stage then keeps the candidate as it is and says why."""

    def generalize(
        self, *, source: str, task: str, reasons: Sequence[str], probes: Probes
    ) -> GeneralizeReply: ...

    def verdict(
        self,
        *,
        name: str,
        source: str,
        task: str,
        probes: Probes,
        neighbours: Sequence[Neighbour],
        why: str,
    ) -> Verdict: ...


GENERALIZE_SHAPE = (
    'reply with one JSON object: {"name": "generic_name", "code": "def generic_name(...): ...", '
    '"call": null}'
)
VERDICT_SHAPE = (
    'reply with one JSON object: {"verdict": "duplicate" | "generalizes" | "distinct", '
    '"of": "name of the library function or null", "reason": "one sentence"}'
)


def parse_generalize_reply(text: str) -> GeneralizeReply:
    """``{"name", "code", "call"}``: ``code`` must parse and define a top-level function
    ``name``; ``call`` (optional) must be one expression that calls ``name``."""
    data = json_object(text, GENERALIZE_SHAPE)
    name, code, call = data.get("name"), data.get("code"), data.get("call")
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ReplyParseError(f"`name` must be a Python identifier; {GENERALIZE_SHAPE}")
    if not isinstance(code, str) or not code.strip():
        raise ReplyParseError(f"`code` must be the function's source; {GENERALIZE_SHAPE}")
    code = textwrap.dedent(code).strip("\n") + "\n"
    try:
        tree = parse_python(code)
    except SyntaxError as exc:
        raise ReplyParseError(f"`code` does not parse: {exc.msg} (line {exc.lineno})") from None
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if name not in defined:
        raise ReplyParseError(f"`code` must define a top-level function named {name}")
    return GeneralizeReply(name=name, code=code, call=_checked_call(call, name))


def _checked_call(call: Any, name: str) -> str | None:
    if call in (None, "", "null"):
        return None
    if not isinstance(call, str):
        raise ReplyParseError("`call` must be a string (a Python expression) or null")
    try:
        expr = parse_python(call.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ReplyParseError(f"`call` is not a Python expression: {exc.msg}") from None
    if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)):
        raise ReplyParseError(f"`call` must be one call of {name}(...)")
    if expr.func.id != name:
        raise ReplyParseError(f"`call` must call {name}, not {expr.func.id}")
    return call.strip()


def parse_verdict_reply(text: str, names: Sequence[str]) -> Verdict:
    """``{"verdict", "of", "reason"}``; ``of`` must be one of ``names`` unless distinct."""
    data = json_object(text, VERDICT_SHAPE)
    verdict = str(data.get("verdict", "")).strip().lower()
    if verdict not in ("duplicate", "generalizes", "distinct"):
        raise ReplyParseError(
            f"`verdict` must be duplicate, generalizes or distinct; {VERDICT_SHAPE}"
        )
    of = data.get("of")
    of = None if of in (None, "", "null") else str(of).strip()
    if verdict != "distinct" and of not in names:
        raise ReplyParseError(
            f"`of` must name one of the library functions shown ({', '.join(names)})"
        )
    return Verdict(
        verdict=verdict,  # type: ignore[arg-type]
        of=of if verdict != "distinct" else None,
        reason=str(data.get("reason", "")),
    )
