"""Probe comparison, kernel side: bounded reprs, result equality and one probe's replay.

Shipped into every task kernel by the bootstrap (before probe_recorder.py, which uses
``short_repr``) and into a scratch kernel by replay cells that find it missing
(tools/kernel/probes.py: COMPARE_SOURCE). Comparing here, in the kernel, means a pickle made by
model-written code is never loaded in the agent's process.

Every function here must be self-contained (imports inside, literal defaults) and may only call
the other functions of this module by name: the module is executed in a private namespace.
"""

from __future__ import annotations

from typing import Any


def short_repr(value: Any, limit: int = 2000) -> str:
    """A repr bounded in size (long containers and strings are elided), never raising."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel = 6
    shortener.maxlist = shortener.maxtuple = shortener.maxset = 50
    shortener.maxfrozenset = shortener.maxdeque = shortener.maxarray = 50
    shortener.maxdict = 50
    shortener.maxstring = 500
    shortener.maxlong = 200
    shortener.maxother = limit
    try:
        text = shortener.repr(value)
    except Exception as exc:  # a broken __repr__ must not break the user's call
        text = f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: limit // 2] + " ... " + text[-(limit // 2) :]
    return text


def results_equal(a: Any, b: Any, rel_tol: float = 1e-9, abs_tol: float = 1e-12) -> bool:
    """Whether a replayed result equals a recorded one.

    Numbers compare as numbers (``5 == 5.0``; integers exactly; otherwise relative tolerance
    1e-9, plus an absolute 1e-12 so that results near zero computed in another order still
    match; NaN equals NaN); numpy
    arrays with ``np.array_equal`` (NaN-aware when the dtype allows); pandas objects with
    ``.equals`` (same type required); dicts, lists and tuples recursively (a list never equals
    a tuple); anything else with ``==`` when the type defines it, else by repr.
    """
    import cmath
    import math
    import numbers

    def top_module(x: Any) -> str:
        return (type(x).__module__ or "").split(".")[0]

    def same(x: Any, y: Any, depth: int) -> bool:
        if x is y:
            return True
        if depth > 100:
            return repr(x) == repr(y)
        if "pandas" in (top_module(x), top_module(y)):
            if type(x) is not type(y):
                return False
            try:
                return bool(x.equals(y))
            except Exception:
                return repr(x) == repr(y)
        if "numpy" in (top_module(x), top_module(y)) and (
            hasattr(x, "shape") and hasattr(y, "shape") and (x.shape or y.shape)
        ):
            import numpy as np

            try:
                return bool(np.array_equal(x, y, equal_nan=True))
            except TypeError:  # equal_nan is refused for object and string dtypes
                return bool(np.array_equal(x, y))
        if isinstance(x, numbers.Number) and isinstance(y, numbers.Number):
            try:
                if isinstance(x, numbers.Integral) and isinstance(y, numbers.Integral):
                    return bool(x == y)  # exact: big integers must not pass by tolerance
                if isinstance(x, numbers.Real) and isinstance(y, numbers.Real):
                    if x == y:
                        return True
                    fx, fy = float(x), float(y)
                    if math.isnan(fx) or math.isnan(fy):
                        return math.isnan(fx) and math.isnan(fy)
                    return math.isclose(fx, fy, rel_tol=rel_tol, abs_tol=abs_tol)
                return cmath.isclose(complex(x), complex(y), rel_tol=rel_tol, abs_tol=abs_tol)
            except (OverflowError, TypeError, ValueError):
                return bool(x == y)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k], depth + 1) for k in x)
        if isinstance(x, list | tuple) and isinstance(y, list | tuple):
            if isinstance(x, tuple) != isinstance(y, tuple) or len(x) != len(y):
                return False
            return all(same(i, j, depth + 1) for i, j in zip(x, y, strict=True))
        try:
            equal = x == y
            if isinstance(equal, bool) and (equal or type(x).__eq__ is not object.__eq__):
                return equal
        except Exception:
            pass
        return repr(x) == repr(y)

    return same(a, b, 0)


def replay_probe(namespace: dict, name: str, probe_json: str) -> Any:
    """Call ``namespace[name]`` with a probe's pickled arguments and judge the outcome.

    Returns the verdict dict (for an async function whose probe says ``is_async``, a coroutine
    that returns it): ``ok``, ``result_repr``, ``error``, ``replayable`` (False when the probe
    cannot be replayed: no pickled arguments, or they do not unpickle here) and ``compared``
    (``"value"``, ``"repr"`` or ``"exception"``: what ``ok`` was decided on).
    """
    import base64
    import inspect
    import json
    import pickle

    probe = json.loads(probe_json)
    verdict: dict = {"ok": False, "result_repr": None, "error": None, "replayable": True}
    verdict["compared"] = None
    fn = namespace.get(name)
    if not callable(fn):
        verdict["error"] = f"{name} is not defined in this kernel"
        return verdict
    if not probe.get("args_b64"):
        verdict.update(replayable=False, error="the probe's arguments were not pickled")
        return verdict
    try:
        args, kwargs = pickle.loads(base64.b64decode(probe["args_b64"]))
    except Exception as exc:
        verdict.update(replayable=False, error=f"the arguments do not unpickle: {exc!r}")
        return verdict

    def judge(value: Any, error: BaseException | None) -> dict:
        if error is not None:
            verdict["error"] = short_repr(error)
            verdict["compared"] = "exception"
            verdict["ok"] = probe.get("raised_type") == type(error).__qualname__
            return verdict
        verdict["result_repr"] = short_repr(value)
        if probe.get("raised") is not None:
            verdict["error"] = f"expected {probe['raised']}, got a result"
            verdict["compared"] = "exception"
            return verdict
        if probe.get("result_b64"):
            try:
                expected = pickle.loads(base64.b64decode(probe["result_b64"]))
            except Exception:
                pass
            else:
                verdict["compared"] = "value"
                verdict["ok"] = results_equal(value, expected)
                return verdict
        verdict["compared"] = "repr"
        verdict["ok"] = verdict["result_repr"] == probe.get("result_repr")
        return verdict

    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        return judge(None, exc)
    if probe.get("is_async") and inspect.isawaitable(result):

        async def finish() -> dict:
            try:
                value = await result
            except Exception as exc:
                return judge(None, exc)
            return judge(value, None)

        return finish()
    return judge(result, None)
