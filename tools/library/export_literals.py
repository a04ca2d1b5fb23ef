"""Recorded values as Python literals, for the exported package's tests: no code run.

The recorded pickles are read with an unpickler that refuses every class and callable, so no
code of the recorded values runs here; only plain values (numbers, strings, bytes, None, and
lists, tuples, sets and dicts of them) that read back as themselves become literals.
"""

from __future__ import annotations

import ast
import io
import math
import pickle
from typing import Any

__all__ = ["MAX_LITERAL_CHARS", "MAX_LITERAL_NODES", "literal_of_pickle"]

#: Plain values nested deeper or larger than this are not written as test literals.
MAX_LITERAL_NODES = 20_000
MAX_LITERAL_CHARS = 20_000


class _PlainUnpickler(pickle.Unpickler):
    """Loads only what pickle builds without looking anything up: no class, no callable
    (but ``complex``, which pickle can only rebuild by calling it with two numbers)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "complex"):
            return complex
        raise pickle.UnpicklingError(f"holds a {module}.{name} object")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("holds a persistent reference")


def _size_ok(value: Any) -> bool:
    """Walks the value as its repr would (shared parts counted each time), up to a bound."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_LITERAL_NODES:
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return True


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str | bytes):
        return True
    if isinstance(value, float | complex):
        parts = (value.real, value.imag) if isinstance(value, complex) else (value,)
        return all(math.isfinite(p) for p in parts)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_plain(v) for v in value)
    return False


def literal_of_pickle(b64: str | None) -> tuple[str | None, str]:
    """``(source, "")`` for a recorded value that is a plain literal, else ``(None, why)``."""
    import base64

    if not b64:
        return None, "it was not recorded (too large or not picklable)"
    try:
        value = _PlainUnpickler(io.BytesIO(base64.b64decode(b64))).load()
    except pickle.UnpicklingError as exc:
        return None, str(exc) or "it does not unpickle as plain values"
    except Exception as exc:  # a truncated or foreign pickle
        return None, f"it does not unpickle ({type(exc).__name__})"
    if not _size_ok(value) or not _plain(value):
        return None, "it is not made of plain Python values, or is too large"
    text = "set()" if isinstance(value, set) and not value else repr(value)
    if len(text) > MAX_LITERAL_CHARS:
        return None, "its literal would be too large"
    try:
        if text != "set()" and ast.literal_eval(text) != value:
            return None, "its repr does not read back as the same value"
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None, "its repr is not a Python literal"
    return text, ""
