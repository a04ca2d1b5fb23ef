"""The kernel machinery's one error type."""

from __future__ import annotations

from dynagraph.tools.errors import EnvironmentProblem

__all__ = ["BWRAP_INSTALL_HINT", "KernelError"]

BWRAP_INSTALL_HINT = (
    "bubblewrap is not installed: run `apt-get install -y bubblewrap` (Debian/Ubuntu) "
    "or use sandbox='none'"
)


class KernelError(EnvironmentProblem):
    """A kernel could not be started, or could not be wrapped the way it was asked to be.

    An environment problem (exit code 2): what cells do never raises, it becomes an
    ExecutionResult; this is for a machine that cannot run kernels as configured.
    """
