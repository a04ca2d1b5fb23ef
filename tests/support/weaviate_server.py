"""A live Weaviate server for the tests, via scripts/weaviate-server.sh.

``weaviate_server`` (session scope) is, in this order:

1. the server named by ``DYNAGRAPH_TEST_WEAVIATE_URL`` (gRPC on
   ``DYNAGRAPH_TEST_WEAVIATE_GRPC_PORT``, default 50051; the API key of ``WEAVIATE_API_KEY``
   when set), left running afterwards;
2. else a server the script starts for this session (the binary from
   ``~/.cache/dynagraph/weaviate/<version>/``, built with ``go install`` when missing and ``go`` is
   on PATH), on free loopback ports with a temporary data folder, stopped at the end;
3. else the test is skipped, saying why.

Tests that stop and restart a server (the outage test) start one of their own with
:class:`LocalWeaviate` so the shared one is never disturbed. ``WeaviateEndpoint`` gives the
configs pointed at a server and fresh collections deleted afterwards (``fresh_collection``);
``settled_versions`` checks what many writers must leave in a library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest

if TYPE_CHECKING:
    from dynagraph.tools.library.base import FunctionRecord
    from dynagraph.tools.library.weaviate_connect import WeaviateConfig

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "weaviate-server.sh"
_VERSION_LINE = 'VERSION="${DYNAGRAPH_WEAVIATE_VERSION:-'


def pinned_version() -> str:
    """The server version the script pins (its ``VERSION=`` line)."""
    env = os.environ.get("DYNAGRAPH_WEAVIATE_VERSION")
    if env:
        return env
    for line in SCRIPT.read_text(encoding="utf-8").splitlines():
        if line.startswith(_VERSION_LINE):
            return line[len(_VERSION_LINE) :].split("}")[0]
    raise RuntimeError(f"no VERSION line in {SCRIPT}")


def binary_path() -> Path:
    cache = os.environ.get("DYNAGRAPH_WEAVIATE_CACHE") or str(
        Path.home() / ".cache" / "dynagraph" / "weaviate"
    )
    return Path(cache) / pinned_version() / "weaviate-server"


def why_no_local_server() -> str | None:
    """None when the script can start a server here, else the reason it cannot."""
    if not shutil.which("bash"):
        return "no bash to run scripts/weaviate-server.sh"
    if binary_path().exists() or shutil.which("go"):
        return None
    return (
        f"no Weaviate server binary at {binary_path()} and no `go` to build it; set "
        "DYNAGRAPH_TEST_WEAVIATE_URL (and _GRPC_PORT) to test against a running server"
    )


@dataclass
class WeaviateEndpoint:
    url: str
    grpc_port: int

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def http_port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    def library_mapping(self, *, mode: str = "local", **extra: object) -> dict[str, object]:
        """The ``library.weaviate`` mapping of a config pointed at this server: ``local`` mode
        (host and ports), or ``custom`` (separate hosts, TLS: what an https URL needs); with
        the API key of ``WEAVIATE_API_KEY`` when it is set."""
        secure = urlparse(self.url).scheme == "https"
        where: dict[str, object]
        if mode == "custom" or secure:
            where = {"mode": "custom", "http_host": self.host, "grpc_host": self.host}
            where["secure"] = secure
        else:
            where = {"mode": "local", "host": self.host}
        where |= {"http_port": self.http_port, "grpc_port": self.grpc_port}
        if os.environ.get("WEAVIATE_API_KEY"):
            where["api_key_env"] = "WEAVIATE_API_KEY"
        return {**where, **extra}

    def config(self, **options: object) -> WeaviateConfig:
        """A :class:`WeaviateConfig` for this server (``options`` as for library_mapping)."""
        from dynagraph.tools.library.weaviate_connect import WeaviateConfig

        return WeaviateConfig(**self.library_mapping(**options))  # type: ignore[arg-type]

    def drop_collections(self, names: list[str]) -> None:
        """Delete these function collections, with the ``Log`` and ``Task`` collections of
        their journal, through a client of its own (closed here)."""
        if not names:
            return
        from dynagraph.tools.library.weaviate_connect import connect

        client = connect(self.config(timeout=180.0))  # a loaded machine: a delete flushes
        try:
            client.collections.delete([f"{n}{s}" for n in names for s in ("", "Log", "Task")])
        finally:
            client.close()

    @contextmanager
    def fresh_collection(self, prefix: str) -> Iterator[str]:
        """A new collection name (``prefix`` + random), its collections deleted at the end."""
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        try:
            yield name
        finally:
            self.drop_collections([name])


def settled_versions(records: list[FunctionRecord]) -> dict[str, list[FunctionRecord]]:
    """``records`` by name, after checking what many writers must leave: one record per
    distinct code, every name's versions numbered 1..n, one active version per name."""
    assert len({r.ast_hash for r in records}) == len(records), "a function stored twice"
    by_name: dict[str, list[FunctionRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    for name, versions in by_name.items():
        numbers = sorted(r.version for r in versions)
        assert numbers == list(range(1, len(versions) + 1)), (name, numbers)  # no gap/repeat
        assert [r.status for r in versions].count("active") == 1, (name, versions)
    return by_name


class LocalWeaviate:
    """One server started by scripts/weaviate-server.sh under its own name and state folder."""

    def __init__(self, data: Path | None = None, *, state: Path | None = None) -> None:
        self.name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.state = state or Path(tempfile.mkdtemp(prefix="dynagraph-weaviate-state-"))
        self.data = data
        self.endpoint: WeaviateEndpoint | None = None

    def _run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DYNAGRAPH_WEAVIATE_STATE": str(self.state)}
        return subprocess.run(
            ["bash", str(SCRIPT), *args, "--name", self.name],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def start(self) -> WeaviateEndpoint:
        args = ["start"] + (["--data", str(self.data)] if self.data is not None else [])
        proc = self._run(*args)
        if proc.returncode != 0:
            raise RuntimeError(f"weaviate-server.sh start failed:\n{proc.stderr[-3000:]}")
        info = dict(
            line.split("=", 1)
            for line in (self.state / self.name / "server.env").read_text().splitlines()
            if "=" in line
        )
        self.endpoint = WeaviateEndpoint(info["WEAVIATE_URL"], int(info["WEAVIATE_GRPC_PORT"]))
        assert proc.stdout.strip() == self.endpoint.url, proc.stdout
        return self.endpoint

    def stop(self) -> None:
        """Stop by the script; if it could not, end the server by its pid (ours)."""
        pid_file = self.state / self.name / "pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        proc = self._run("stop", timeout=60)
        if pid is not None and _alive(pid):
            os.kill(pid, 9)
            raise RuntimeError(f"weaviate-server.sh stop left pid {pid} running: {proc.stderr}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return ""


def _given() -> WeaviateEndpoint | None:
    url = os.environ.get("DYNAGRAPH_TEST_WEAVIATE_URL", "")
    if not url:
        return None
    return WeaviateEndpoint(url, int(os.environ.get("DYNAGRAPH_TEST_WEAVIATE_GRPC_PORT", "50051")))


@pytest.fixture(scope="session")
def weaviate_server() -> Iterator[WeaviateEndpoint]:
    """A live Weaviate server for the session (see the module docstring), or a skip."""
    given = _given()
    if given is not None:
        yield given
        return
    reason = why_no_local_server()
    if reason is not None:
        pytest.skip(reason)
    server = LocalWeaviate()
    try:
        endpoint = server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # go or the binary is there: failing to start is a bug
    try:
        yield endpoint
    finally:
        server.stop()
        shutil.rmtree(server.state, ignore_errors=True)
