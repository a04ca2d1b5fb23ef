"""The initial, human-written actions every task's kernel starts with.

DynaSaur's ablation puts these first: without them GAIA accuracy drops from 35% to 22%. They are
plain, typed Python functions with one-line docstrings (``final_answer``, ``read_file``,
``fetch_url``, ``download``, ``web_search``, ``find_in_text``, ``page_text``, ``ask_image``,
``find_archived_url``), defined in the kernel
by running the source from :func:`kernel_bootstrap` as a cell, and shown to the coder through
:func:`action_specs` as ``name(signature) -> type: docstring`` beside the library hits.

Rules the actions keep:

- **They run in the kernel**, in the task's working directory, and must not import this package
  (the kernel may be sandboxed with only the venv's Python): their sources are inlined, and they use
  the standard library plus lazily imported converters (markitdown, beautifulsoup4, Pillow).
- **Answers are sized for a prompt**: long documents come in pages ("page 1 of 7 (next: ...)") of
  ``page_chars`` characters; other long text is cut to head and tail with
  ``[... N characters cut ...]``. Never raw HTML, never base64.
- **Failures are one line** such as ``fetch_url: HTTP 404 Not Found for http://...``, returned as
  the action's text (not raised), so the model reads what went wrong and what to do, not a
  traceback.
- **API keys never enter the kernel.** Key-less search providers (duckduckgo, searxng) and the
  Wayback Machine are called from the kernel; keyed search (brave, tavily), ``ask_image`` (the
  vision model) and read_file's audio transcripts go through :class:`AgentProxy`, a server in the
  agent process that holds the keys (loopback TCP, and a Unix socket bound into the sandbox so it
  works without a network). Without it, these actions say so in one line.
- **User tools** (``ActionsConfig.extra``: .py files or module names) load the same way, each as its
  own module; their specs have ``origin="user"`` and the librarian must never touch them.

``final_answer`` prints a marker line; :func:`parse_final_answer` finds it in a cell's raw stdout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from dynagraph.tools.actions.answer import FINAL_ANSWER_MARKER
from dynagraph.tools.actions.bootstrap import kernel_bootstrap
from dynagraph.tools.actions.config import ActionsConfig
from dynagraph.tools.actions.endpoints import Endpoint
from dynagraph.tools.actions.proxy import AgentProxy, start_agent_proxy
from dynagraph.tools.actions.specs import (
    ActionsConfigError,
    ActionSpec,
    builtin_action_modules,
    builtin_module_paths,
    user_action_modules,
)

__all__ = [
    "FINAL_ANSWER_MARKER",
    "ActionSpec",
    "ActionsConfig",
    "ActionsConfigError",
    "AgentProxy",
    "Endpoint",
    "action_names",
    "action_specs",
    "builtin_modules",
    "kernel_bootstrap",
    "parse_final_answer",
    "start_agent_proxy",
    "strip_final_answer",
]

_FINAL_ANSWER_LINE = re.compile(
    r"^" + re.escape(FINAL_ANSWER_MARKER) + r"(\{.*\})[ \t\r]*(?:\n|$)", re.MULTILINE
)


def builtin_modules() -> list[str]:
    """Paths of the Python files that hold the builtin actions (and their helpers), in load order."""
    return [str(path) for path in builtin_module_paths()]


def action_specs(config: ActionsConfig) -> list[ActionSpec]:
    """Every action the kernel will have, builtin then user (a user tool replaces a same-named one).

    Raises :class:`ActionsConfigError` (one line) when an ``extra`` entry cannot be found or parsed.
    """
    by_name: dict[str, ActionSpec] = {}
    for module in [*builtin_action_modules(), *user_action_modules(config.extra)]:
        for spec in module.specs:
            by_name.pop(spec.name, None)
            by_name[spec.name] = spec
    return list(by_name.values())


def action_names(lines: Iterable[str]) -> frozenset[str]:
    """The actions' names from their summary lines (``name(signature): doc``, what
    :meth:`ActionSpec.summary_line` writes): no library function may take one."""
    return frozenset(line.split("(", 1)[0].strip() for line in lines)


def parse_final_answer(stdout: str) -> str | None:
    """The answer of the last ``final_answer(...)`` call in a cell's raw stdout, or None.

    Parse the stdout before truncating it for the prompt: a cut may remove the marker line.
    """
    answer = None
    for match in _FINAL_ANSWER_LINE.finditer(stdout or ""):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(data, dict) and "answer" in data:
            answer = str(data["answer"])
    return answer


def strip_final_answer(stdout: str) -> str:
    """The stdout without final_answer's marker lines (for showing the output to the model)."""
    return _FINAL_ANSWER_LINE.sub("", stdout or "")
