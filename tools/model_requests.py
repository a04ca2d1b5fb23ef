"""Chat completion requests sent as ChatOpenAI built them, without openai's per-call transform.

Why: openai's ``Completions.create`` passes the whole request body through ``maybe_transform``
before sending it: a walk of every message against the request's TypedDict tree (unions of
~57 TypedDicts), made to rename aliased keys, format dates and files, dump pydantic models,
turn iterables into lists and drop omitted values. A body of JSON values in a params tree that
declares no alias and no format comes out of it equal to what went in, and that is every body
ChatOpenAI sends for a node. The walk cost 1.2 ms of a 2.4 ms loopback call with a
10-message prompt (more as a task's history grows), the largest part of a model call's client
time, and a default step makes two calls (bench/README 13p).

:func:`plain_completions` gives a chat model a ``Completions`` resource whose ``create`` sends
such a body as it is, through the same client (``_post``, the same request options, headers,
retries, streaming and response types as openai's own ``create``). Anything else, a body with
a value that is not plain JSON, a ``response_format`` (openai validates it), an openai whose
params declare an alias or a format (checked once, on the installed version), or an openai
whose internals moved, takes openai's own ``create``. Only the sync client is changed: the
nodes call ``invoke``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, get_args, get_type_hints

log = logging.getLogger(__name__)

#: ``create`` keywords that are request options, not body keys (openai's own create signature).
_OPTION_KEYS = ("extra_headers", "extra_query", "extra_body", "timeout")


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
def transform_changes_nothing() -> bool:
    """Whether the installed openai's chat completion params leave a body of JSON values as it
    is (checked once a process, ~4 ms); False when the check itself cannot run."""
    try:
        from openai.types.chat import completion_create_params as params

        roots = (params.CompletionCreateParamsNonStreaming, params.CompletionCreateParamsStreaming)
        return not any(declares_transforms(root) for root in roots)
    except Exception as exc:  # an openai that moved its types: keep its own create
        log.debug("openai's chat params not inspectable (%s); its create is used", exc)
        return False


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


@functools.cache
def _plain_completions_class() -> type | None:
    """The ``Completions`` subclass, or None when this openai lacks what it is built from."""
    try:
        from openai import Stream
        from openai._base_client import make_request_options
        from openai._utils import is_given
        from openai.resources.chat.completions import Completions
        from openai.types.chat import ChatCompletion, ChatCompletionChunk
    except Exception as exc:
        log.debug("openai internals moved (%s); its own create is used", exc)
        return None

    class PlainCompletions(Completions):
        """openai's chat ``Completions`` whose ``create`` sends a plain body as it is."""

        def create(self, **params: Any) -> Any:  # type: ignore[override]
            body = {k: v for k, v in params.items() if k not in _OPTION_KEYS and is_given(v)}
            if (
                "model" not in body
                or "messages" not in body
                or "response_format" in body
                or not transform_changes_nothing()
                or not is_plain_json(body)
            ):
                return super().create(**params)
            options = {k: params[k] for k in _OPTION_KEYS if k in params}
            return self._post(
                "/chat/completions",
                body=body,
                options=make_request_options(**options),
                cast_to=ChatCompletion,
                stream=bool(body.get("stream")),
                stream_cls=Stream[ChatCompletionChunk],
            )

    return PlainCompletions


def plain_completions(root_client: Any) -> Any | None:
    """A chat ``Completions`` resource of ``root_client`` (an ``openai.OpenAI``) that skips the
    transform where it changes nothing; None when this openai cannot have one."""
    cls = _plain_completions_class()
    if cls is None or root_client is None:
        return None
    return cls(root_client)
