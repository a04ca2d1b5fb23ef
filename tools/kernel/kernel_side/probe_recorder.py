"""The probe recorder, kernel side: wraps each top-level function a cell defines and records
the first few distinct calls made to it, so the librarian can later replay them.

Shipped by the bootstrap (tools/kernel/probes.py: BOOTSTRAP), which calls :func:`install`. It
registers an IPython AST transformer that adds the decorator ``__dynagraph_probe__`` to every
top-level ``def`` / ``async def`` of every later cell. The decorator (``functools.wraps``, so
``__name__``, ``__doc__``, ``__wrapped__``, ``inspect.signature`` and ``inspect.getsource`` keep
working) counts the calls and errors per function name and records the first few distinct calls
of each definition: argument and result reprs, and pickles (base64) of ``(args, kwargs)`` and of
the result when they pickle in under 256 KiB. Recursive calls are neither counted nor recorded
(only the outermost call of a function is a use and a probe). The wrapper costs about 1 us per
call once a definition's probe slots are full. Generator functions and objects that are not
plain functions are left alone. Recording never changes what the user's code sees: any failure
while recording is swallowed, the call's own exception propagates unchanged, and the wrapper
frame is hidden from IPython tracebacks (``__tracebackhide__``).

The recorded calls leave the kernel in one of two ways, both clearing the store: as the
``user_expressions`` of the cell's own execute_reply (``__dynagraph_probe_payload__()``, no extra
round trip) or printed by a separate fetch cell (``__dynagraph_fetch__()``, for a cell that
failed: IPython evaluates user_expressions only after a successful cell).

Every function here must be self-contained (imports inside, literal defaults) and may only call
the other functions of this module, and those of compare.py, by name: both are executed in one
private namespace, compare.py first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # in the kernel these come from compare.py, run first in the same namespace
    from dynagraph.tools.kernel.kernel_side.compare import replay_probe, results_equal, short_repr


def pickle_b64(value: Any, max_bytes: int = 262144) -> str | None:
    """base64 of ``pickle.dumps(value)``, or None if it does not pickle in ``max_bytes``.

    Writing stops as soon as the limit is passed, so a huge argument costs little.
    """
    import base64
    import io
    import pickle

    class TooLarge(Exception):
        pass

    class LimitedBuffer(io.BytesIO):
        def write(self, data: Any) -> int:
            if self.tell() + len(data) > max_bytes:
                raise TooLarge
            return super().write(data)

    buffer = LimitedBuffer()
    try:
        pickle.Pickler(buffer, protocol=4).dump(value)
    except Exception:
        return None
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def make_probe_decorator(
    definition_id: Any,
    probes: dict,
    calls: dict,
    attempts: dict,
    lock: Any,
    max_probes: int = 5,
    max_bytes: int = 262144,
) -> Any:
    """The ``__dynagraph_probe__`` decorator, recording into ``probes`` and ``calls``.

    ``definition_id()`` names the definition being decorated (the cell's execution count), so
    that probes of a redefined function are told apart. ``attempts`` bounds the work spent
    looking for distinct calls of a definition; all stores are cleared by the fetch.
    """
    import contextvars
    import functools
    import inspect
    import threading
    import types

    budget = 4 * max_probes  # attempts per definition: bounds the reprs taken to find new calls

    def start(name: str, key: tuple, is_async: bool, args: tuple, kwargs: dict) -> Any:
        """Count the call; if a probe slot is free, take reprs and pickles before the call
        (the function may mutate its arguments). The common case, no slot, is kept cheap."""
        try:
            stats = calls.get(name)
            if stats is None:
                stats = calls.setdefault(name, {"calls": 0, "errors": 0})
            stats["calls"] += 1
            if attempts.get(key, 0) >= budget:
                return None
            with lock:
                kept = [p for p in probes.get(name, []) if p["defined_in"] == key[1]]
                if len(kept) >= max_probes:
                    attempts[key] = budget
                    return None
                attempts[key] = attempts.get(key, 0) + 1
            args_repr, kwargs_repr = short_repr(args), short_repr(kwargs)
            if any(p["args_repr"] == args_repr and p["kwargs_repr"] == kwargs_repr for p in kept):
                return None
            return {
                "function": name,
                "defined_in": key[1],
                "is_async": is_async,
                "args_repr": args_repr,
                "kwargs_repr": kwargs_repr,
                "args_b64": pickle_b64((args, kwargs), max_bytes),
            }
        except Exception:
            return None

    def finish(name: str, pending: Any, result: Any, error: BaseException | None) -> None:
        try:
            if error is not None:
                with lock:
                    calls.setdefault(name, {"calls": 0, "errors": 0})["errors"] += 1
            if pending is None or (error is not None and not isinstance(error, Exception)):
                return
            pending["result_repr"] = None if error is not None else short_repr(result)
            pending["result_b64"] = None if error is not None else pickle_b64(result, max_bytes)
            pending["raised"] = None if error is None else short_repr(error)
            pending["raised_type"] = None if error is None else type(error).__qualname__
            with lock:
                probes.setdefault(name, []).append(pending)
        except Exception:
            pass

    def probe(fn: Any) -> Any:
        if getattr(fn, "__dynagraph_probed__", False):
            return fn
        plain = isinstance(fn, types.FunctionType) or type(fn).__name__ == "_lru_cache_wrapper"
        if not plain or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            return fn
        name = getattr(fn, "__name__", "?")
        try:
            key = (name, definition_id())
        except Exception:
            key = (name, None)

        # A call made while this function is already running (recursion, direct or through
        # other functions) is passed straight through: only outermost calls are probes.
        if inspect.iscoroutinefunction(fn):
            running = contextvars.ContextVar(f"dynagraph_running_{name}", default=False)

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True  # noqa: F841  (IPython hides this frame)
                if running.get():
                    return await fn(*args, **kwargs)
                pending = start(name, key, True, args, kwargs)
                token = running.set(True)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as error:
                    finish(name, pending, None, error)
                    raise
                finally:
                    running.reset(token)
                if pending is not None:
                    finish(name, pending, result, None)
                return result

        else:

            class Depth(threading.local):
                value = 0

            depth = Depth()

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True  # noqa: F841  (IPython hides this frame)
                if depth.value:
                    return fn(*args, **kwargs)
                pending = start(name, key, False, args, kwargs)
                depth.value = 1
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:
                    finish(name, pending, None, error)
                    raise
                finally:
                    depth.value = 0
                if pending is not None:
                    finish(name, pending, result, None)
                return result

        try:
            wrapped = functools.wraps(fn)(wrapper)
            for attribute in dir(fn):  # e.g. lru_cache's cache_info, which lives on its type
                if not attribute.startswith("_") and not hasattr(wrapped, attribute):
                    setattr(wrapped, attribute, getattr(fn, attribute))
            wrapped.__dynagraph_probed__ = True
            return wrapped
        except Exception:
            return fn

    return probe


def install(shell: Any, max_probes: int = 5, max_bytes: int = 262144) -> None:
    """Export the ``__dynagraph_*`` names and register the AST transformer (replacing one
    registered before, so installing twice is harmless)."""
    import ast
    import json
    import threading

    probes: dict = {}
    calls: dict = {}
    attempts: dict = {}
    lock = threading.Lock()
    # IPython counts the running cell before running it; ipykernel's execute_reply reports
    # execution_count - 1, and so does defined_in, so the executor can match the two.
    decorator = make_probe_decorator(
        lambda: shell.execution_count - 1, probes, calls, attempts, lock, max_probes, max_bytes
    )

    def take() -> dict:
        """The recorded probes and call counts as JSON-ready data; the store is cleared."""
        with lock:
            payload = json.loads(json.dumps({"probes": probes, "calls": calls}, default=str))
            probes.clear()
            calls.clear()
            attempts.clear()
        return payload

    def fetch() -> str:
        return json.dumps(take())

    class Payload:
        """What a user expression returns: IPython's JSON formatter puts the data itself in
        the reply (``application/json``), so the host decodes no repr."""

        def __init__(self, data: dict) -> None:
            self.data = data

        def _repr_json_(self) -> dict:
            return self.data

        def __repr__(self) -> str:
            return "<dynagraph probes>"

    def payload() -> Payload:
        return Payload(take())

    exports = {
        "__dynagraph_probe__": decorator,
        "__dynagraph_probes__": probes,
        "__dynagraph_calls__": calls,
        "__dynagraph_fetch__": fetch,
        "__dynagraph_probe_payload__": payload,
        "__dynagraph_short_repr__": short_repr,
        "__dynagraph_results_equal__": results_equal,
        "__dynagraph_replay__": replay_probe,
    }

    class ProbeTransformer(ast.NodeTransformer):
        """Adds ``@__dynagraph_probe__`` (outermost) to each top-level def of a cell.

        It must never raise: IPython unregisters a transformer that does.
        """

        dynagraph_probes = True

        def visit_Module(self, node: ast.Module) -> ast.Module:
            try:
                for key, value in exports.items():  # survive `%reset`
                    shell.user_ns.setdefault(key, value)
                for stmt in node.body:
                    if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                        continue
                    if stmt.name.startswith("__dynagraph") or any(
                        isinstance(d, ast.Name) and d.id == "__dynagraph_probe__"
                        for d in stmt.decorator_list
                    ):
                        continue
                    # Placed where the first decorator (or the def) starts, so that
                    # co_firstlineno, and with it inspect.getsource, are unchanged.
                    anchor = stmt.decorator_list[0] if stmt.decorator_list else stmt
                    decorator_name = ast.Name(id="__dynagraph_probe__", ctx=ast.Load())
                    decorator_name.lineno = decorator_name.end_lineno = anchor.lineno
                    decorator_name.col_offset = decorator_name.end_col_offset = anchor.col_offset
                    stmt.decorator_list.insert(0, decorator_name)
            except Exception:
                pass
            return node

    shell.ast_transformers[:] = [
        t for t in shell.ast_transformers if not getattr(t, "dynagraph_probes", False)
    ]
    shell.ast_transformers.append(ProbeTransformer())
    shell.user_ns.update(exports)
