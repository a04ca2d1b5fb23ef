"""The base every settings section derives from: unknown keys are errors, not silently ignored.

Each part of the machinery declares its own section (``ModelsSettings`` in tools/models.py,
``ExecutorSettings`` with the kernel, ...); graphs/settings.py composes them into one ``Settings``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictSettings(BaseModel):
    """A settings section: a typo in a config key fails at load time, naming the key."""

    model_config = ConfigDict(extra="forbid")
