"""``library import``: reading a JSON Lines export back, every line checked before any write.

The file is what :func:`export_jsonl` (tools/library/base.py) writes, one record a line, but
it may have been edited by hand or by an attacker: a record stored with ``"tags": 5`` made
every later read of the library fail, and a tampered second line once left the first imported.
So each field's type is checked, then each record's code against its hash and its definition
(tools/library/integrity.py), all before the first write; the writes then go in one
transaction where the library has one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dynagraph.tools.errors import InputError
from dynagraph.tools.library.base import STATUSES, FunctionLibrary, FunctionRecord

__all__ = ["import_jsonl", "iter_jsonl", "record_dict_problem"]

_TEXT_FIELDS = frozenset({
    "name", "code", "ast_hash", "signature", "docstring", "origin_task", "origin_thread",
    "origin_model", "status", "status_reason", "created_at", "id",
})  # fmt: skip
_COUNT_FIELDS = frozenset({"version", "uses", "retrieved", "successes", "last_used_task"})
_NAME_LIST_FIELDS = frozenset({"imports", "globals", "depends_on", "tags", "aliases"})


def record_dict_problem(data: Any) -> str | None:
    """Why ``data`` (a parsed JSON line) is not a function record as an export writes one
    (None: it is): its type, the fields a record needs, then each field's type."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    missing = [k for k in ("name", "code", "ast_hash") if not data.get(k)]
    if missing:
        return f"no {', '.join(missing)}"
    for key, value in data.items():
        problem = _field_problem(key, value)
        if problem is not None:
            return problem
    if not str(data["name"]).isidentifier():
        return f"name {data['name']!r} is not a Python identifier"
    if data.get("version", 1) < 1:
        return "version is not 1 or more"
    if data.get("status", "active") not in STATUSES:
        return f"status is not one of {', '.join(STATUSES)}"
    return None


def _field_problem(key: str, value: Any) -> str | None:
    if key in _TEXT_FIELDS and not isinstance(value, str):
        return f"{key} is not a string"
    if key in _COUNT_FIELDS and (type(value) is not int or value < 0):  # bool is no count
        return f"{key} is not a count (a whole number, 0 or more)"
    if key in _NAME_LIST_FIELDS and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return f"{key} is not a list of strings"
    if key == "probes" and not (
        isinstance(value, list) and all(isinstance(v, dict) for v in value)
    ):
        return "probes is not a list of objects"
    if key == "supersedes" and value is not None and not isinstance(value, str):
        return "supersedes is not a string or null"
    return None


#: The longest line read as one record (a record with its code and probes is KBs). A file with
#: no line ends (``/dev/zero``, a binary) was read whole: 2.3 GB in 1.5 s, then the OOM killer.
MAX_RECORD_CHARS = 16 * 1024 * 1024


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, FunctionRecord]]:
    """Each record of a JSON Lines file with its line number; a line that is not one is a
    :class:`InputError` naming the file, the line and why."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(iter(lambda: fh.readline(MAX_RECORD_CHARS + 1), ""), 1):
            if len(line) > MAX_RECORD_CHARS:
                raise InputError(
                    f"{path}:{lineno}: longer than {MAX_RECORD_CHARS:,} characters: not a "
                    "function record (a file of JSON Lines, one record a line, is expected)"
                )
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}:{lineno}: not JSON ({exc})") from exc
            problem = record_dict_problem(data)
            if problem is not None:
                raise InputError(f"{path}:{lineno}: not a function record: {problem}")
            yield lineno, FunctionRecord.from_dict(data)


def import_jsonl(
    library: FunctionLibrary, path: str | Path, deny_capabilities: Iterable[str] = ()
) -> tuple[int, list[str]]:
    """Upsert every record of a JSON Lines file, or none (see the module docstring). An active
    record with a denied capability (``librarian.deny_capabilities``) is stored quarantined, as
    the librarian would have stored it: an edited export must not bring back what the policy
    keeps out. Returns the count and the names quarantined."""
    from dynagraph.tools.library.integrity import record_problem
    from dynagraph.tools.library.verified import VerifiedReads

    records = list(iter_jsonl(path))
    if isinstance(library, VerifiedReads):  # it refuses what fails the check: none is written
        for lineno, record in records:
            problem = record_problem(record)
            if problem is not None:
                raise InputError(f"{path}:{lineno}: function {record.name} refused: {problem}")
    deny = set(deny_capabilities)
    quarantined = []
    for _, record in records:
        denied = [c for c in record.capabilities if c in deny]
        if denied and record.status == "active":
            record.status = "quarantined"
            record.status_reason = (
                f"imported with denied capabilities: {', '.join(denied)} "
                "(librarian.deny_capabilities)"
            )
            quarantined.append(record.name)
    atomic = getattr(library, "atomic", None) or contextlib.nullcontext
    with atomic():
        for _, record in records:
            library.add(record)
    return len(records), quarantined
