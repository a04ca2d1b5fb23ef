"""Chat completion requests sent as ChatOpenAI built them, without openai's per-call transform.

Why: openai's ``Completions.create`` passes the whole request body through ``maybe_transform``
before sending it: a walk of every message against the request's TypedDict tree (unions of
~57 TypedDicts), made to rename aliased keys, format dates and files, dump pydantic models,
turn iterables into lists and drop omitted values. A body of JSON values in a params tree that
declares no alias and no format comes out of it equal to what went in, less its omitted
values, and that is every body ChatOpenAI sends for a node. The walk cost 0.3 ms of a 1.2 ms
loopback call with a node's two messages, 1.2 ms with ten, 3.6 ms with thirty (bench/README
13p): the largest part of a model call's client time.

:func:`plain_completions` gives a chat model a ``Completions`` resource whose ``create`` is
openai's own (its signature, validation, request options, auth, retries, streaming and
response types), called with a flag that lets the transform step return the body with its
omitted values dropped, when the rest is JSON values only and the installed openai's params
declare no alias or format (checked once). openai's module-level ``maybe_transform`` in the
chat completions module is wrapped once for that: a call without the flag, any other
caller's, runs openai's own transform, and so does a body with any other value. An openai
whose modules moved keeps its own transform everywhere. Only the sync client is given the
resource: the nodes call ``invoke``.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from typing import Any, get_args, get_type_hints

log = logging.getLogger(__name__)

#: Set while a PlainCompletions.create runs in this context: its transform may pass the body.
_PLAIN: contextvars.ContextVar[bool] = contextvars.ContextVar("dynagraph_plain", default=False)
_WRAP_LOCK = threading.Lock()


def declares_transforms(root: Any) -> bool:
    """Whether any TypedDict reachable from ``root`` annotates a key with an openai
    ``PropertyInfo`` that has an ``alias`` or a ``format``: the only annotations by which
    openai's transform changes a body of JSON values (its discriminators do not)."""
    from openai._utils import PropertyInfo
    from typing_extensions import is_typeddict

    seen: set[int] = set()
    stack = [root]
    while stack:
        tp = stack.pop()
        if id(tp) in seen:
            continue
        seen.add(id(tp))
        for meta in getattr(tp, "__metadata__", ()):
            if isinstance(meta, PropertyInfo) and (meta.alias or meta.format):
                return True
        if is_typeddict(tp):
            stack.extend(get_type_hints(tp, include_extras=True).values())
        else:
            stack.extend(arg for arg in get_args(tp) if not isinstance(arg, str | int | bool))
    return False


@functools.cache
def _chat_params() -> tuple[type, ...]:
    """The params types openai's chat ``create`` transforms its body against, when they leave
    a body of JSON values as it is (checked once a process, ~4 ms); () otherwise."""
    try:
        from openai.types.chat import completion_create_params as params

        roots = (params.CompletionCreateParamsNonStreaming, params.CompletionCreateParamsStreaming)
        if any(declares_transforms(root) for root in roots):
            return ()
        return roots
    except Exception as exc:  # an openai that moved its types: keep its own transform
        log.debug("openai's chat params not inspectable (%s); its transform is kept", exc)
        return ()


def is_plain_json(value: Any) -> bool:
    """Whether ``value`` is made of dicts with str keys, lists, str, int, float, bool and None
    only: what openai's transform passes through unchanged where no key is annotated."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str for key in item):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif item is not None and kind not in (str, int, float, bool):
            return False
    return True


def _wrap_transform(module: Any) -> bool:
    """Wrap ``module.maybe_transform`` (openai's chat completions module) so that, under the
    flag, a plain body of the chat params skips the walk; a function put there later (a
    test's or a user's patch) is wrapped in turn. False when it cannot be."""
    if getattr(getattr(module, "maybe_transform", None), "_dynagraph_plain", False):
        return True
    with _WRAP_LOCK:
        current = getattr(module, "maybe_transform", None)
        if getattr(current, "_dynagraph_plain", False):
            return True
        if current is None or not _chat_params():
            return False
        from openai._utils import is_given

        def maybe_transform(data: Any, expected_type: Any) -> Any:
            if _PLAIN.get() and type(data) is dict and expected_type in _chat_params():
                body = {key: value for key, value in data.items() if is_given(value)}
                if is_plain_json(body):
                    return body
            return current(data, expected_type)

        maybe_transform._dynagraph_plain = True  # type: ignore[attr-defined]
        module.maybe_transform = maybe_transform
        return True


@functools.cache
def _plain_completions_class() -> type | None:
    """The ``Completions`` subclass, or None when this openai lacks what it is built from."""
    try:
        from openai.resources.chat.completions import Completions
        from openai.resources.chat.completions import completions as module
    except Exception as exc:
        log.debug("openai's chat completions moved (%s); its own create is used", exc)
        return None
    if not _wrap_transform(module):
        return None

    class PlainCompletions(Completions):
        """openai's chat ``Completions``; its ``create`` lets a plain body skip the transform."""

        def create(self, *args: Any, **params: Any) -> Any:  # type: ignore[override]
            _wrap_transform(module)  # again if something replaced the wrapper since
            token = _PLAIN.set(True)
            try:
                return super().create(*args, **params)
            finally:
                _PLAIN.reset(token)

    return PlainCompletions


def plain_completions(root_client: Any) -> Any | None:
    """A chat ``Completions`` resource of ``root_client`` (an ``openai.OpenAI``) that skips the
    transform where it changes nothing; None when this openai cannot have one."""
    cls = _plain_completions_class()
    if cls is None or root_client is None:
        return None
    return cls(root_client)
