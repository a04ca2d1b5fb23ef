"""The librarian's chat model: the agent's side of ``tools.librarian.model.LibrarianModel``.

The admission stages (tools/librarian/) ask two questions; this turns each into the librarian
prompts (nodes/prompts/librarian_*.md), asks through the agent's re-ask loop
(nodes/protocol.py: ``ask``, up to ``agent.max_parse_retries`` re-asks with the parse error)
and parses the reply with the protocol's parsers (tools/librarian/model.py documents the reply
shapes). The chat model is built on first use (most tasks never need it), and the token usage
of every call is summed for the run's report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dynagraph.nodes import prompts
from dynagraph.nodes.protocol import ProtocolError, add_usage, ask
from dynagraph.tools.librarian.model import (
    GeneralizeReply,
    Neighbour,
    Verdict,
    parse_generalize_reply,
    parse_verdict_reply,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

T = TypeVar("T")
Probes = Sequence[dict[str, Any]]


def render_probes(probes: Probes, limit: int = 5) -> str:
    """Recorded calls as the model sees them: ``args -> result`` lines."""
    lines = []
    for probe in list(probes)[:limit]:
        args = str(probe.get("args_repr") or "()")
        kwargs = str(probe.get("kwargs_repr") or "{}")
        shown = args if kwargs in ("{}", "") else f"{args} {kwargs}"
        outcome = f"raises {probe['raised']}" if probe.get("raised") else probe.get("result_repr")
        lines.append(f"- {shown[:600]} -> {str(outcome)[:300]}")
    return "\n".join(lines) or "(none recorded)"


class ChatLibrarianModel:
    """``LibrarianModel`` on a LangChain chat model made by ``factory`` when first needed."""

    def __init__(self, factory: Callable[[], BaseChatModel], *, retries: int = 2) -> None:
        self._factory = factory
        self._model: BaseChatModel | None = None
        self.retries = retries
        self.usage: dict[str, int] = {}

    def _ask(self, user: str, parse: Callable[[str], T]) -> T:
        if self._model is None:
            self._model = self._factory()  # a missing key raises here: the stage says why
        messages = [
            SystemMessage(content=prompts.render("librarian_system")),
            HumanMessage(content=user),
        ]
        try:
            parsed, usage = ask(
                self._model, messages, parse, retries=self.retries, node="librarian"
            )
        except ProtocolError as exc:  # the failed calls' tokens are counted too
            self.usage = add_usage(self.usage, exc.usage)
            raise
        self.usage = add_usage(self.usage, usage)
        return parsed

    def generalize(
        self, *, source: str, task: str, reasons: Sequence[str], probes: Probes
    ) -> GeneralizeReply:
        user = prompts.render(
            "librarian_generalize",
            reasons="; ".join(reasons),
            task=task.strip()[:3000] or "(not recorded)",
            source=source.strip(),
            probes=render_probes(probes),
        )
        return self._ask(user, parse_generalize_reply)

    def verdict(
        self,
        *,
        name: str,
        source: str,
        task: str,
        probes: Probes,
        neighbours: Sequence[Neighbour],
        why: str,
    ) -> Verdict:
        shown = "\n\n".join(
            f"### {n.name}\n```python\n{n.source.strip()}\n```\n"
            f"Recorded calls:\n{render_probes(n.probes)}"
            for n in neighbours
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
        names = [n.name for n in neighbours]
        return self._ask(user, lambda text: parse_verdict_reply(text, names))
