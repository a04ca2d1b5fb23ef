"""The arguments of ``dynagraph library ...`` (graphs/cli_library.py runs them)."""

from __future__ import annotations

import argparse
from typing import Any

from dynagraph.graphs.cli_library import cmd_library
from dynagraph.graphs.cli_overrides import CONFIG_HELP, positive_int
from dynagraph.graphs.cli_share import add_mcp_parser, add_package_export_args


def add_library_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``library`` and its subcommands to the top-level subparsers."""
    lib = sub.add_parser(
        "library",
        help="inspect and manage the function library",
        description="Inspect and manage the function library.",
    )
    lib.add_argument("--config", dest="sub_config", metavar="F", help=CONFIG_HELP)
    lsub = lib.add_subparsers(dest="library_command", required=True)
    p = lsub.add_parser("list", help="list functions")
    p.add_argument("--all", action="store_true", help="include archived and quarantined")
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("search", help="hybrid search")
    p.add_argument("query")
    p.add_argument("-k", type=positive_int, default=5, help="how many hits (at least 1)")
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("show", help="show a function's source and record")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("stats", help="counts")
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("export", help="write every record to a JSON Lines file")
    p.add_argument("file", nargs="?", help="the JSON Lines file (or --package DIR)")
    add_package_export_args(p)
    p = lsub.add_parser("import", help="upsert records from a JSON Lines file")
    p.add_argument("file")
    for name, text in (
        ("archive", "hide a function from retrieval"),
        ("restore", "make it active again (un-archive, lift a quarantine)"),
    ):
        p = lsub.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("--reason", default="")
    p = lsub.add_parser(
        "quarantine", help="remove a function from retrieval at once (poisoned or harmful)"
    )
    p.add_argument("name")
    p.add_argument("--reason", required=True, help="why (shown by `library show`)")
    p = lsub.add_parser(
        "add", help="admit functions written by a person through the librarian's pipeline"
    )
    p.add_argument("file", help="a Python file; its top-level functions are the candidates")
    p.add_argument(
        "--probe", help="a Python file that calls them: the calls are recorded and verified"
    )
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("prune", help="archive functions not used in the last N tasks")
    p.add_argument(
        "--unused-tasks",
        type=positive_int,
        metavar="N",
        help="at least 1 (default librarian.prune_unused_tasks)",
    )
    p.add_argument("--dry-run", action="store_true", help="list them, archive nothing")
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("log", help="the librarian's decisions, oldest first")
    p.add_argument("-n", type=positive_int, default=50, help="how many (the last n)")
    p.add_argument("--name", help="only decisions about this function")
    p.add_argument("--json", action="store_true")
    p = lsub.add_parser("check", help="find and quarantine records whose code was changed")
    p.add_argument("--dry-run", action="store_true", help="list them, quarantine nothing")
    p.add_argument("--json", action="store_true")
    lsub.add_parser("sync", help="send the Weaviate outbox's queued changes (weaviate backend)")
    add_mcp_parser(lsub)
    for p in lsub.choices.values():
        p.add_argument("--config", dest="leaf_config", metavar="F", help=CONFIG_HELP)
    lib.set_defaults(handler=cmd_library)
    return lib
