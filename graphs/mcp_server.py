"""``dynagraph library mcp``: the function library as an MCP server (stdio, official ``mcp`` SDK).

Tools:

- ``search_functions(query, k)``: the library's hybrid search (active functions only): name,
  signature, docstring, tags, uses and score per hit;
- ``call_function(name, arguments)``: defines the function (and the library functions it calls)
  in a sandboxed kernel with the executor's limits (Services.kernel_session: sandbox, memory,
  scrubbed environment, output cap; ``executor.timeout`` per call) and calls it. ``arguments``
  is a JSON object (keyword arguments) or array (positional ones). The answer holds the result
  as JSON when it is JSON-serializable, its bounded repr, and what the call printed. An unknown,
  archived or quarantined function, or a call that raises or times out, is a tool error whose
  text says which.

Resources: ``dynagraph://functions/{name}``, the source an active function is defined with
(imports, module-level names, code), listed for every active function at the time of the list.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from typing import Any

from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import Settings
from dynagraph.tools.kernel import definitions
from dynagraph.tools.library import FunctionRecord

RESULT_MARKER = "__DYNAGRAPH_MCP_RESULT__"
URI_PREFIX = "dynagraph://functions/"
MAX_RESULT_CHARS = 20_000
MAX_OUTPUT_CHARS = 4_000
#: Output kept of a call cell: its head and tail, the tail holding the answer's whole line.
_CALL_OUTPUT = 8 * (MAX_RESULT_CHARS + MAX_OUTPUT_CHARS)

# Runs in the kernel after the definitions: call, then print one marker line with the outcome.
_CALL_TEMPLATE = """\
import json as __dg_json
__dg_in = __dg_json.loads({arguments!r})
__dg_value = {name}(*__dg_in["args"], **__dg_in["kwargs"])
{await_line}
def __dg_payload(value, limit={limit}):
    out = {{"repr": __dynagraph_short_repr__(value) if "__dynagraph_short_repr__" in globals()
            else repr(value)[:limit], "type": type(value).__name__}}
    try:
        text = __dg_json.dumps(value)
        if len(text) <= limit:
            out["json"] = text
    except (TypeError, ValueError, RecursionError):
        pass
    return out
print()
print({marker!r} + __dg_json.dumps(__dg_payload(__dg_value)))
"""


class ToolFailure(Exception):
    """Raised by the tool bodies; the server turns it into a tool error result."""


class LibraryTools:
    """What the MCP tools do, without the SDK: testable and reusable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services = Services(settings)
        self._folder: str | None = None
        self._kernel = None
        self._helper_at: int | None = None  # the kernel's restarts when it got the helper
        self._lock = threading.Lock()

    @property
    def library(self):
        return self.services.library

    # -- search -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        k = max(1, min(int(k), 50))
        hits = self.library.search(query, k=k, alpha=self.settings.library.alpha)
        return [
            {
                "name": h.record.name,
                "signature": f"{h.record.name}{h.record.signature}",
                "docstring": h.record.docstring,
                "tags": list(h.record.tags),
                "uses": h.record.uses,
                "score": round(h.score, 4),
                "resource": URI_PREFIX + h.record.name,
            }
            for h in hits
        ]

    # -- records ----------------------------------------------------------------------------
    def active_record(self, name: str) -> FunctionRecord:
        record = self.library.get_by_name(name)
        if record is not None:
            return record
        other = self.library.get_by_name(name, include_inactive=True)
        if other is not None:
            why = f" ({other.status_reason})" if other.status_reason else ""
            raise ToolFailure(
                f"function {name!r} is {other.status}{why} and cannot be called; "
                "search_functions lists the active ones"
            )
        raise ToolFailure(f"no function named {name!r} in the library; use search_functions")

    def records_for(self, record: FunctionRecord) -> list[FunctionRecord]:
        """``record`` after the library functions it calls (depth first)."""
        ordered: list[FunctionRecord] = []
        seen: set[str] = set()

        def visit(rec: FunctionRecord) -> None:
            if rec.name in seen:
                return
            seen.add(rec.name)
            for dep in rec.depends_on:
                visit(self.active_record(dep))
            ordered.append(rec)

        visit(record)
        return ordered

    def source(self, name: str) -> str:
        return self.active_record(name).kernel_source()

    # -- calls ------------------------------------------------------------------------------
    def call(self, name: str, arguments: Any = None) -> dict[str, Any]:
        record = self.active_record(name)
        if arguments is None:
            args, kwargs = [], {}
        elif isinstance(arguments, list):
            args, kwargs = arguments, {}
        elif isinstance(arguments, dict):
            args, kwargs = [], arguments
        else:
            raise ToolFailure("arguments must be a JSON object (by name) or array (by position)")
        is_async = record.code.lstrip().startswith("async def") or f"async def {name}(" in (
            record.code
        )
        cell = _CALL_TEMPLATE.format(
            arguments=json.dumps({"args": args, "kwargs": kwargs}),
            name=record.name,
            await_line="__dg_value = await __dg_value" if is_async else "",
            limit=MAX_RESULT_CHARS,
            marker=RESULT_MARKER,
        )
        timeout = self.settings.executor.timeout
        with self._lock:
            self._define(self.records_for(record))
            # the answer's line is the output's last: a cap large enough that it stays whole
            result = self._session().execute(cell, timeout=timeout, output_limit=_CALL_OUTPUT)
        if not result.ok():
            if result.status == "error":
                raise ToolFailure(
                    f"{name} raised {result.error_name}: {result.error_value or ''}".rstrip(": ")
                )
            raise ToolFailure(result.to_observation(MAX_OUTPUT_CHARS))
        printed, _, tail = result.stdout.rpartition(RESULT_MARKER)
        try:
            payload = json.loads(tail.strip().splitlines()[0])
        except (ValueError, IndexError):
            raise ToolFailure(f"{name}: the kernel's answer could not be read") from None
        answer: dict[str, Any] = {"function": name, "type": payload.get("type")}
        if "json" in payload:
            answer["result"] = json.loads(payload["json"])
        answer["repr"] = payload.get("repr")
        printed = printed.rstrip("\n")
        if printed.strip():
            answer["output"] = printed[-MAX_OUTPUT_CHARS:]
        return answer

    def _define(self, records: list[FunctionRecord]) -> None:
        """Define ``records`` in the kernel as a task's kernel does: each in a namespace of its
        own (tools/kernel/definitions.py), so that two functions' module-level names never
        meet."""
        names = [r.name for r in records]
        sources = [(r.name, r.kernel_source(), r.depends_on) for r in records]
        session = self._session()
        # the helper's ~8 KB of source in the kernel's first cell only (again after a restart)
        helper = self._helper_at == session.restarts
        result = definitions.run_definitions(session, sources, helper=helper, timeout=60)
        if result.ok():
            self._helper_at = session.restarts
        failed = definitions.failures(result, names)
        if failed:
            first = next(iter(failed))
            raise ToolFailure(f"{first} could not be defined: {failed[first]}")

    def _session(self):
        if self._kernel is None:
            base = self.settings.path(self.settings.executor.workdir)
            base.mkdir(parents=True, exist_ok=True)
            self._folder = tempfile.mkdtemp(prefix="mcp-", dir=base)
            self._kernel = self.services.kernel_session(self._folder)
            self._kernel.start()
        return self._kernel

    def close(self) -> None:
        if self._kernel is not None:
            self._kernel.shutdown()
            self._kernel = self._helper_at = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
        self.services.close()


def build_server(tools: LibraryTools):
    """The MCP server over ``tools`` (mcp 2.x ``MCPServer``)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ToolError

    class LibraryServer(MCPServer):
        async def list_resources(self):  # every active function, as of this request
            from mcp.types import Resource

            listed = await super().list_resources()
            for record in tools.library.list(status="active"):
                listed.append(
                    Resource(
                        uri=URI_PREFIX + record.name,
                        name=record.name,
                        description=record.summary_line(),
                        mime_type="text/x-python",
                    )
                )
            return listed

    server = LibraryServer(
        name="dynagraph-library",
        instructions="Functions a dynagraph agent wrote, tested and kept. Find one with "
        "search_functions, read its source as a resource, run it with call_function.",
    )

    @server.tool()
    def search_functions(query: str, k: int = 5) -> list[dict[str, Any]]:
        """Search the library (hybrid: meaning and keywords) for functions that do `query`;
        returns up to k hits with signature, docstring, tags, uses and score."""
        return tools.search(query, k)

    @server.tool()
    def call_function(
        name: str, arguments: dict[str, Any] | list[Any] | None = None
    ) -> dict[str, Any]:
        """Call a library function in a sandboxed kernel. `arguments`: a JSON object of keyword
        arguments or an array of positional ones. Returns the result (as JSON when it is
        JSON-serializable), its repr and type, and anything the call printed."""
        try:
            return tools.call(name, arguments)
        except ToolFailure as exc:
            raise ToolError(str(exc)) from None

    @server.resource(URI_PREFIX + "{name}", mime_type="text/x-python")
    def function_source(name: str) -> str:
        """The source that defines an active library function."""
        try:
            return tools.source(name)
        except ToolFailure as exc:
            raise ResourceError(str(exc)) from None

    return server


def serve_stdio(settings: Settings) -> None:
    """Serve until the client closes stdin."""
    tools = LibraryTools(settings)
    try:
        tools.library  # noqa: B018  (open it now: a bad config fails before the handshake)
        build_server(tools).run("stdio")
    finally:
        tools.close()
