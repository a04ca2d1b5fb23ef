"""Where the Weaviate library lives and how to reach it: config, connection, error lines.

Split from :mod:`tools.library.weaviate` so that the questions "which server, and is it
there?" read apart from the library itself. Connections skip the client's init checks
(``skip_init_checks``: the PyPI version lookup fails or stalls offline) and instead ask the
server's gRPC health service once, because a server that answers REST but not gRPC (port 50051
not published) is the most common broken set-up and would otherwise surface later as a minute
of retries. Every failure becomes one line naming the URL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import grpc
import httpx
import weaviate
from dynagraph.tools.errors import causes
from dynagraph.tools.library.base import LibraryError
from dynagraph.tools.library.outbox import LibraryUnavailableError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.embedded import EmbeddedOptions
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateRetryError,
    WeaviateTimeoutError,
)
from weaviate.proto.v1 import health_weaviate_pb2

_STATUS_UNAVAILABLE = {502, 503, 504}
#: What a Weaviate server answers while its shards are closing (a shutdown) or not loaded yet:
#: the server is going or coming, not refusing the request. Both seen live in
#: tests/e2e/test_weaviate_outage.py (a search sent while the server stops); a collection that
#: is really gone is answered at the schema level instead ("no such class ...").
_SHARDS_AWAY = ("no read replica found", "tried to browse non-existing index")


class WeaviateConfig(BaseModel):
    """Where the Weaviate library lives: the ``library.weaviate`` mapping of a config file."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["local", "custom", "cloud", "embedded"] = Field(
        "local",
        description="local: host + ports (docker compose); custom: separate http/grpc hosts; "
        "cloud: Weaviate Cloud url + API key; embedded: downloads the server the first time "
        "(needs internet, not on Windows)",
    )
    host: str = "localhost"
    http_port: int = 8080
    grpc_port: int = 50051
    http_host: str | None = Field(None, description="custom mode; default: host")
    grpc_host: str | None = Field(None, description="custom mode; default: http_host")
    secure: bool = Field(False, description="custom mode: https and TLS gRPC")
    url: str | None = Field(None, description="cloud mode: the cluster URL")
    api_key_env: str | None = Field(
        None, description="environment variable with the API key (cloud default WEAVIATE_API_KEY)"
    )
    collection: str = Field("DynagraphFunction", pattern=r"^[A-Z][_0-9A-Za-z]*$")
    tenant: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="one tenant per project: several projects share one collection",
    )
    timeout: float = Field(30.0, gt=0, description="seconds per query or write")
    init_timeout: float = Field(5.0, gt=0, description="seconds to wait when connecting")
    batch_size: int = Field(100, ge=1, le=1000, description="objects per batch on import")
    vector_index: Literal["hnsw", "flat", "dynamic"] = Field(
        "hnsw",
        description="at creation only: flat suits small libraries and many tenants; dynamic "
        "starts flat and switches to hnsw (server needs ASYNC_INDEXING=true)",
    )
    replication_factor: int = Field(1, ge=1, description="at creation only; 3 for quorum")
    embedded_data_path: str | None = Field(None, description="embedded mode: data directory")
    liveness_check: bool = Field(
        True,
        description="ask REST /.well-known/live before each gRPC query: an outage then fails "
        "at once instead of after the client's minute of gRPC retries",
    )

    @model_validator(mode="after")
    def _check_mode(self) -> WeaviateConfig:
        if self.mode == "cloud":
            if not self.url:
                raise ValueError("mode cloud needs url (the cluster URL)")
            if self.api_key_env is None:
                self.api_key_env = "WEAVIATE_API_KEY"
        return self

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None) -> WeaviateConfig:
        """The ``library.weaviate`` mapping of a config file, or one line saying what is wrong."""
        try:
            return cls(**(mapping or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            where = f"library.weaviate.{where}" if where else "library.weaviate"
            raise LibraryError(f"{where}: {first['msg']}") from exc

    def rest_url(self) -> str:
        """The REST base URL (without ``/v1``)."""
        if self.mode == "cloud":
            host = re.sub(r"^https?://", "", str(self.url)).split("/")[0]
            return f"https://{host}"
        if self.mode == "custom":
            scheme = "https" if self.secure else "http"
            return f"{scheme}://{self.http_host or self.host}:{self.http_port}"
        return f"http://{self.host}:{self.http_port}"

    def describe(self) -> str:
        """Where the server is expected, as the error messages name it."""
        if self.mode == "cloud":
            return str(self.url)
        if self.mode == "custom":
            http_host = self.http_host or self.host
            grpc_host = self.grpc_host or http_host
            scheme = "https" if self.secure else "http"
            grpc_where = (
                f":{self.grpc_port}"
                if grpc_host == http_host
                else (f"{grpc_host}:{self.grpc_port}")
            )
            return f"{scheme}://{http_host}:{self.http_port} (grpc {grpc_where})"
        return f"http://{self.host}:{self.http_port} (grpc :{self.grpc_port})"

    def target(self) -> str:
        """Server, collection and tenant: what an outbox's queued changes belong to."""
        tenant = f" tenant {self.tenant}" if self.tenant else ""
        return f"Weaviate {self.describe()} collection {self.collection}{tenant}"

    def unreachable_message(self) -> str:
        where = self.describe()
        if self.mode == "cloud":
            return f"cannot reach Weaviate at {where}: check library.weaviate.url and the network"
        if self.mode == "embedded":
            return (
                f"cannot start embedded Weaviate at {where}: it downloads its server the first "
                "time (needs internet); or run `docker compose up -d` and use mode: local"
            )
        return (
            f"cannot reach Weaviate at {where}: start it with `docker compose up -d` "
            "(or scripts/weaviate-server.sh start) or set library.weaviate.*"
        )


# -- connecting ---------------------------------------------------------------------------------
def _api_key(config: WeaviateConfig) -> Any:
    if not config.api_key_env:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise LibraryError(
            f"set {config.api_key_env} (the Weaviate API key for {config.describe()})"
        )
    return Auth.api_key(key)


def _open_client(config: WeaviateConfig) -> weaviate.WeaviateClient:
    """A connected client; the connect helpers close it themselves when connecting fails."""
    extra = AdditionalConfig(
        timeout=Timeout(init=config.init_timeout, query=config.timeout, insert=config.timeout)
    )
    auth = _api_key(config)
    if config.mode == "local":
        return weaviate.connect_to_local(
            host=config.host,
            port=config.http_port,
            grpc_port=config.grpc_port,
            additional_config=extra,
            skip_init_checks=True,
            auth_credentials=auth,
        )
    if config.mode == "custom":
        http_host = config.http_host or config.host
        return weaviate.connect_to_custom(
            http_host=http_host,
            http_port=config.http_port,
            http_secure=config.secure,
            grpc_host=config.grpc_host or http_host,
            grpc_port=config.grpc_port,
            grpc_secure=config.secure,
            additional_config=extra,
            auth_credentials=auth,
            skip_init_checks=True,
        )
    if config.mode == "cloud":
        return weaviate.connect_to_weaviate_cloud(
            cluster_url=str(config.url),
            auth_credentials=auth,
            additional_config=extra,
            skip_init_checks=True,
        )
    options = EmbeddedOptions(
        hostname=config.host, port=config.http_port, grpc_port=config.grpc_port
    )
    if config.embedded_data_path:
        options.persistence_data_path = str(Path(config.embedded_data_path).expanduser())
    client = weaviate.WeaviateClient(
        embedded_options=options, additional_config=extra, skip_init_checks=True
    )
    try:
        client.connect()
    except BaseException:
        client.close()
        raise
    return client


def _grpc_target(config: WeaviateConfig) -> tuple[str, bool]:
    if config.mode == "cloud":
        host = re.sub(r"^https?://", "", str(config.url)).split("/")[0]
        if host.endswith(".weaviate.network"):
            ident, domain = host.split(".", 1)
            return f"{ident}.grpc.{domain}:443", True
        return f"grpc-{host}:443", True
    if config.mode == "custom":
        return f"{config.grpc_host or config.http_host or config.host}:{config.grpc_port}", (
            config.secure
        )
    return f"{config.host}:{config.grpc_port}", False


def check_grpc(config: WeaviateConfig) -> None:
    """Ask the server's gRPC health service once (what ``skip_init_checks`` skips, along with
    the PyPI lookup we do not want). Raises :class:`LibraryUnavailableError`."""
    target, secure = _grpc_target(config)
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials())
        if secure
        else grpc.insecure_channel(target)
    )
    try:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_weaviate_pb2.WeaviateHealthCheckRequest.SerializeToString,
            response_deserializer=health_weaviate_pb2.WeaviateHealthCheckResponse.FromString,
        )
        reply = check(health_weaviate_pb2.WeaviateHealthCheckRequest(), timeout=config.init_timeout)
        serving = reply.status == health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
    except grpc.RpcError:
        serving = False
    finally:
        channel.close()
    if not serving:
        raise LibraryUnavailableError(
            f"Weaviate answers REST but not gRPC at {target} ({config.describe()}): publish "
            "port 50051 (docker-compose.yml) or set library.weaviate.grpc_port"
        )


class LivenessProbe:
    """One cheap REST request that says whether the server is there.

    weaviate-client retries a gRPC query on an unreachable server with exponential backoff
    for about a minute before it gives up; asking ``/v1/.well-known/live`` first (milliseconds,
    no auth needed) turns an outage into an immediate :class:`LibraryUnavailableError`, which
    is what lets the outbox keep the agent going. It cannot see a server whose REST side
    answers while its gRPC side does not; that case still waits out the retries.
    """

    def __init__(self, config: WeaviateConfig) -> None:
        self.config = config
        self._http = httpx.Client(base_url=config.rest_url(), timeout=config.init_timeout)

    def check(self) -> None:
        try:
            alive = self._http.get("/v1/.well-known/live").status_code == 200
        except httpx.HTTPError:
            alive = False
        if not alive:
            raise LibraryUnavailableError(self.config.unreachable_message())

    def close(self) -> None:
        self._http.close()


def connect(config: WeaviateConfig) -> weaviate.WeaviateClient:
    """A connected, gRPC-checked client, or one line saying where Weaviate was expected."""
    try:
        client = _open_client(config)
    except LibraryError:
        raise
    except Exception as exc:
        if is_unavailable(exc) or config.mode == "embedded":
            raise LibraryUnavailableError(config.unreachable_message()) from exc
        if isinstance(exc, WeaviateBaseError):
            raise LibraryError(
                f"cannot use Weaviate at {config.describe()}: {one_line(exc)}"
            ) from exc
        raise
    try:
        check_grpc(config)
    except BaseException:
        client.close()
        raise
    return client


def is_unavailable(exc: BaseException) -> bool:
    """Did the server fail to answer (versus answer with a refusal)?"""
    for err in causes(exc):
        if isinstance(
            err,
            WeaviateConnectionError
            | WeaviateGRPCUnavailableError
            | WeaviateRetryError
            | WeaviateTimeoutError
            | httpx.TransportError
            | ConnectionError
            | TimeoutError,
        ):
            return True
        if (
            isinstance(err, grpc.RpcError)
            and hasattr(err, "code")
            and err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        ):
            return True
        if isinstance(err, UnexpectedStatusCodeError) and err.status_code in _STATUS_UNAVAILABLE:
            return True
        if isinstance(err, WeaviateBaseError) and any(m in str(err) for m in _SHARDS_AWAY):
            return True
    return False


def one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
