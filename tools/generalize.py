"""The librarian's model side: spotting task-specific functions, asking the model to generalize
them, and asking it about neighbours the probes cannot tell apart.

Nothing here decides admission: a generalized function is only a proposal, which the curator
admits only if it reproduces every probe of the original in a scratch kernel
(tools/curator.py).

Reply protocols. The system prompt starts with "You are the librarian of dynagraph"
(nodes/prompts/librarian_system.md). Each request asks for one JSON object (prose around it
and a ```json fence are tolerated; the first object wins); a reply that breaks the shape is
sent back with the parse error ("Your reply could not be used: ...") up to
``agent.max_parse_retries`` times, as for the planner (nodes/protocol.py: ``ask``). After that,
or when the endpoint fails, the librarian falls back (the function is kept as it is, tagged
``specific``; an ambiguous neighbour is left distinct) and says so in the report.

- Generalize (librarian_generalize.md: the task, the function with its imports, its recorded
  calls, the reasons it was flagged)::

      {"name": "generic_name", "code": "def generic_name(...): ...", "call": null}

  ``code`` must define ``name`` at top level. ``call`` is null when the recorded calls work
  unchanged (original parameters first, lifted values as parameters with defaults equal to
  the original values); otherwise one expression in the original's parameter names that calls
  ``name`` the way the original behaved, e.g. ``"generic_name(table=df, threshold=8)"``.
- Judge neighbours (librarian_verdict.md: the new function, its calls, the library functions
  the probes could not settle with theirs)::

      {"verdict": "duplicate" | "generalizes" | "distinct", "of": "library name or null",
       "reason": "one sentence"}

  ``of`` must name one of the functions shown unless the verdict is ``distinct``.
"""

from __future__ import annotations

import ast
import keyword
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from dynagraph.nodes import prompts
from dynagraph.nodes.protocol import ReplyParseError, add_usage, ask
from dynagraph.nodes.protocol import _first_json_object as first_json_object  # the planner's parser
from dynagraph.tools.codeparse import ExtractedFunction, extract_functions, is_specific, strip_magics
from dynagraph.tools.curator import Candidate, CurationContext, Decision, Restart, candidate_sources
from dynagraph.tools.verify import parameters_of, shim_source

__all__ = [
    "GeneralizeReply",
    "GeneralizeStage",
    "LibrarianModel",
    "Verdict",
    "flag_specific",
    "parameter_count",
    "parse_generalize_reply",
    "parse_verdict_reply",
]

# -- the static check -------------------------------------------------------------------------

#: codeparse.is_specific's reason for task words in a function's name.
NAME_WORDS_REASON = "name uses words of the task"
#: Task words in the name count only for a function with at most this many parameters.
#: Measured on CRAFT TabMWP (341 task-specific `code` vs their generalized `tool`, task =
#: question + table; bench/librarian.py): every flag of codeparse.is_specific counted, accuracy
#: 0.859 (304 specific flagged, 59 general flagged, 54 of them by name words alone: general
#: tools keep domain words such as `fare`, `largest`, `donation`). Name words counted only up
#: to N parameters: N=0 0.921, N=1 0.933, N=2 0.934, N=3 0.909. A narrow interface named after
#: the task's nouns (`calculate_rubies(necklaces)`) is specific; a wide one is not.
NAME_WORDS_MAX_PARAMS = 2


def parameter_count(code: str) -> int:
    """How many parameters the first function ``code`` defines takes (``*args``, ``**kw`` count)."""
    tree = ast.parse(strip_magics(textwrap.dedent(code)))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    a = node.args
    return (
        len(a.posonlyargs + a.args + a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    )


def flag_specific(name: str, code: str, task_text: str = "") -> tuple[bool, list[str]]:
    """Whether a function looks written for one task, with the reasons (codeparse.is_specific,
    calibrated: task words in the name count only for narrow interfaces)."""
    fn = ExtractedFunction(name=name, code=code, signature="", docstring="")
    try:
        _flagged, reasons = is_specific(fn, task_text)
        narrow = parameter_count(code) <= NAME_WORDS_MAX_PARAMS
    except (SyntaxError, StopIteration):
        return False, []
    kept = [r for r in reasons if narrow or not r.startswith(NAME_WORDS_REASON)]
    return bool(kept), kept


# -- reply protocols --------------------------------------------------------------------------


@dataclass
class GeneralizeReply:
    """The model's generalized function. ``call``, when given, is an expression in the original
    function's parameter names that calls the new function the way the original behaved."""

    name: str
    code: str
    call: str | None = None


@dataclass
class Verdict:
    verdict: str  # duplicate | generalizes | distinct
    of: str | None
    reason: str


_GENERALIZE_SHAPE = (
    'reply with one JSON object: {"name": "generic_name", "code": "def generic_name(...): ...", '
    '"call": null}'
)
_VERDICT_SHAPE = (
    'reply with one JSON object: {"verdict": "duplicate" | "generalizes" | "distinct", '
    '"of": "name of the library function or null", "reason": "one sentence"}'
)


def _json_object(text: str, shape: str) -> dict[str, Any]:
    try:
        data = first_json_object(text)
    except ReplyParseError as exc:
        raise ReplyParseError(f"{exc}; {shape}") from None
    if not isinstance(data, dict):
        raise ReplyParseError(shape)
    return data


def parse_generalize_reply(text: str) -> GeneralizeReply:
    """``{"name", "code", "call"}``: ``code`` must parse and define a top-level function
    ``name``; ``call`` (optional) must be one expression that calls ``name``."""
    data = _json_object(text, _GENERALIZE_SHAPE)
    name, code, call = data.get("name"), data.get("code"), data.get("call")
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ReplyParseError(f"`name` must be a Python identifier; {_GENERALIZE_SHAPE}")
    if not isinstance(code, str) or not code.strip():
        raise ReplyParseError(f"`code` must be the function's source; {_GENERALIZE_SHAPE}")
    code = textwrap.dedent(code).strip("\n") + "\n"
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ReplyParseError(f"`code` does not parse: {exc.msg} (line {exc.lineno})") from None
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if name not in defined:
        raise ReplyParseError(f"`code` must define a top-level function named {name}")
    if call in (None, "", "null"):
        call = None
    elif not isinstance(call, str):
        raise ReplyParseError("`call` must be a string (a Python expression) or null")
    else:
        try:
            expr = ast.parse(call.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ReplyParseError(f"`call` is not a Python expression: {exc.msg}") from None
        if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)):
            raise ReplyParseError(f"`call` must be one call of {name}(...)")
        if expr.func.id != name:
            raise ReplyParseError(f"`call` must call {name}, not {expr.func.id}")
        call = call.strip()
    return GeneralizeReply(name=name, code=code, call=call)


def parse_verdict_reply(text: str, names: Sequence[str]) -> Verdict:
    """``{"verdict", "of", "reason"}``; ``of`` must be one of ``names`` unless distinct."""
    data = _json_object(text, _VERDICT_SHAPE)
    verdict = str(data.get("verdict", "")).strip().lower()
    if verdict not in ("duplicate", "generalizes", "distinct"):
        raise ReplyParseError(
            f"`verdict` must be duplicate, generalizes or distinct; {_VERDICT_SHAPE}"
        )
    of = data.get("of")
    of = None if of in (None, "", "null") else str(of).strip()
    if verdict != "distinct" and of not in names:
        raise ReplyParseError(
            f"`of` must name one of the library functions shown ({', '.join(names)})"
        )
    return Verdict(
        verdict=verdict,
        of=of if verdict != "distinct" else None,
        reason=str(data.get("reason", "")),
    )


# -- the model --------------------------------------------------------------------------------


def render_probes(probes: Sequence[dict[str, Any]], limit: int = 5) -> str:
    """Recorded calls as the model sees them: ``args -> result`` lines."""
    lines = []
    for probe in list(probes)[:limit]:
        args = str(probe.get("args_repr") or "()")
        kwargs = str(probe.get("kwargs_repr") or "{}")
        shown = args if kwargs in ("{}", "") else f"{args} {kwargs}"
        outcome = f"raises {probe['raised']}" if probe.get("raised") else probe.get("result_repr")
        lines.append(f"- {shown[:600]} -> {str(outcome)[:300]}")
    return "\n".join(lines) or "(none recorded)"


class ModelUnavailable(RuntimeError):
    """No librarian model can be used (no key, no endpoint): the stages fall back."""


class LibrarianModel:
    """The librarian's chat model, built on first use (most tasks never need it), with the
    token usage of every call summed for the run's report."""

    def __init__(self, factory: Callable[[], BaseChatModel], *, retries: int = 2) -> None:
        self._factory = factory
        self._model: BaseChatModel | None = None
        self.retries = retries
        self.usage: dict[str, int] = {}

    def _get(self) -> BaseChatModel:
        if self._model is None:
            try:
                self._model = self._factory()
            except Exception as exc:  # a missing key is a ConfigError: fall back, say why
                raise ModelUnavailable(str(exc)) from exc
        return self._model

    def _ask(self, user: str, parse: Callable[[str], Any]) -> Any:
        messages = [
            SystemMessage(content=prompts.render("librarian_system")),
            HumanMessage(content=user),
        ]
        parsed, _raw, usage = ask(
            self._get(), messages, parse, retries=self.retries, node="librarian"
        )
        self.usage = add_usage(self.usage, usage)
        return parsed

    def generalize(
        self,
        *,
        source: str,
        task: str,
        reasons: Sequence[str],
        probes: Sequence[dict[str, Any]],
    ) -> GeneralizeReply:
        user = prompts.render(
            "librarian_generalize",
            reasons="; ".join(reasons),
            task=task.strip()[:3000] or "(not recorded)",
            source=source.strip(),
            probes=render_probes(probes),
        )
        return self._ask(user, parse_generalize_reply)

    def judge(
        self,
        *,
        name: str,
        source: str,
        task: str,
        probes: Sequence[dict[str, Any]],
        neighbours: Sequence[tuple[str, str, Sequence[dict[str, Any]]]],
        why: str,
    ) -> Verdict:
        shown = "\n\n".join(
            f"### {n}\n```python\n{src.strip()}\n```\nRecorded calls:\n{render_probes(p)}"
            for n, src, p in neighbours
        )
        user = prompts.render(
            "librarian_verdict",
            function=name,
            why=why,
            task=task.strip()[:2000] or "(not recorded)",
            source=source.strip(),
            probes=render_probes(probes),
            neighbours=shown,
        )
        names = [n for n, _, _ in neighbours]
        return self._ask(user, lambda text: parse_verdict_reply(text, names))


# -- the stage --------------------------------------------------------------------------------


def generalized_candidate(original: Candidate, reply: GeneralizeReply) -> Candidate | None:
    """The model's function as a candidate. Imports and module-level names it uses without
    defining are taken from the original's (a reply that relies on ``pd`` being imported)."""
    context = "\n".join([*original.imports, *original.globals, reply.code])
    found = [f for f in extract_functions(context) if f.name == reply.name]
    if not found:
        return None
    fn = found[0]
    return Candidate(
        name=fn.name,
        code=fn.code,
        ast_hash=fn.ast_hash,
        signature=fn.signature,
        docstring=fn.docstring,
        imports=fn.imports,
        globals=fn.globals,
        calls=[c for c in fn.calls if c != original.name],
        step=original.step,
        tags=[t for t in original.tags if t != "specific"],
    )


class GeneralizeStage:
    """A function flagged task-specific goes to the model; its generalized version replaces it
    only if it reproduces every probe of the original in the scratch kernel (then the cascade
    restarts with it). Otherwise the original goes on, tagged ``specific``."""

    name = "generalize"

    def __init__(self, *, only_flagged: bool = True) -> None:
        self.only_flagged = only_flagged  # False: every candidate goes to the model (benchmarks)

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Restart | None:
        if not ctx.options.generalize or candidate.generalized_from:
            return None
        flagged, reasons = flag_specific(candidate.name, candidate.code, ctx.origin.task)
        if not flagged and self.only_flagged:
            return None
        reasons = reasons or ["not flagged; generalized on request"]
        why = "; ".join(reasons)

        def keep(reason: str) -> None:
            candidate.tags.append("specific")
            ctx.notes.append(Decision(candidate.name, "kept_specific", None, reason, self.name))

        if ctx.model is None or ctx.verifier is None:
            keep(f"flagged specific ({why}); no librarian model to generalize it")
            return None
        if not any(p.get("args_b64") for p in candidate.probes):  # nothing to check it against
            keep(f"flagged specific ({why}); no replayable calls to check a generalization")
            return None
        try:
            reply = ctx.model.generalize(
                source=candidate.source(),
                task=ctx.origin.task,
                reasons=reasons,
                probes=candidate.probes,
            )
        except Exception as exc:  # no key, endpoint down, protocol broken: keep the original
            keep(f"flagged specific ({why}); the model could not generalize it: {exc}")
            return None
        new = generalized_candidate(candidate, reply)
        if new is None:
            keep(f"flagged specific ({why}); the model's reply did not define {reply.name}")
            return None
        if new.ast_hash == candidate.ast_hash:
            keep(f"flagged specific ({why}); the model returned the same function")
            return None
        callers = [c.name for c in ctx.batch.values() if candidate.name in c.calls]
        if reply.call and callers:
            keep(
                f"flagged specific ({why}); its generalization takes other parameters and "
                f"{', '.join(callers)} call it by its name"
            )
            return None
        shim = shim_source(parameters_of(candidate.code), reply.call) if reply.call else None
        ctx.verifier.recorded_probes()  # clear: the next probes recorded are the new function's
        report = ctx.verifier.check(
            new.name, candidate_sources(new, ctx), candidate.probes, shim=shim
        )
        if report.status != "pass":
            keep(
                f"flagged specific ({why}); its generalization {new.name}{new.signature} was "
                f"not admitted: {report.summary()}"
            )
            return None
        recorded = ctx.verifier.recorded_probes().get(new.name, [])
        new.probes = recorded or ([] if reply.call else list(candidate.probes))
        new.verified = True
        new.generalized_from = candidate.name
        new.tags.append("generalized")
        if not reply.call and new.name != candidate.name:
            new.aliases = [candidate.name]  # the original's calls bind unchanged
        new.checks.append(f"{report.summary()} of {candidate.name}")
        ctx.notes.append(
            Decision(
                candidate.name,
                "generalized",
                None,
                f"flagged specific ({why}); generalized into {new.name}{new.signature}, which "
                f"{report.summary()}" + (f" through {reply.call}" if reply.call else ""),
                self.name,
                new.name,
            )
        )
        return Restart(new)
