"""The local ledger that remote backends (Weaviate behind its outbox) keep: task counter and
decision log, persistent, atomic across threads."""

from __future__ import annotations

import threading

import pytest
from dynagraph.tools.library import LibraryError
from dynagraph.tools.library.ledger import LocalLedger


def test_counter_is_atomic_and_persistent(tmp_path):
    ledger = LocalLedger(tmp_path / "l.db")
    seen: list[int] = []
    lock = threading.Lock()

    def work():
        for _ in range(25):
            value = ledger.next_task_index()
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 101))
    ledger.close()
    again = LocalLedger(tmp_path / "l.db")
    assert again.task_index() == 100
    again.close()


def test_decision_log_filters_and_refuses_half_entries(tmp_path):
    ledger = LocalLedger(tmp_path / "l.db")
    entries = [
        {"name": "f", "action": "added"},
        {"name": "g", "action": "duplicate", "target": "f"},
        {"name": "h", "action": "rejected"},
    ]
    ledger.log_decisions(entries)
    assert ledger.decision_log() == entries
    assert ledger.decision_log(limit=1) == entries[2:]
    assert ledger.decision_log(name="f") == entries[:2]
    with pytest.raises(LibraryError):
        ledger.log_decisions([{"name": "x", "action": "added"}, {"name": "y"}])
    assert len(ledger.decision_log()) == 3  # nothing of the refused batch was written
    ledger.close()
