"""The ``executor`` section of the settings: how task kernels run (limits, sandbox, pool)."""

from __future__ import annotations

from typing import Literal

from dynagraph.tools.config import StrictSettings
from pydantic import Field

__all__ = ["ExecutorSettings"]


class ExecutorSettings(StrictSettings):
    timeout: float = Field(60.0, gt=0, description="seconds a cell may run")
    grace: float = Field(2.0, gt=0, description="seconds after an interrupt before a restart")
    output_limit: int = Field(20_000, description="characters of output kept per cell")
    observation_chars: int = Field(4_000, description="characters of observation shown to models")
    memory_limit_mb: int | None = Field(2048, description="RLIMIT_AS of the kernel; None = off")
    sandbox: Literal["auto", "none", "bwrap"] = Field(
        "auto",
        description=(
            "auto: bubblewrap when it runs here, else none with one warning line; "
            "bwrap: bubblewrap or exit 2; none: no sandbox (see README, Security)"
        ),
    )
    network: bool = Field(True, description="false cuts the kernel's network (needs bubblewrap)")
    workdir: str = "${DYNAGRAPH_HOME}/runs"
    env_allow: list[str] = Field(default_factory=list, description="extra env vars for kernels")
    startup_timeout: float = 60.0
    pool_size: int | None = Field(
        None,
        ge=0,
        description="pre-warmed kernels; None = automatic (0 for run, concurrency + 1 for batch)",
    )
