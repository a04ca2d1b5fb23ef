"""ActionsConfig: the ``actions:`` section of the YAML config."""

from __future__ import annotations

from typing import Any

from dynagraph.tools.actions.search import KEYED_PROVIDERS, PROVIDERS
from pydantic import BaseModel, ConfigDict, Field, field_validator


class ActionsConfig(BaseModel):
    """What the initial actions may do and how their answers are sized.

    ``extra`` lists the user's own tools: paths of ``.py`` files (relative paths are taken from the
    agent's working directory) or importable module names. Their public functions (``__all__`` if
    the file defines it) are defined in every kernel beside the builtin actions and shown to the
    coder; the librarian never edits them.
    """

    model_config = ConfigDict(extra="forbid")

    extra: list[str] = Field(default_factory=list, description="user tool files or modules")
    search_provider: str = Field(
        "none", description=f"web_search provider: one of {', '.join(PROVIDERS)}"
    )
    search_base_url: str | None = Field(
        None, description="provider endpoint override (required for searxng: your instance)"
    )
    search_api_key_env: str | None = Field(
        None,
        description="env var holding a keyed provider's API key, read by the agent process only "
        "(default BRAVE_API_KEY / TAVILY_API_KEY)",
    )
    page_chars: int = Field(4000, ge=500, description="characters per page of an action's answer")
    user_agent: str = Field("dynagraph/0.1", description="User-Agent of fetch_url/download/search")
    fetch_timeout: float = Field(20.0, gt=0, description="seconds per network step (connect, read)")
    max_download_bytes: int = Field(200_000_000, gt=0, description="largest file download() saves")
    wayback_base_url: str = Field(
        "https://archive.org", description="find_archived_url's availability API (its base URL)"
    )
    image_max_side: int = Field(
        1568, ge=64, description="ask_image downscales images whose longer side exceeds this"
    )

    @field_validator("search_provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        value = (value or "none").strip().lower()
        if value not in PROVIDERS:
            raise ValueError(
                f"actions.search_provider must be one of {', '.join(PROVIDERS)}, not {value!r}"
            )
        return value

    @property
    def api_key_env(self) -> str | None:
        """The environment variable (of the agent process) that holds the provider's API key."""
        return self.search_api_key_env or KEYED_PROVIDERS.get(self.search_provider)

    def kernel_settings(self) -> dict[str, Any]:
        """The values the kernel's actions read (never a key; the agent proxy adds its URL)."""
        return {
            "page_chars": self.page_chars,
            "user_agent": self.user_agent,
            "fetch_timeout": self.fetch_timeout,
            "max_download_bytes": self.max_download_bytes,
            "search_provider": self.search_provider,
            "search_base_url": self.search_base_url,
            "wayback_base_url": self.wayback_base_url,
            "image_max_side": self.image_max_side,
        }
