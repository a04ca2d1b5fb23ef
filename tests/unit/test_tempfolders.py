"""tools/tempfolders.py: folders named after their owner, swept only when the owner has ended.
Real processes: a child makes a folder and ends without removing it, as a killed agent would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dynagraph.tools import tempfolders
from dynagraph.tools.tempfolders import owner_tag, private_folder, remove_dead

pytestmark = pytest.mark.skipif(
    owner_tag() is None, reason="no /proc here: folders carry no owner and are never swept"
)

MAKE = (
    "import sys\nfrom pathlib import Path\nfrom dynagraph.tools.tempfolders import private_folder\n"
    "print(private_folder(sys.argv[1], parent=Path(sys.argv[2])))\n"
)


def made_by_an_ended_process(root: Path, prefix: str) -> Path:
    """A folder whose owner ran and ended without removing it."""
    out = subprocess.run(
        [sys.executable, "-c", MAKE, prefix, str(root)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    folder = Path(out.stdout.strip())
    (folder / "kernel.json").write_text("{}")
    return folder


def test_only_folders_of_ended_owners_of_this_namespace_are_removed(tmp_path):
    prefix = "dynagraph-kernel-"
    dead = made_by_an_ended_process(tmp_path, prefix)
    mine = private_folder(prefix, parent=tmp_path)  # this process runs: stays
    pid, start, namespace = owner_tag().split(".")
    foreign = tmp_path / f"{prefix}{pid}0.{start}.1_2-abcdefgh"  # another pid or time namespace
    reused = tmp_path / f"{prefix}{pid}.{int(start) + 1}.{namespace}-abcdefgh"  # pid reused
    legacy = tmp_path / f"{prefix}abcdefgh"  # before owners were named: never known dead
    other = tmp_path / f"something-{dead.name}"  # another prefix
    planted = tmp_path / f"{prefix}\u00b2.{start}.{namespace}-abcdefgh"  # "²".isdigit()
    for folder in (foreign, reused, legacy, other, planted):
        folder.mkdir()
    assert remove_dead(tmp_path, prefix) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (mine, foreign, legacy, other, planted)
    )


def test_a_socket_folder_goes_to_tmp_when_tmpdir_is_too_long(tmp_path, monkeypatch):
    """An AF_UNIX path holds 107 bytes: a folder for a socket under a long TMPDIR is made in
    /tmp instead (the proxy's bind failed there: "AF_UNIX path too long")."""
    long = tmp_path / ("d" * (110 - len(str(tmp_path))))
    long.mkdir()
    monkeypatch.setattr(tempfolders.tempfile, "tempdir", str(long))
    plain = private_folder("dynagraph-test-")
    sock = private_folder("dynagraph-test-", socket_name="/proxy.sock")
    try:
        assert plain.parent == long
        assert sock.parent == Path("/tmp") and len(str(sock / "proxy.sock")) <= 107
        assert oct(sock.stat().st_mode & 0o777) == "0o700"
    finally:
        os.rmdir(plain)
        os.rmdir(sock)


def test_a_killed_pools_slots_go_but_not_one_a_task_folder_links_to(tmp_path):
    """A pool's slot is named after its process; under bubblewrap a taken slot *is* its task's
    folder (runs/<thread> links to it) and must outlive the process that made it."""
    from dynagraph.tools.kernel.pool import POOL_SLOTS, remove_dead_slots

    runs = tmp_path / "runs"
    slots = runs / POOL_SLOTS
    spare = made_by_an_ended_process(slots, "")
    taken = made_by_an_ended_process(slots, "")
    (runs / "task-1").symlink_to(taken, target_is_directory=True)
    (taken / "answer.txt").write_text("42")
    mine = private_folder("", parent=slots)
    assert remove_dead_slots(slots, runs) == 1
    assert sorted(p.name for p in slots.iterdir()) == sorted([taken.name, mine.name])
    assert (runs / "task-1" / "answer.txt").read_text() == "42"
    assert not spare.exists()
