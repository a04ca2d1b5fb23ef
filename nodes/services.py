"""What the nodes need from the composition root, as narrow protocols.

The nodes never import graphs/: graphs/services.py builds one object that satisfies
:class:`NodeServices` (library, chat models, kernels, the initial actions) and hands it to each
node. Its settings satisfy :class:`NodeSettings`, whose sections are declared by the parts that
own them (the agent here in nodes/, the executor with the kernel, the library and the librarian
in tools/).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from dynagraph.nodes.settings import AgentSettings
from dynagraph.nodes.state import State
from dynagraph.tools.library import FunctionLibrary
from dynagraph.tools.library.settings import LibrarySettings
from dynagraph.tools.models import ModelsSettings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig


class NodeSettings(Protocol):
    """The settings sections the nodes read (graphs.settings.Settings has them all)."""

    agent: AgentSettings
    models: ModelsSettings
    library: LibrarySettings
    executor: Any  # dynagraph.tools.kernel ExecutorSettings
    librarian: Any  # dynagraph.tools.librarian LibrarianSettings


class ChatModels(Protocol):
    """Builds (and caches) the chat model of a node, honouring a per-run model name."""

    def for_node(self, node: str, override: str | None = None) -> BaseChatModel: ...


class NodeServices(Protocol):
    """Everything a node uses besides its state: built once per graph in graphs/services.py."""

    settings: NodeSettings
    models: ChatModels
    kernels: Any  # dynagraph.tools.kernel KernelRegistry

    @property
    def library(self) -> FunctionLibrary: ...

    def action_lines(self) -> list[str]: ...

    def workdir_for(self, thread_id: str) -> Path: ...

    def scratch_kernel(
        self, workdir: str | Path | None = None, *, cwd: str | Path | None = None
    ) -> Any: ...

    def release_scratch(self, session: Any, then: Callable[[], None] | None = None) -> None: ...

    def prestart_scratch(self, cwd: str | Path) -> None: ...

    def embed_ahead(self, texts: list[str]) -> None: ...

    def prepare_search_ahead(self, text: str) -> None: ...

    def drop_scratch(self, cwd: str | Path) -> None: ...

    def admission_lock(self) -> AbstractContextManager[None]: ...


def kernel_key(state: State, config: RunnableConfig | None) -> str:
    """The kernel registry key: the thread id, or the task's own key for thread-less runs."""
    configurable = (config or {}).get("configurable") or {}
    return str(configurable.get("thread_id") or state.get("task_key") or "default")
