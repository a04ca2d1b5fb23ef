"""The README is the contract: every setting its configuration table names exists, every
setting is in the table, and every flag its command table shows is one the command takes.

Why: the README is what a new user reads and copies from; a renamed setting or a flag that
only one of three commands grew would otherwise leave it quietly wrong.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
from dynagraph.graphs.cli import build_parser
from dynagraph.graphs.settings import Settings
from pydantic import BaseModel

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
#: settings a user never writes: filled in by load_settings
NOT_USER_SETTINGS = {"source"}


def table_after(heading: str, header: str) -> list[list[str]]:
    """The rows (cells, outer pipes dropped) of the first table under ``heading`` whose header
    row starts with ``header``. An escaped pipe (``\\|``) stays inside its cell."""
    section = README.split(f"\n{heading}\n", 1)[1]
    table = section.split(f"\n{header}", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:  # the rest of the header row, then the --- row
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def documented_keys() -> set[str]:
    """Setting paths in the configuration table; ``.x`` after ``a.b.c`` means ``a.b.x``."""
    keys = set()
    for cells in table_after("## Configuration reference", "| key |"):
        names = re.findall(r"`([^`]+)`", cells[0])
        for name in names:
            keys.add(names[0].rsplit(".", 1)[0] + name if name.startswith(".") else name)
    return keys


def setting_paths(model: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Every setting path of ``model`` -> whether it is a section (a settings model itself)."""
    paths: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        kind = field.annotation
        section = isinstance(kind, type) and issubclass(kind, BaseModel)
        paths[path] = section
        if section:
            paths.update(setting_paths(kind, f"{path}."))
    return paths


def test_every_setting_in_the_configuration_table_exists() -> None:
    paths = setting_paths(Settings)
    unknown = sorted(documented_keys() - set(paths))
    assert not unknown, f"README names settings that do not exist: {unknown}"


def test_every_setting_is_in_the_configuration_table() -> None:
    """A setting is documented by its own row or by its section's (``models.planner``: every
    key of ``models.default``)."""
    keys = documented_keys()
    missing = [
        path
        for path, section in setting_paths(Settings).items()
        if not section
        and path.split(".")[0] not in NOT_USER_SETTINGS
        and not any(path == k or path.startswith(f"{k}.") for k in keys)
    ]
    assert not missing, f"settings missing from README's configuration table: {missing}"


def command_rows() -> list[tuple[str, str]]:
    """(command cell, whole row) of each command table row."""
    return [(cells[0], " ".join(cells)) for cells in table_after("## Command line", "| command |")]


def subcommand(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that ``words`` (after ``dynagraph``) lead to."""
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


@pytest.mark.parametrize(("command", "row"), command_rows(), ids=lambda v: v[:50])
def test_every_flag_in_the_command_table_is_taken(command: str, row: str) -> None:
    root = build_parser()
    words = re.findall(r"`dynagraph ([^`]*)`", command)[0].split()
    parser = subcommand(root, words)
    assert parser is not root, f"no such command: {command}"
    taken = set(parser._option_string_actions) | set(root._option_string_actions)
    flags = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", row))
    assert flags <= taken, f"{command}: flags it does not take: {sorted(flags - taken)}"


def readme_command_lines() -> list[str]:
    """Every ``dynagraph ...`` line of the README's shell blocks, its comment and the optional
    parts of a synopsis (``[--config F]``) dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s*\[[^]]*\]", "", line.split(" #", 1)[0]).strip()
            if line.startswith("dynagraph "):
                lines.append(line)
    return lines


@pytest.mark.parametrize("line", readme_command_lines())
def test_every_command_line_in_the_readme_parses(line: str) -> None:
    """What a user copies from the README is accepted by the command as it is now (parsed,
    not run: running them is the e2e tests' part)."""
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert callable(args.handler)


def test_the_tables_were_read() -> None:
    """The parsers above found what they look for (a test reading nothing would pass)."""
    assert {"agent.speculate", "checkpoint_durability", "models.default.timeout"} <= (
        documented_keys()
    )
    assert len(command_rows()) >= 15
    assert len(readme_command_lines()) >= 8
