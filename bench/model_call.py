#!/usr/bin/env python
"""A model call's client time, part by part: a node's model beside stock ChatOpenAI.

Why: with a model that answers at once, a step's two model calls are most of a step
(bench/README 13j), and nearly all of a call is the client's own Python work. This bench
times one chat request, the same prompt, through each layer against a loopback server in a
child process that answers at once with a fixed completion:

- ``httpx``: the request posted with the HTTP client openai is built on (the floor);
- ``openai create``: ``client.chat.completions.create`` (its transform walk included);
- ``stock ChatOpenAI``: ``ChatOpenAI.invoke`` as a user builds it;
- ``node model``: a node's model as dynagraph builds it (tools/models.py: the deadline
  transport, the one-line errors, tools/model_requests.py's plain completions).

Prompts of ``--messages`` messages each (a node sends 2: its system prompt and one human
message; a chat history grows by two a step). Each round times ``--calls`` calls of each
layer and prompt, interleaved; medians per round, then the median of the rounds' medians.

Usage: ``python bench/model_call.py [--rounds 5] [--calls 200] [--messages 2 10 30] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_out_argument, now_utc, print_table, save_figures_to  # noqa: E402

REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "```python\nprint(sum(range(10)))\n```",
                },
            }
        ],
        "usage": {"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912},
    }
).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        self.wfile.write(head % len(REPLY) + REPLY)  # one write: no delayed-ACK wait

    def log_message(self, *_args: Any) -> None:
        pass


def _serve(port_queue: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def prompt(messages: int) -> list[dict[str, str]]:
    """A system prompt of a node's size, then alternating user and assistant turns."""
    out = [{"role": "system", "content": "You are the coder. " + "Write one cell. " * 190}]
    for index in range(messages - 1):
        role = "user" if index % 2 == 0 else "assistant"
        out.append({"role": role, "content": f"turn {index}: " + "x = sum(range(1000)) " * 15})
    return out


def layers(
    base_url: str,
) -> tuple[dict[str, Callable[[list[dict[str, str]]], Any]], str, Callable[[], None]]:
    """The callables timed, each taking a prompt as OpenAI-style message dicts; the class of
    the node model's completions resource (PlainCompletions unless openai changed); a close
    of every client made."""
    import openai
    from dynagraph.tools.models import ModelFactory, ModelSettings, ModelsSettings
    from langchain_core.messages import convert_to_messages
    from langchain_openai import ChatOpenAI

    http = openai.DefaultHttpxClient()
    client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    stock = ChatOpenAI(model="bench-model", base_url=base_url, api_key="sk-bench", max_retries=0)
    entry = ModelSettings(model="bench-model", base_url=base_url, api_key_env="", max_retries=0)
    factory = ModelFactory(ModelsSettings(default=entry))
    node = factory.for_node("coder")
    converted: dict[int, Any] = {}

    def as_messages(messages: list[dict[str, str]]) -> Any:
        key = id(messages)
        if key not in converted:
            converted[key] = convert_to_messages(messages)
        return converted[key]

    url = base_url + "/chat/completions"
    calls = {
        "httpx": lambda m: http.post(url, json={"model": "bench-model", "messages": m}).json(),
        "openai create": lambda m: client.chat.completions.create(model="bench-model", messages=m),
        "stock ChatOpenAI": lambda m: stock.invoke(as_messages(m)),
        "node model": lambda m: node.invoke(as_messages(m)),
    }

    def close() -> None:
        http.close()
        client.close()
        stock.root_client.close()
        factory.close()

    return calls, type(node.client).__name__, close


def time_calls(call: Callable[[], Any], calls: int) -> float:
    """Median ms of ``calls`` calls, after a few untimed ones."""
    for _ in range(5):
        call()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--messages", type=int, nargs="+", default=[2, 10, 30])
    add_out_argument(parser, "model_call")
    args = parser.parse_args(argv)
    started, load_start = now_utc(), os.getloadavg()
    ports: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{ports.get(timeout=30)}/v1"
        timed, node_client, close = layers(base_url)
        prompts = {n: prompt(n) for n in args.messages}
        rounds: dict[str, dict[int, list[float]]] = {k: {n: [] for n in prompts} for k in timed}
        for index in range(args.rounds):
            for n, messages in prompts.items():
                for name, call in timed.items():
                    ms = time_calls(lambda c=call, m=messages: c(m), args.calls)
                    rounds[name][n].append(ms)
            print(f"round {index + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})")
        close()
    finally:
        server.kill()
        server.join()
    medians = {k: {n: statistics.median(v) for n, v in by_n.items()} for k, by_n in rounds.items()}
    headers = ["layer", *[f"{n} messages, ms" for n in prompts]]
    rows = [[name, *[f"{by_n[n]:.3f}" for n in prompts]] for name, by_n in medians.items()]
    print_table(
        f"One chat request, median of the rounds' medians (node model: {node_client})",
        headers,
        rows,
    )
    figures = {
        "started": started,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "calls_per_round": args.calls,
        "node_model_completions": node_client,
        "median_ms": {k: {str(n): round(ms, 4) for n, ms in v.items()} for k, v in medians.items()},
        "rounds_ms": {k: {str(n): v for n, v in by_n.items()} for k, by_n in rounds.items()},
    }
    path = save_figures_to(args.out, "model_call", figures)
    print(f"load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
