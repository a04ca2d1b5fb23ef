"""The library section of the settings: which backend, where, and how search ranks."""

from __future__ import annotations

from typing import Any, Literal

from dynagraph.tools.config import StrictSettings
from pydantic import Field, model_validator


class LibrarySettings(StrictSettings):
    backend: Literal["sqlite", "weaviate"] = "sqlite"
    path: str = "${DYNAGRAPH_HOME}/library.db"
    top_k: int = Field(5, ge=1, le=50, description="library hits shown to the coder per step")
    min_score: float = Field(0.0, description="hits scoring below this are not shown")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="hybrid weight: 1 vectors, 0 keywords")
    query_embedding: Literal["joined", "parted"] = Field(
        "parted",
        description="the coder's query vector: the step's instruction and the task embedded "
        "apart and summed, the task once per task (parted: a step embeds only its instruction, "
        "whatever the task's length), or as one text at every step (joined: recall@10 +0.025 "
        "and +0.032 on two CRAFT sets, 2-2.5x the embedding per step; bench/README.md 13e)",
    )
    weaviate: dict[str, Any] = Field(default_factory=dict, description="see docs/weaviate.md")
    outbox_path: str = "${DYNAGRAPH_HOME}/outbox.db"

    @model_validator(mode="after")
    def _weaviate_section_is_valid(self) -> LibrarySettings:
        """A typo under ``library.weaviate`` fails when the config loads, not at first use.

        The Weaviate module (and its client) is imported only when the section is used."""
        if self.weaviate or self.backend == "weaviate":
            from dynagraph.tools.library.weaviate_connect import WeaviateConfig

            try:
                WeaviateConfig.from_mapping(self.weaviate)
            except Exception as exc:  # LibraryError: one line naming the key
                raise ValueError(str(exc)) from exc
        return self
