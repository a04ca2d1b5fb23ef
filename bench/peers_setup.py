"""What bench/peers.py prepares before it runs: the peers' virtual environments, dynagraph's
config for a run, and the 10k-function library.

Why a module of its own: bench/step_breakdown.py writes the same config and fills the same
library as the peer table, so its figures and the table's describe one setup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dynagraph" / "bench-peers"
)
# -- peers' virtual environments ------------------------------------------------------------------
#: venv folder -> pip requirement sets to try in order (the first that installs wins).
PEERS: dict[str, dict[str, Any]] = {
    "smolagents": {
        "venv": "smolagents-1.26.0",
        "attempts": [["smolagents[openai]==1.26.0"], ["smolagents[openai]>=1,<2"]],
        "check": "import smolagents; print(smolagents.__version__)",
        "driver": "smolagents_driver.py",
    },
    "langgraph-codeact": {
        "venv": "langgraph-codeact-0.1.3",
        "attempts": [
            ["langgraph-codeact==0.1.3", "langchain-openai==0.3.35"],
            ["langgraph-codeact==0.1.3", "langchain-openai"],
        ],
        "check": "from importlib.metadata import version as v; import langgraph_codeact, "
        "langchain_openai; print(v('langgraph-codeact'))",
        "driver": "codeact_driver.py",
    },
}


def venv_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def ensure_venv(name: str, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The peer's venv python and what is installed in it; creates the venv when missing."""
    spec = PEERS[name]
    folder = cache / spec["venv"]
    marker = folder / "bench-peers.json"
    python = venv_python(folder)
    if marker.exists() and python.exists():
        check = subprocess.run([python, "-c", spec["check"]], capture_output=True, text=True)
        if check.returncode == 0:
            return python, json.loads(marker.read_text())
        print(f"peers: {folder} is broken ({check.stderr.strip()[-200:]}); recreating", flush=True)
    if folder.exists():
        shutil.rmtree(folder)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"peers: creating {folder} (pip, ~1 min)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    last_error = ""
    for requirements in spec["attempts"]:
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            break
        last_error = done.stderr.strip()[-800:]
        print(f"peers: pip install {' '.join(requirements)} failed; trying the next", flush=True)
    else:
        raise SystemExit(f"peers: cannot install {name} into {folder}:\n{last_error}")
    version = subprocess.run(
        [python, "-c", spec["check"]], capture_output=True, text=True, check=True
    ).stdout.strip()
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    info = {"version": version, "requirements": requirements, "freeze": freeze}
    marker.write_text(json.dumps(info, indent=1), encoding="utf-8")
    return python, info


# -- dynagraph: configs and the 10k library -----------------------------------------------------
def write_dynagraph_config(
    home: Path, base_url: str, overrides: dict[str, Any] | None = None
) -> Path:
    import yaml

    config = {
        "models": {
            "default": {
                "model": "stub-model",
                "base_url": base_url,
                "api_key_env": "OPENAI_API_KEY",
                "temperature": 0.0,
                "timeout": 60.0,
                "max_retries": 0,
            }
        },
        "library": {"backend": "sqlite", "path": str(home / "library.db")},
        "executor": {"workdir": str(home / "runs")},
        "agent": {"max_steps": 12},
        "checkpoint_path": str(home / "checkpoints.db"),
    }
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:  # a top-level setting (checkpoint_durability)
            config[section] = values
    path = home / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


#: Template functions for the 10k library: (name, signature, docstring, body, origin task).
TEMPLATES = [
    (
        "mean_of_column",
        "(rows: list[dict], column: str) -> float",
        "Mean of one column over a list of row dicts.",
        "return sum(r[column] for r in rows) / len(rows)",
        "What is the average score in the table of students?",
    ),
    (
        "celsius_to_fahrenheit",
        "(c: float) -> float",
        "Convert a temperature from Celsius to Fahrenheit.",
        "return c * 9 / 5 + 32",
        "The thermometer shows 21 C; what is it in Fahrenheit?",
    ),
    (
        "compound_interest",
        "(principal: float, rate: float, years: int) -> float",
        "Balance after yearly compounding of a principal at a rate.",
        "return principal * (1 + rate) ** years",
        "How much is 1000 dollars worth after 5 years at 3%?",
    ),
    (
        "count_words",
        "(text: str) -> dict",
        "Count how often each word occurs in a text.",
        "out = {}\n    for w in text.lower().split():\n        out[w] = out.get(w, 0) + 1\n    return out",
        "Which word appears most often in this paragraph?",
    ),
    (
        "median_value",
        "(values: list[float]) -> float",
        "Median of a list of numbers.",
        "s = sorted(values)\n    m = len(s) // 2\n    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2",
        "What is the median number of tickets sold per day?",
    ),
    (
        "range_of_values",
        "(values: list[float]) -> float",
        "Difference between the largest and smallest value.",
        "return max(values) - min(values)",
        "What is the range of the rainfall figures?",
    ),
    (
        "unit_price",
        "(total: float, quantity: float) -> float",
        "Price per unit from a total and a quantity.",
        "return total / quantity",
        "A pack of 12 pencils costs 3.60; what does one pencil cost?",
    ),
    (
        "percent_change",
        "(old: float, new: float) -> float",
        "Percentage change from an old to a new value.",
        "return (new - old) / old * 100",
        "By what percent did sales grow from 80 to 92?",
    ),
    (
        "rate_of_change",
        "(x1: float, y1: float, x2: float, y2: float) -> float",
        "Rate of change of y per unit of x between two points.",
        "return (y2 - y1) / (x2 - x1)",
        "How fast did the price change per year between 2010 and 2015?",
    ),
    (
        "probability_of",
        "(favourable: int, total: int) -> float",
        "Probability as favourable over total outcomes.",
        "return favourable / total",
        "What is the probability of drawing a red marble from the bag?",
    ),
    (
        "total_cost",
        "(prices: dict, quantities: dict) -> float",
        "Total cost of items given prices and quantities.",
        "return sum(prices[k] * quantities.get(k, 0) for k in prices)",
        "How much does Ann pay for 3 apples and 2 pears?",
    ),
    (
        "seconds_to_hms",
        "(seconds: int) -> str",
        "Format a number of seconds as hours:minutes:seconds.",
        "h, r = divmod(seconds, 3600)\n    m, s = divmod(r, 60)\n    return f'{h}:{m:02d}:{s:02d}'",
        "How long is 10000 seconds in hours and minutes?",
    ),
]
VARIANT_WORDS = [
    "table",
    "rows",
    "records",
    "inventory",
    "survey",
    "scores",
    "prices",
    "counts",
    "ledger",
    "schedule",
    "votes",
    "sales",
    "weights",
    "orders",
    "budget",
    "grades",
    "stock",
    "visits",
    "tickets",
    "rainfall",
    "donations",
    "miles",
]
NOISE = 0.02


def fill_library(path: Path, size: int) -> dict[str, Any]:
    """Fill a SQLite library with ``size`` functions (runs in a subprocess of this script)."""

    import numpy as np

    from dynagraph import Services, load_settings

    try:  # the one non-public import of the bench (see the module docstring)
        from dynagraph.tools.codeparse import normalized_hash
        from dynagraph.tools.library import FunctionRecord, open_library
    except ImportError as exc:
        raise SystemExit(f"peers: cannot fill a library: {exc} (update bench/peers.py)") from exc

    home = path.parent
    config = write_dynagraph_config(home, "http://127.0.0.1:9/v1")
    services = Services(load_settings(config))
    embedder = services.embedder
    records = []
    for i in range(size):
        name, sig, doc, body, task = TEMPLATES[i % len(TEMPLATES)]
        copy = i // len(TEMPLATES)
        if copy:
            word = VARIANT_WORDS[copy % len(VARIANT_WORDS)]
            name, doc = f"{name}_{word}_{copy}", f"For {word} data (variant {copy}). {doc}"
            task = f"{task} (About {word}, case {copy}.)"
        # a distinct constant per copy: the library stores code by its normalized hash, which
        # ignores names and docstrings, so copies must differ in code to be distinct records
        code = f'def {name}{sig}:\n    """{doc}"""\n    _copy = {copy}\n    {body}\n'
        records.append(
            FunctionRecord(
                name=name,
                code=code,
                ast_hash=normalized_hash(code),
                signature=sig,
                docstring=doc,
                origin_task=task,
                origin_model="bench-peers",
                tags=["synthetic"],
            )
        )
    bases = records[: len(TEMPLATES)]
    t0 = time.perf_counter()
    texts = [t for r in bases for t in (r.doc_view(), r.task_view())]
    real = dict(zip(texts, embedder.embed_documents(texts), strict=True))
    embed_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)

    class PerturbedEmbedder:
        """The real embedder's name and size; copies get their template's vectors + noise."""

        name, dim = embedder.name, embedder.dim

        def __init__(self) -> None:
            self.of: dict[str, str] = {}

        def embed_documents(self, batch: list[str]) -> np.ndarray:
            out = []
            for text in batch:
                base = real[self.of.get(text, text)]
                if text in real:
                    out.append(base)
                else:
                    noisy = base + rng.normal(0, NOISE, base.shape)
                    out.append((noisy / np.linalg.norm(noisy)).astype(np.float32))
            return np.stack(out)

        def embed_query(self, text: str) -> np.ndarray:
            return embedder.embed_query(text)

    fake = PerturbedEmbedder()
    for i, record in enumerate(records):
        base = bases[i % len(TEMPLATES)]
        fake.of[record.doc_view()] = base.doc_view()
        fake.of[record.task_view()] = base.task_view()
    t0 = time.perf_counter()
    library = open_library("sqlite", path=path, embedder=fake)
    try:
        for record in records:
            library.add(record)
        count = library.stats().get("functions")
    finally:
        library.close()
        services.close()
    return {
        "functions": count,
        "templates": len(TEMPLATES),
        "embed_seconds": round(embed_s, 1),
        "insert_seconds": round(time.perf_counter() - t0, 1),
        "vectors": f"{len(TEMPLATES)} templates embedded with {embedder.name}; copies = "
        f"template vectors + N(0, {NOISE}) noise, renormalized",
    }
