"""``dynagraph batch``: many tasks at once against the loopback stub model.

Concurrent tasks interleave their model calls, so the stub answers by rules computed from each
request (the task text in the user message), not from a queue: a tiny "model" that knows a cell
for every task it is given and reads the answer back from the observation.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dynagraph.graphs.batch import BatchTask, finished_ids, read_tasks, run_batch
from dynagraph.graphs.run import TaskResult
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings

from tests.support.cli import dead_endpoint, dynagraph, user_env
from tests.support.config import (
    after_coder_requests,
    coder_cell,
    planner_answer,
    planner_step,
    write_stub_config,
)
from tests.support.librarian import count_scratch_starts
from tests.support.openai_stub import StubLLM
from tests.support.sandbox import needs_bwrap

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "tasks.jsonl"
# the librarian's model-backed stages are not under test here; verification (a real scratch
# kernel replaying the probes) is
LIBRARIAN = {"generalize": False, "ask_model": False}

FIBONACCI = '''
def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number (fibonacci(1) == fibonacci(2) == 1)."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
'''
PRIMES = '''
def count_primes_below(limit: int) -> int:
    """Count the prime numbers smaller than limit (sieve of Eratosthenes)."""
    sieve = [True] * max(limit, 2)
    sieve[0] = sieve[1] = False
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = [False] * len(sieve[i * i :: i])
    return sum(sieve)
'''
WORDS = '''
import re as regex

def count_words(text: str) -> int:
    """Count the words in a text."""
    return len(regex.findall(r"\\w+", text))
'''
MEAN = '''
def mean_of(values: list[float]) -> float:
    """Arithmetic mean of a list of numbers."""
    return sum(values) / len(values)
'''

# task text pattern -> (cell printing ANSWER=..., expected answer), for examples/tasks.jsonl
EXAMPLE_CELLS: list[tuple[str, str, str]] = [
    (r"20th Fibonacci", FIBONACCI + 'print(f"ANSWER={fibonacci(20)}")', "6765"),
    (r"30th Fibonacci", FIBONACCI + 'print(f"ANSWER={fibonacci(30)}")', "832040"),
    (
        r"prime numbers are below 1000",
        PRIMES + 'print(f"ANSWER={count_primes_below(1000)}")',
        "168",
    ),
    (
        r"prime numbers are below 5000",
        PRIMES + 'print(f"ANSWER={count_primes_below(5000)}")',
        "669",
    ),
    (
        r"How many words",
        WORDS + "print(f\"ANSWER={count_words('the quick brown fox jumps over the lazy dog')}\")",
        "9",
    ),
    (r"mean of 3, 5, 8, 13 and 21", MEAN + 'print(f"ANSWER={mean_of([3, 5, 8, 13, 21])}")', "10.0"),
]

_ANSWER = re.compile(r"ANSWER=([^\s{\"'()]+)")


def _user_text(request: dict[str, Any]) -> str:
    users = [m for m in request["messages"] if m.get("role") == "user"]
    content = users[0]["content"] if users else ""
    return content if isinstance(content, str) else json.dumps(content)


def _task_of(request: dict[str, Any], after: str) -> str:
    match = re.search(r"Task:\n(.*?)\n\n" + after, _user_text(request), re.S)
    assert match, "the stub cannot find the task in the request"
    return match.group(1).strip()


def task_model(
    stub: StubLLM,
    cells: list[tuple[str, str, str]],
    before_answer: Callable[[str], None] | None = None,
) -> None:
    """Rules that solve every task matching one of `cells` in one step, whatever the order in
    which concurrent tasks call: the coder writes the task's cell, the planner answers with the
    ANSWER= value of the observation. `before_answer(task)` runs before each final answer."""

    def cell_for(task: str) -> str:
        for pattern, cell, _answer in cells:
            if re.search(pattern, task):
                return cell
        raise AssertionError(f"no cell for task {task!r}")

    def planner(request: dict[str, Any]) -> str:
        task = _task_of(request, "Steps so far:")
        found = _ANSWER.findall(_user_text(request).split("Steps so far:", 1)[1])
        if not found:
            return planner_step(f"Compute the answer to: {task}")
        if before_answer is not None:
            before_answer(task)
        return planner_answer(found[-1])

    stub.add_rule("planner", planner)
    stub.add_rule(
        "coder", lambda request: coder_cell(cell_for(_task_of(request, "Earlier steps:")))
    )


def test_batch_runs_the_readme_example_file_and_resumes(stub_env, tmp_path):
    stub = stub_env["stub"]
    task_model(stub, EXAMPLE_CELLS)
    config = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"], librarian=LIBRARIAN
    )
    env = user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(stub_env["home"]))
    out = tmp_path / "results.jsonl"
    args = ["batch", "examples/tasks.jsonl", "--concurrency", "2", "--out", str(out)]

    proc = dynagraph(*args, "--config", str(config), env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tasks = read_tasks(EXAMPLES)
    assert sorted(r["id"] for r in rows) == sorted(t.id for t in tasks)  # one line per task
    expected = {t.id: next(a for p, _, a in EXAMPLE_CELLS if re.search(p, t.task)) for t in tasks}
    for row in rows:
        assert row["status"] == "done", row
        assert row["answer"] == expected[row["id"]], row
        assert row["steps"] == 1 and row["seconds"] > 0 and row["usage"]["planner"]["calls"] == 2
    # both Fibonacci tasks wrote the same function: stored once
    created = [name for r in rows for name in r["functions_created"]]
    assert sorted(set(created)) == ["count_primes_below", "count_words", "fibonacci", "mean_of"]
    assert created.count("fibonacci") == 1 and created.count("count_primes_below") == 1
    lines = proc.stderr.strip().splitlines()
    assert sum(bool(re.match(r"\[\d/6\] \S+: done in ", line)) for line in lines) == 6
    assert lines[-1].startswith("batch: 6 tasks: 6 done, 0 failed, 0 error, 0 skipped")

    again = dynagraph(*args, "--config", str(config), env=env, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert len(out.read_text().splitlines()) == 6  # nothing ran twice
    assert "6 skipped (already finished)" in again.stderr.strip().splitlines()[-1]


def _cli_env(stub_env: dict[str, Any]) -> dict[str, str]:
    return user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(stub_env["home"]))


def test_batch_whose_every_task_meets_a_dead_endpoint_exits_2_in_one_line(stub_env, tmp_path):
    """As `run` would: exit 2 and one line naming the endpoint; the error lines are still in
    --out (a rerun retries them) and no task leaves an empty folder."""
    dead = dead_endpoint()
    config = write_stub_config(tmp_path / "dead.yaml", dead, stub_env["home"])
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(f'{{"id": "t{i}", "task": "add {i} and 1"}}\n' for i in range(3)))
    out = tmp_path / "results.jsonl"
    args = ["batch", str(tasks), "--config", str(config), "--out", str(out), "-q"]
    proc = dynagraph(*args, env=_cli_env(stub_env), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr  # the summary, then the problem
    assert lines[0].startswith("batch: 3 tasks: 0 done, 0 failed, 3 error"), lines[0]
    assert lines[1].startswith(
        "dynagraph: all 3 tasks stopped on a configuration or endpoint problem; the first: "
        f"cannot reach the planner model stub-default at {dead}"
    ), lines[1]
    assert lines[1].endswith("run the same command again to retry them"), lines[1]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["t0", "t1", "t2"]
    assert {r["status"] for r in rows} == {"error"} and finished_ids(out) == set()
    runs = stub_env["home"] / "runs"
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []


def test_batch_with_a_task_done_keeps_exit_1_when_another_meets_the_endpoint(stub_env, tmp_path):
    from tests.support.openai_stub import StubError

    stub = stub_env["stub"]

    def broken(request: dict[str, Any]) -> Any:
        if "broken" in _task_of(request, "Steps so far:"):
            return StubError(503, "overloaded")
        return None

    stub.add_rule("planner", broken)  # before task_model's rules: asked first
    task_model(stub, EXAMPLE_CELLS)
    config = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"], librarian=LIBRARIAN
    )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        '{"id": "fib", "task": "What is the 20th Fibonacci number?"}\n'
        '{"id": "broken", "task": "a broken task"}\n'
    )
    out = tmp_path / "results.jsonl"
    args = ["batch", str(tasks), "--config", str(config), "--out", str(out), "-q"]
    proc = dynagraph(*args, env=_cli_env(stub_env), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("batch: 2 tasks: 1 done, 0 failed, 1 error")
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["fib"]["status"] == "done" and rows["fib"]["answer"] == "6765"
    assert rows["broken"]["status"] == "error" and "HTTP 503" in rows["broken"]["error"]


def test_summary_says_every_task_broke_only_when_each_raised_a_setup_problem(tmp_path):
    """all_setup_errors: every task run raised an error `run` exits 2 for (not a crash, not a
    task that ran), so `batch` exits 2; skipped tasks do not count."""
    from dynagraph.tools.errors import ConfigError
    from dynagraph.tools.models import ModelEndpointError

    settings = batch_settings = load_settings(None)
    raises: dict[str, Exception] = {}

    def runner(task, settings, thread_id, *, context, services):
        if task in raises:
            raise raises[task]
        return TaskResult(task=task, answer="x", status="done", thread_id=thread_id)

    class KeysPresent:
        def check(self, node, override):
            pass

    class NoKernels:
        models = KeysPresent()
        settings = batch_settings  # preflight checks its tasks' folder

        def start_kernel_pool(self, size):
            return None

        def close(self):
            pass

    def batch(tasks: list[BatchTask], out: Path | None = None) -> Any:
        kwargs = {"services": NoKernels(), "runner": runner, "out": out}
        return run_batch(tasks, settings, concurrency=1, **kwargs)  # type: ignore[arg-type]

    down = ModelEndpointError("cannot reach the planner model m at http://x/v1: refused")
    raises |= {"a": down, "b": ConfigError("set models.coder.model"), "c": RuntimeError("bug")}
    every = batch([BatchTask("1", "a"), BatchTask("2", "b")])
    assert every.all_setup_errors and every.setup_errors == 2
    assert every.setup_problem in {str(down), "set models.coder.model"}
    assert not batch([BatchTask("1", "a"), BatchTask("3", "c")]).all_setup_errors  # a crash
    assert not batch([BatchTask("1", "a"), BatchTask("4", "d")]).all_setup_errors  # one done
    assert not batch([]).all_setup_errors  # nothing ran

    out = tmp_path / "results.jsonl"
    assert batch([BatchTask("4", "d")], out).done == 1
    resumed = batch([BatchTask("4", "d"), BatchTask("1", "a")], out)
    assert resumed.skipped == 1 and resumed.all_setup_errors  # what ran this time broke


ADD_ALL = '''
def add_all(values: list[float]) -> float:
    """Sum a list of numbers."""
    total = 0
    for value in values:
        total += value
    return total
'''
SCALE_ALL = '''
def scale_values(values: list[float], factor: float) -> list[float]:
    """Multiply every value by a factor."""
    return [value * factor for value in values]
'''
SCALE_ABOVE = '''
def scale_values(values: list[float], factor: float, above: float = 2) -> list[float]:
    """Multiply the values greater than a threshold by a factor, dropping the others."""
    return [value * factor for value in values if value > above]
'''
OVERLAPPING = [
    (r"Add up 1, 2 and 3", ADD_ALL + 'print(f"ANSWER={add_all([1, 2, 3])}")', "6"),
    (r"Add up 10, 20 and 30", ADD_ALL + 'print(f"ANSWER={add_all([10, 20, 30])}")', "60"),
    (r"Scale 2 and 3 by 10", SCALE_ALL + 'print(f"ANSWER={scale_values([2, 3], 10)}")', "[20,"),
    (r"Scale what is above 2", SCALE_ABOVE + 'print(f"ANSWER={scale_values([2, 3], 10)}")', "[30]"),
]


def test_concurrent_librarians_neither_lose_nor_duplicate_functions(
    stub_env, settings_for, tmp_path
):
    """Four tasks finish at the same moment (the stub holds every final answer until all four
    ask for one), so four librarians admit overlapping functions into one SQLite file at once."""
    stub = stub_env["stub"]
    together = threading.Barrier(4, timeout=90)  # 4 kernels + 4 scratch kernels on 2 cores
    task_model(stub, OVERLAPPING, before_answer=lambda task: together.wait())
    settings = settings_for(librarian=LIBRARIAN)
    tasks = [
        BatchTask("dup-1", "Add up 1, 2 and 3."),
        BatchTask("dup-2", "Add up 10, 20 and 30."),
        BatchTask("ver-1", "Scale 2 and 3 by 10."),
        BatchTask("ver-2", "Scale what is above 2 among 2 and 3 by 10."),
    ]
    out = tmp_path / "results.jsonl"
    summary = run_batch(tasks, settings, concurrency=4, out=out)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert summary.done == 4, {k: (r["status"], r.get("error")) for k, r in rows.items()}

    services = Services(settings)
    try:
        library = services.library
        adders = library.versions("add_all")
        assert len(adders) == 1, [(r.version, r.origin_task) for r in adders]  # not duplicated
        assert adders[0].uses == 1  # the second task's identical function counted as a use
        scalers = library.versions("scale_values")
        assert sorted(r.version for r in scalers) == [1, 2], [r.version for r in scalers]
        assert [r.status for r in scalers].count("active") == 1
        newest = max(scalers, key=lambda r: r.version)
        assert newest.supersedes == min(scalers, key=lambda r: r.version).id
        assert {r.origin_task for r in scalers} == {tasks[2].task, tasks[3].task}  # none lost
        assert library.stats()["total"] == 3
    finally:
        services.close()
    created = [name for r in rows.values() for name in r["functions_created"]]
    assert sorted(created) == ["add_all", "scale_values", "scale_values"]


# -- input, resume and errors, without kernels: a scripted runner ------------------------------


def test_read_tasks_numbers_missing_ids_and_names_the_bad_line(tmp_path):
    good = tmp_path / "tasks.jsonl"
    good.write_text('{"task": "a"}\n\n{"id": 7, "task": "b"}\n')
    assert read_tasks(good) == [BatchTask("1", "a"), BatchTask("7", "b")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "a"}\n{"task": "b"\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        read_tasks(bad)
    twice = tmp_path / "twice.jsonl"
    twice.write_text('{"id": "x", "task": "a"}\n{"id": "x", "task": "b"}\n')
    with pytest.raises(ValueError, match=r"twice.jsonl:2: id 'x' appears twice"):
        read_tasks(twice)


def test_tasks_and_results_hold_line_separators_that_json_leaves_raw(tmp_path):
    """U+2028, U+2029 and U+0085 stay raw inside JSON strings (text pasted from a web page);
    the files are split at newlines only, so such a task is read and its result counts as
    done on a resume (an attack saw it run again at every resume)."""
    pasted = "Sum the column:\u2028 1\u2029 2\u0085 3\r"
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"id": "pasted", "task": pasted}, ensure_ascii=False) + "\r\n"
        + json.dumps({"id": "plain", "task": "b"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    assert read_tasks(tasks) == [BatchTask("pasted", pasted), BatchTask("plain", "b")]
    out = tmp_path / "results.jsonl"
    row = {"id": "pasted", "task": pasted, "answer": "6\u2028", "status": "done"}
    out.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert finished_ids(out) == {"pasted"}


def test_unreadable_tasks_or_results_are_one_line_before_any_task(tmp_path, cli_env):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_bytes(b'{"task": "a"}\n{"task": "\xff"}\n')
    proc = dynagraph("batch", str(tasks), env=cli_env)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"dynagraph: {tasks}:2: not UTF-8 text; save the tasks file as UTF-8\n"
    tasks.write_text('{"task": "a"}\n')
    for out, said in (
        (tmp_path, f"--out {tmp_path} is a folder; give a file path"),
        (tmp_path / "no" / "r.jsonl", f"--out {tmp_path / 'no' / 'r.jsonl'}: its folder "
         f"{tmp_path / 'no'} does not exist"),
    ):  # fmt: skip
        proc = dynagraph("batch", str(tasks), "--out", str(out), env=cli_env)
        assert (proc.returncode, proc.stderr) == (2, f"dynagraph: {said}\n")
    binary = tmp_path / "results.jsonl"
    binary.write_bytes(b"\xfe\xff")
    proc = dynagraph("batch", str(tasks), "--out", str(binary), env=cli_env)
    assert proc.returncode == 2 and "results.jsonl:1: not UTF-8 text" in proc.stderr


def test_resume_skips_finished_tasks_and_reruns_errors(tmp_path):
    settings = batch_settings = load_settings(None)
    calls: list[str] = []
    flaky = {"b"}

    def runner(task, settings, thread_id, *, context, services):
        calls.append(task)
        if task in flaky:
            raise ConnectionError("endpoint down\nsecond line")
        status = "failed" if task == "c" else "done"
        return TaskResult(task=task, answer=task.upper(), status=status, thread_id=thread_id)

    class KeysPresent:
        def check(self, node, override):
            pass

    class NoKernels:  # all run_batch asks of its services when the runner is scripted
        models = KeysPresent()
        settings = batch_settings  # preflight checks its tasks' folder

        def start_kernel_pool(self, size):
            return None

        def close(self):
            pass

    tasks = [BatchTask("1", "a"), BatchTask("2", "b"), BatchTask("3", "c")]
    out = tmp_path / "results.jsonl"
    kwargs = {"out": out, "services": NoKernels(), "runner": runner}
    first = run_batch(tasks, settings, concurrency=2, **kwargs)  # type: ignore[arg-type]
    assert (first.done, first.failed, first.error) == (1, 1, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    error = next(r for r in rows if r["id"] == "2")
    assert error["status"] == "error" and error["error"] == "ConnectionError: endpoint down"
    assert finished_ids(out) == {"1", "3"}  # a failed task is final; an error is not

    flaky.clear()
    calls.clear()
    with out.open("a") as f:
        f.write('{"id": "1", "sta')  # a line torn by a crash is ignored
    second = run_batch(tasks, settings, concurrency=2, **kwargs)  # type: ignore[arg-type]
    assert calls == ["b"]
    assert (second.skipped, second.done) == (2, 1)
    assert finished_ids(out) == {"1", "2", "3"}


@pytest.mark.parametrize("command", ["run", "batch"])
def test_sandbox_asked_without_bwrap_stops_with_one_line(command, stub_env, tmp_path):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Print 1.")])
    stub.script("coder", [coder_cell("print(1)")])
    config = write_stub_config(
        tmp_path / "config.yaml",
        stub_env["base_url"],
        stub_env["home"],
        executor={"sandbox": "bwrap"},
    )
    env = user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(stub_env["home"]))
    env["PATH"] = str(Path(sys.executable).parent)  # no bwrap on this PATH
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"task": "print one"}\n')
    args = ["run", "print one"] if command == "run" else ["batch", str(tasks)]
    proc = dynagraph(*args, "--config", str(config), env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("dynagraph: bubblewrap is not installed"), proc.stderr
    assert "apt-get install -y bubblewrap" in lines[-1]
    assert "Traceback" not in proc.stderr
    if command == "batch":
        assert len(lines) == 1 and stub.requests == []  # stopped before any model call


@needs_bwrap
def test_one_warm_scratch_kernel_verifies_a_sequential_batch_of_pooled_tasks(
    stub_env, settings_for, tmp_path
):
    """A batch's tasks take pooled kernels (under bubblewrap each task's folder is a link to its
    kernel's slot); the librarian's scratch kernel is started once and shown each task's folder
    through its view: every function is verified from its recorded calls, not taken unverified."""
    stub = stub_env["stub"]
    task_model(stub, EXAMPLE_CELLS)
    settings = settings_for(librarian=LIBRARIAN, executor={"sandbox": "bwrap"})
    services = Services(settings)
    started = count_scratch_starts(services)
    tasks = [t for t in read_tasks(EXAMPLES) if not re.search("30th|5000", t.task)]
    out = tmp_path / "results.jsonl"
    try:
        summary = run_batch(tasks, settings, concurrency=1, out=out, services=services)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert summary.done == len(tasks), [(r["id"], r["status"], r.get("error")) for r in rows]
        pooled = [services.workdir_for(r["thread_id"]) for r in rows if r.get("thread_id")]
        assert any(p.is_symlink() for p in pooled), pooled  # a pooled task's folder is a link
        assert len(started) == 1  # one scratch kernel for the whole batch
        library = services.library
        for name in ("fibonacci", "count_primes_below", "count_words", "mean_of"):
            record = library.get_by_name(name)
            assert record is not None and "unverified" not in record.tags, name
    finally:
        services.close()


def test_batch_speculate_writes_the_next_step_while_the_planner_decides(
    cli_env, stub_env, tmp_path
):
    """``batch --speculate`` reaches each task's run: the coder's request for step 2 arrives
    while the planner's turn after step 1 is still out (without the flag it never would), and
    that cell is the one run."""
    stub = stub_env["stub"]
    plan = ["Set a to 6.", "Print a*7."]
    seen: list[bool] = []
    stub.script(
        "planner",
        [
            planner_step(plan[0], plan=plan),
            after_coder_requests(stub, 2, planner_step(plan[1]), seen),
            planner_answer("42"),
        ],
    )
    stub.script("coder", [coder_cell("a = 6"), coder_cell("print(a * 7)")])
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "t1", "task": "six times seven"}\n', encoding="utf-8")
    out = tmp_path / "results.jsonl"
    proc = dynagraph("batch", str(tasks), "--speculate", "--out", str(out), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    (line,) = out.read_text(encoding="utf-8").splitlines()
    result = json.loads(line)
    assert (result["status"], result["answer"]) == ("done", "42")
    assert seen == [True]
    assert len(stub.requests_for("coder")) == 2 and stub.remaining() == 0
