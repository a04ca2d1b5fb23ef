"""Whether bubblewrap can make a sandbox here, asked once (hardening.bwrap_probe): tests that
need it skip with the probe's reason, not only when the binary is missing."""

from __future__ import annotations

import pytest
from dynagraph.tools.kernel.hardening import bwrap_probe

BWRAP, NO_BWRAP_WHY = bwrap_probe()
needs_bwrap = pytest.mark.skipif(
    BWRAP is None,
    reason=f"the sandbox cannot run here: {NO_BWRAP_WHY} (apt-get install bubblewrap)",
)
