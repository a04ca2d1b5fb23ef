"""``dynagraph library export --package`` and ``dynagraph library mcp``: the library for people
and other agents, without running the agent."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dynagraph.graphs.settings import Settings


def add_package_export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--package",
        metavar="DIR",
        help="write an installable package (pyproject.toml, NAME/__init__.py, tests/, README) "
        "instead of a JSON Lines file",
    )
    parser.add_argument(
        "--name", default="dynagraph_functions", help="the package's import name (with --package)"
    )


def cmd_export_package(library: Any, args: argparse.Namespace) -> int:
    from dynagraph.tools.errors import InputError
    from dynagraph.tools.library.export_package import export_package

    if not args.package:
        raise InputError("library export needs a FILE (JSON Lines) or --package DIR")
    report = export_package(library, args.package, args.name)
    for function, why in report.left_out:  # the rest of the package works without them
        print(f"left out {function}: {why}", file=sys.stderr)
    for function, call, why in report.skipped:
        print(f"not a test: {function}: {call}: {why}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    print(f"install it with: pip install {args.package}", file=sys.stderr)
    return 0


def add_mcp_parser(lsub: Any) -> argparse.ArgumentParser:
    parser = lsub.add_parser(
        "mcp",
        help="serve the library over MCP (stdio): search_functions, call_function, sources",
        description="Serve the library to MCP clients over stdio: the tools search_functions "
        "and call_function (run in a sandboxed kernel under the executor's limits), and each "
        "active function's source as a resource.",
    )
    parser.set_defaults(library_command="mcp")
    return parser


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from dynagraph.graphs.mcp_server import serve_stdio

    serve_stdio(settings)
    return 0
