"""The kernel's environment: an allow-list of this process's variables, secrets always dropped.

Model-written code can print ``os.environ``, and jupyter_client copies the agent's whole
environment into the kernel unless given ``env=``: API keys would leak.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "KERNEL_ENV_DEFAULTS",
    "SECRET_NAME_PATTERNS",
    "scrubbed_env",
]

# fmt: off
DEFAULT_ENV_ALLOW: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM",
    "PYTHONPATH", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy",
)
SECRET_NAME_PATTERNS: tuple[str, ...] = (
    "*KEY*", "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*", "*AUTH*",
)
# fmt: on
KERNEL_ENV_DEFAULTS: Mapping[str, str] = {
    "MPLBACKEND": "Agg",  # no GUI; figures reach us through display() (kernel_side/startup.py)
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # silences debugpy's frozen-modules warning
}
_URL_CREDENTIALS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*@")


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_NAME_PATTERNS)


def scrubbed_env(
    extra: Mapping[str, str] | None = None, allow: Iterable[str] = DEFAULT_ENV_ALLOW
) -> dict[str, str]:
    """The kernel's environment: allowlisted variables of this process, plus `extra`, plus defaults.

    Any name matching SECRET_NAME_PATTERNS is dropped even when allowlisted or passed in `extra`,
    and URLs carrying credentials (proxies) are dropped. `allow` entries may be glob patterns
    (``LC_*``). A caller that really wants a secret in the kernel passes a complete ``env=`` to
    KernelSession instead.
    """
    patterns = tuple(allow)
    env = {
        name: value
        for name, value in os.environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    env.update(extra or {})
    for name, value in KERNEL_ENV_DEFAULTS.items():
        env.setdefault(name, value)
    return {
        name: value
        for name, value in env.items()
        if not _is_secret_name(name) and not _URL_CREDENTIALS_RE.match(value)
    }
