"""``dynagraph library ...``: inspect and manage the function library."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from dynagraph.graphs.cli_share import cmd_export_package, cmd_mcp
from dynagraph.graphs.settings import Settings
from dynagraph.tools.codeparse import parse_python
from dynagraph.tools.errors import InputError
from dynagraph.tools.library.base import newest
from dynagraph.tools.library.verified import refused_records

EXIT_OK, EXIT_REJECTED = 0, 1


#: Commands that only read the library: on a SQLite library not made yet, they read an empty
#: one in a temporary folder and leave no file behind (a later task makes the real one).
READ_ONLY = frozenset({"list", "search", "show", "stats", "export", "log", "check"})
#: Commands that only change records already stored: with no library there is none to change.
ON_STORED = frozenset({"archive", "restore", "quarantine"})


def _stand_in_folder(
    settings: Settings, args: argparse.Namespace
) -> contextlib.AbstractContextManager:
    """A temporary folder for an empty stand-in library when the command only reads a SQLite
    library not made yet (READ_ONLY, ``prune --dry-run``) or only changes stored records
    (ON_STORED: it then says the name is unknown); an empty file, as ``touch`` leaves, is not
    made yet either (reading it would write the schema). Else a context of None (the
    library). So no such command creates library.db."""
    action = args.library_command
    reads = action in READ_ONLY or action in ON_STORED
    reads = reads or (action == "prune" and args.dry_run)
    path = settings.path(settings.library.path)
    made = path.exists() and not (path.is_file() and path.stat().st_size == 0)
    if settings.library.backend != "sqlite" or not reads or made:
        return contextlib.nullcontext()
    return tempfile.TemporaryDirectory(prefix="dynagraph-no-library-")


def cmd_sync(settings: Settings) -> int:
    """Flush the Weaviate outbox: changes queued while the server was down, in order, once."""
    from dynagraph.graphs.services import Services

    library = Services(settings).open_library_for_sync()
    try:
        report = library.flush()
        print(report.summary(), file=sys.stderr)
        return EXIT_OK if report.complete else 1
    finally:
        library.close()


def cmd_library(args: argparse.Namespace, settings: Settings) -> int:
    if args.library_command == "sync":
        return cmd_sync(settings)
    if args.library_command == "mcp":
        return cmd_mcp(args, settings)
    from dynagraph.graphs.services import Services

    with _stand_in_folder(settings, args) as folder:
        opened = settings
        if folder is not None:
            empty = settings.library.model_copy(update={"path": str(Path(folder, "library.db"))})
            opened = settings.model_copy(update={"library": empty})
        library = Services(opened).library
        try:
            status = _library_command(library, args, settings)
        finally:
            library.close()
    if folder is not None and status == EXIT_OK:  # after the answer: an error stays one line
        path = settings.path(settings.library.path)
        print(f"no library at {path} yet: a task or `dynagraph library add` makes it",
              file=sys.stderr)  # fmt: skip
    return status


def _library_command(library: Any, args: argparse.Namespace, settings: Settings) -> int:
    from dynagraph.tools.library import export_jsonl, import_jsonl

    action = args.library_command
    if action == "list":
        records = library.list(status=None if args.all else "active")
        refused = refused_records(library) if args.all else []  # tampered: shown, marked
        if args.json:
            rows = [_record_row(r) for r in records]
            rows += [{**_record_row(r), "problem": why} for r, why in refused]
            print(json.dumps(rows, ensure_ascii=False))
            return EXIT_OK
        for r in records:
            print(_list_line(r, r.status, r.summary_line()))
        for r, why in refused:
            print(_list_line(r, "tampered", f"{why} (stored as {r.status})"))
        return EXIT_OK
    if action == "search":
        hits = library.search(args.query, k=args.k, alpha=settings.library.alpha)
        rows = [{**_record_row(h.record), "score": round(h.score, 4)} for h in hits]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            for row, hit in zip(rows, hits, strict=True):
                print(f"{row['score']:.3f}  {hit.record.summary_line()}")
        return EXIT_OK
    if action == "show":
        record, problem, versions = _shown_record(library, args.name)
        if args.json:
            data = {**record.to_dict(), **({"problem": problem} if problem else {})}
            print(json.dumps(data, ensure_ascii=False))
            return EXIT_OK
        decisions = library.decision_log(limit=5, name=record.name)
        _print_record(record, versions, decisions, problem)
        return EXIT_OK
    if action == "stats":
        stats = library.stats()
        if "path" in stats and settings.library.backend == "sqlite":  # not the stand-in's
            stats["path"] = str(settings.path(settings.library.path))
        if args.json:
            print(json.dumps(stats, ensure_ascii=False, default=str))
        else:
            for key, value in stats.items():
                print(f"{key}: {value}")
        return EXIT_OK
    if action == "export":
        if args.package or not args.file:  # --package DIR: an installable package
            return cmd_export_package(library, args)
        count = export_jsonl(library, args.file)
        print(f"exported {count} functions to {args.file}", file=sys.stderr)
        if refused := refused_records(library):  # every read refuses them: never exported
            print(f"left out {len(refused)} tampered records (library list --all)",
                  file=sys.stderr)  # fmt: skip
        return EXIT_OK
    if action == "import":
        _read(Path(args.file))  # one line naming the file and line if it is not text
        deny = settings.librarian.deny_capabilities
        count, quarantined = import_jsonl(library, args.file, deny_capabilities=deny)
        print(f"imported {count} functions from {args.file}", file=sys.stderr)
        if quarantined:
            print(f"quarantined {len(quarantined)} with denied capabilities "
                  f"(librarian.deny_capabilities): {', '.join(quarantined)}",
                  file=sys.stderr)  # fmt: skip
        return EXIT_OK
    if action == "check":
        return _check(library, args)
    if action == "restore":
        return _restore(library, args.name, args.reason or "")
    if action in ("archive", "quarantine"):
        record = library.get_by_name(args.name, include_inactive=True) or library.get(args.name)
        refused = refused_records(library, args.name) if record is None else []
        record = record or newest(r for r, _ in refused)  # tampered: kept out all the same
        if record is None:
            raise InputError(f"no function named {args.name!r} in the library")
        status = "archived" if action == "archive" else "quarantined"
        library.set_status(record.id, status, args.reason or "")
        _log_manual(library, record, status, args.reason or "")
        print(f"{record.name} v{record.version}: {status}", file=sys.stderr)
        return EXIT_OK
    if action == "add":
        decisions = add_file(library, settings, args.file, args.probe)
        _print_decisions(decisions, args.json)
        rejected = [d.name for d in decisions if d.action in ("rejected", "quarantined")]
        if rejected:
            print(f"rejected or quarantined: {', '.join(rejected)}", file=sys.stderr)
            return EXIT_REJECTED
        return EXIT_OK
    if action == "prune":
        return _prune(library, settings, args)
    if action == "log":
        entries = library.decision_log(limit=args.n, name=args.name)
        if args.json:
            print(json.dumps(entries, ensure_ascii=False, default=str))
        for e in [] if args.json else entries:
            where = f"task {e['task_index']}" if e.get("task_index") else e.get("thread", "")
            print(
                f"{e.get('at', '')}  {where:14} {e['name']}: {e['action']} "
                f"[{e.get('stage', '')}] {e.get('reason', '')}"
            )
        return EXIT_OK
    raise InputError(f"unknown library command {action!r}")


def add_file(library, settings: Settings, file: str, probe_file: str | None = None) -> list:
    """Run the functions of a person's file through the librarian's cascade: exact hash,
    verification in a scratch kernel (its probes are the calls ``probe_file`` makes, recorded
    like a task's), same name, near neighbours. No model (nothing is generalized, nothing
    ambiguous is asked) and no use counted, so adding the same file twice changes nothing."""
    from dynagraph.graphs.services import Services
    from dynagraph.tools.actions import action_names
    from dynagraph.tools.codeparse import extract_functions
    from dynagraph.tools.librarian.candidate import Candidate, Origin
    from dynagraph.tools.librarian.cascade import admit
    from dynagraph.tools.librarian.context import AdmissionContext
    from dynagraph.tools.librarian.journal import log_entries
    from dynagraph.tools.librarian.scratch import ScratchVerifier

    path = Path(file)
    source = _read(path)
    _check_syntax(path, source)
    functions = extract_functions(source)
    if not functions:
        raise InputError(f"{path} defines no top-level function")
    probe_source = _read(Path(probe_file)) if probe_file else None
    # the scratch kernels, the agent proxy (its $TMPDIR/dynagraph-proxy-* socket folder) and
    # the admission lock; closed below, whatever happens. Not given `library`: closing the
    # services closes their own library, and this one is the caller's.
    services = Services(settings)
    lib = settings.librarian
    verifier = ScratchVerifier(
        services.scratch_kernel,
        probe_timeout=lib.probe_timeout,
        cwd=path.resolve().parent,
        release=services.release_scratch,
    )
    origin = Origin(thread=f"library add {path.name}", model="human", tags=["user"])
    try:
        candidates = [Candidate.from_function(fn, []) for fn in functions]
        ctx = AdmissionContext(
            library,
            origin,
            lib.model_copy(update={"generalize": False, "ask_model": False}),
            verifier=verifier,
            count_uses=False,
            task_index=library.task_index(),
            action_names=action_names(services.action_lines()),
        )
        if probe_source is not None:
            # the library functions the file calls first, defined as a task's kernel has them
            own = {c.name for c in candidates}
            needed = ctx.dependency_sources([n for c in candidates for n in c.calls], own)
            failed = verifier.define(needed)
            if failed is not None:
                raise InputError(
                    f"the library functions it calls failed in a fresh kernel: {failed}"
                )
            session = verifier.session()
            for what, code in [(str(path), source), (str(probe_file), probe_source)]:
                result = session.execute(code, timeout=settings.executor.timeout)
                if not result.ok():
                    raise InputError(
                        f"{what} failed in a fresh kernel: {result.error_name or result.status}: "
                        f"{result.error_value or ''}".rstrip(": ")
                    )
            recorded = verifier.recorded_probes()
            for cand in candidates:
                cand.probes = recorded.get(cand.name, [])

        def journal(found: list) -> None:  # committed with the candidate's writes
            library.log_decisions(log_entries(found, origin))

        with services.admission_lock():  # a task's librarian may be admitting at the same time
            decisions = admit(candidates, ctx, journal=journal)
    finally:
        try:
            verifier.close()
        finally:
            services.close()
    return decisions


def _read(path: Path) -> str:
    """The file's text (a UTF-8 byte-order mark dropped, as Python drops it when it runs the
    file); one line naming the file (and the line) when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); is it a binary file?"
        ) from exc


def _check_syntax(path: Path, source: str) -> None:

    try:
        parse_python(source, filename=str(path))
    except SyntaxError as exc:
        raise InputError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from exc
    except ValueError as exc:  # e.g. a NUL byte
        raise InputError(f"{path}: not Python source ({exc})") from exc


def _list_line(record, status: str, text: str) -> str:
    """One row of ``library list``."""
    return f"{record.name:32} v{record.version}  uses={record.uses:<4} {status:11} {text}"


def _shown_record(library, name: str) -> tuple[Any, str, list[tuple[Any, str]]]:
    """``(record, problem, versions)``: the version a name resolves to (the newest active one),
    else its newest version, else the record with that id; only when none of those is intact,
    its newest tampered version, with why (``problem``). ``versions``: every version of the
    name, ``(record, problem)``, oldest first, the tampered ones included."""
    intact = library.versions(name)
    refused = refused_records(library, name)
    versions = sorted([*((r, "") for r in intact), *refused], key=lambda v: v[0].version)
    record = library.get_by_name(name) or (intact[-1] if intact else library.get(name))
    if record is not None:
        return record, "", versions
    record = newest(r for r, _ in refused)
    if record is None:
        raise InputError(f"no function named {name!r} in the library")
    return record, next(why for r, why in refused if r is record), versions


def _print_record(
    record, versions: list, decisions: list[dict[str, Any]], problem: str = ""
) -> None:
    label = f"tampered, stored as {record.status}" if problem else record.status
    print(f"# {record.name} v{record.version} [{label}] id {record.id}")
    if problem:
        print(f"# refused by every read: {problem}; never retrieved, run or exported")
    if record.status_reason:
        print(f"# {record.status} because: {record.status_reason}")
    print(f"# uses {record.uses}, successes {record.successes}, retrieved {record.retrieved}")
    if record.origin_task.strip():
        print(f"# from task: {record.origin_task[:200]}")
    used = f", last used in task {record.last_used_task}" if record.uses else ""
    print(
        f"# origin: thread {record.origin_thread or '-'}, model {record.origin_model or '-'}, "
        f"created {record.created_at}{used}"
    )
    extras = {
        "capabilities": ", ".join(record.capabilities) or "none",
        "tags": ", ".join(record.tags),
        "aliases": ", ".join(record.aliases),
        "supersedes": record.supersedes or "",
        "depends on": ", ".join(record.depends_on),
    }
    for key, value in extras.items():
        if value:
            print(f"# {key}: {value}")
    print(f"# probes: {len(record.probes)} recorded calls")
    if len(versions) > 1:
        shown = ", ".join(
            f"v{v.version} ({'tampered' if why else v.status})" for v, why in versions
        )
        print(f"# versions: {shown}")
    for entry in decisions:
        print(f"# log: {entry['name']}: {entry['action']} [{entry.get('stage', '')}]"
              f" {entry.get('reason', '')[:160]}")  # fmt: skip
    if not problem:
        print(record.kernel_source(), end="")
        return
    print("# the stored source, commented out: it is not the code that was verified")
    lines = record.kernel_source().rstrip("\n").splitlines()
    print("".join(f"# | {line}\n" for line in lines), end="")


def _check(library, args: argparse.Namespace) -> int:
    """``library check``: records failing their integrity check, quarantined; exit 1 if any."""
    from dynagraph.tools.librarian.candidate import Origin
    from dynagraph.tools.librarian.context import Decision
    from dynagraph.tools.librarian.journal import log_entries
    from dynagraph.tools.library.integrity import check_library

    found = check_library(library, quarantine=not args.dry_run)
    if args.json:
        rows = [{**_record_row(r), "problem": why} for r, why in found]
        print(json.dumps(rows, ensure_ascii=False))
    for record, why in [] if args.json else found:
        print(f"{record.name} v{record.version} {record.id}: {why}")
    if found and not args.dry_run:
        decisions = [Decision(r.name, "quarantined", r.id, why, "check") for r, why in found]
        library.log_decisions(log_entries(decisions, Origin(thread="library check")))
    verb = "would quarantine" if args.dry_run else "quarantined"
    print(f"{len(found)} records fail the integrity check ({verb})", file=sys.stderr)
    return EXIT_REJECTED if found else EXIT_OK


def _restore(library, name: str, reason: str) -> int:
    """``library restore NAME``: active again, and no quarantined version left blocking it.
    Refused when NAME is only tampered records: their code is not what was verified, and
    every read would keep refusing them (a good copy comes back with ``library add``)."""
    from dynagraph.tools.librarian.candidate import Origin
    from dynagraph.tools.librarian.journal import log_entries
    from dynagraph.tools.librarian.quarantine import restore

    intact = library.get_by_name(name, include_inactive=True) or library.get(name)
    tampered = newest(r for r, _ in refused_records(library, name)) if intact is None else None
    if tampered is not None:
        raise InputError(
            f"{tampered.name} v{tampered.version} cannot be restored: its code no longer "
            "matches what was verified (tampered); add a good copy again with "
            "`dynagraph library add FILE` or `library import` an earlier export"
        )
    decisions = restore(library, name, reason)
    if decisions is None:
        raise InputError(f"no function named {name!r} in the library")
    library.log_decisions(log_entries(decisions, Origin(thread="cli")))
    for d in decisions:
        restored = library.get(d.record_id) if d.record_id else None
        version = f" v{restored.version}" if restored is not None else ""
        print(f"{d.name}{version}: {d.action}", file=sys.stderr)
    return EXIT_OK


def _log_manual(library, record, status: str, reason: str) -> None:
    from dynagraph.tools.librarian.candidate import Origin
    from dynagraph.tools.librarian.context import Decision
    from dynagraph.tools.librarian.journal import log_entries

    decision = Decision(record.name, status, record.id, reason or "by hand", "cli")
    library.log_decisions(log_entries([decision], Origin(thread="cli")))


def _print_decisions(decisions: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([d.to_dict() for d in decisions], ensure_ascii=False))
        return
    for d in decisions:
        target = f" -> {d.target}" if d.target else ""
        reason = " ".join(d.reason.split())  # one line per function
        print(f"{d.name}: {d.action}{target} [{d.stage}] {reason}")


def _prune(library, settings: Settings, args: argparse.Namespace) -> int:
    from dynagraph.tools.librarian.journal import prune

    unused = args.unused_tasks or settings.librarian.prune_unused_tasks  # argparse: >= 1
    now, stale = prune(library, unused, dry_run=args.dry_run)
    verb = "would archive" if args.dry_run else "archived"
    if args.json:
        print(json.dumps({"tasks": now, "unused_tasks": unused, verb.replace(" ", "_"): [
            _record_row(r) for r in stale]}, ensure_ascii=False))  # fmt: skip
    else:
        for r in stale:
            print(f"{r.name} v{r.version}: last used in task {r.last_used_task}")
    print(
        f"{verb} {len(stale)} functions not used in the last {unused} tasks "
        f"(the library has counted {now} tasks)",
        file=sys.stderr,
    )
    return EXIT_OK


def _record_row(record) -> dict[str, Any]:
    return {
        "name": record.name,
        "id": record.id,
        "version": record.version,
        "signature": record.signature,
        "docstring": record.docstring,
        "status": record.status,
        "uses": record.uses,
        "capabilities": record.capabilities,
        "tags": record.tags,
    }
