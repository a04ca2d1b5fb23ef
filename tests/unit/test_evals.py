"""The eval harness without a model: loaders on small files in each layout, the MATH and TabMWP
scorers, the resumable runner, the summary's arithmetic and the ``eval`` command's parser.

The runner tests drive it with a tiny fake solver (a dict of canned answers returning real
``graphs.run.TaskResult`` objects): that tests the harness (records, resume, summary), not any
model or the agent, which the integration and e2e suites cover.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pytest
from dynagraph.evals import (
    BENCHMARKS,
    EvalDataError,
    EvalTask,
    format_summary,
    load_gaia,
    load_math,
    load_tabmwp,
    math_equal,
    read_results,
    run_eval,
    score_tabmwp,
    summarize,
    tabmwp_equal,
)
from dynagraph.evals.math_answers import last_boxed
from dynagraph.graphs.cli_eval import add_eval_parser, cmd_eval, summary_path
from dynagraph.graphs.run import TaskResult

CRAFT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "craft-tabmwp"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- GAIA ---------------------------------------------------------------------------------------
GAIA_ROWS = [
    {"task_id": "t1", "Question": "What is 2+2?", "Level": 1, "Final answer": "4", "file_name": ""},
    {
        "task_id": "t2",
        "Question": "Sum the column.",
        "Level": "2",
        "Final answer": "10",
        "file_name": "t2.csv",
    },
    {
        "task_id": "t3",
        "Question": "Describe the picture.",
        "Level": 3,
        "Final answer": "cat",
        "file_name": "gone.png",
    },
]


@pytest.fixture
def gaia_root(tmp_path: Path) -> Path:
    split = tmp_path / "GAIA" / "2023" / "validation"
    write_jsonl(split / "metadata.jsonl", GAIA_ROWS)
    (split / "t2.csv").write_text("x\n4\n6\n", encoding="utf-8")
    return tmp_path / "GAIA"


def test_gaia_loads_from_root_split_folder_and_file(gaia_root: Path) -> None:
    split = gaia_root / "2023" / "validation"
    for where in (gaia_root, split, split / "metadata.jsonl"):
        tasks = load_gaia(where)
        assert [t.id for t in tasks] == ["t1", "t2", "t3"]
    assert [t.level for t in tasks] == ["1", "2", "3"]
    assert [t.expected for t in tasks] == ["4", "10", "cat"]


def test_gaia_resolves_attachments_next_to_metadata(gaia_root: Path) -> None:
    t1, t2, t3 = load_gaia(gaia_root)
    attached = (gaia_root / "2023" / "validation" / "t2.csv").resolve()
    assert t2.meta["file_path"] == str(attached)
    assert f"The attached file is at: {attached}" in t2.prompt
    assert "attached file" not in t1.prompt
    assert t3.meta["file_missing"] is True
    assert "gone.png" in t3.prompt and "not available" in t3.prompt
    assert t1.prompt.startswith("What is 2+2?")


def test_gaia_parquet_with_file_path_column(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="reading parquet needs pyarrow")
    root = tmp_path / "snap"
    split = root / "2023" / "validation"
    split.mkdir(parents=True)
    (split / "a.txt").write_text("hello", encoding="utf-8")
    frame = pd.DataFrame(
        [
            {
                "task_id": "p1",
                "Question": "Read the file.",
                "Level": "1",
                "Final answer": "hello",
                "file_name": "a.txt",
                "file_path": "2023/validation/a.txt",
            },
            {
                "task_id": "p2",
                "Question": "No file.",
                "Level": "2",
                "Final answer": "x",
                "file_name": "",
                "file_path": None,
            },
        ]
    )
    frame.to_parquet(split / "metadata.parquet")
    tasks = load_gaia(root)
    assert [t.id for t in tasks] == ["p1", "p2"]
    assert tasks[0].meta["file_path"] == str((split / "a.txt").resolve())
    assert tasks[1].meta["file_path"] is None


def test_gaia_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="not found"):
        load_gaia(tmp_path / "nowhere")
    with pytest.raises(EvalDataError, match="no GAIA metadata"):
        load_gaia(tmp_path)
    bad = tmp_path / "metadata.jsonl"
    bad.write_text(
        '{"task_id": "x", "Question": "q", "Final answer": "a"}\nnot json\n', encoding="utf-8"
    )
    with pytest.raises(EvalDataError, match=":2: not JSON"):
        load_gaia(bad)
    for answer in ({}, {"Final answer": "?"}):  # the test split: answers not public
        row = {"task_id": "x", "Question": "q", **answer}
        bad.write_text(json.dumps(row) + "\n", encoding="utf-8")
        with pytest.raises(EvalDataError, match=r"row 1 \(x\) has no final answer"):
            load_gaia(bad)


def test_gaia_benchmark_scores_with_the_official_rules(gaia_root: Path) -> None:
    t1, t2, _ = load_gaia(gaia_root)
    score = BENCHMARKS["gaia"].score
    assert score("4.0", t1) and score("$10", t2)
    assert not score("four", t1)


# -- MATH ---------------------------------------------------------------------------------------
def write_math_problem(path: Path, problem: str, solution: str, level: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"problem": problem, "level": level, "type": "Algebra", "solution": solution}
    path.write_text(json.dumps(row), encoding="utf-8")


def test_math_folder_layout_in_natural_order(tmp_path: Path) -> None:
    root = tmp_path / "MATH" / "test"
    write_math_problem(root / "algebra" / "10.json", "p10", "so $\\boxed{7}$.", "Level 2")
    write_math_problem(
        root / "algebra" / "2.json", "p2", "half: $\\boxed{\\frac{1}{2}}$", "Level 1"
    )
    write_math_problem(root / "geometry" / "1.json", "g1", "\\boxed{5\\text{ cm}}", "Level 5")
    tasks = load_math(root)
    assert [t.id for t in tasks] == ["algebra/2", "algebra/10", "geometry/1"]
    assert [t.expected for t in tasks] == ["\\frac{1}{2}", "7", "5\\text{ cm}"]
    assert tasks[0].level == "Level 1" and tasks[0].meta["subject"] == "Algebra"
    assert tasks[0].prompt.startswith("p2")


def test_math_jsonl_layout(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "math500.jsonl",
        [
            {"problem": "a", "answer": "3", "level": 1, "unique_id": "test/algebra/1.json"},
            {"problem": "b", "solution": "thus \\boxed{x^{2}}"},
        ],
    )
    tasks = load_math(path)
    assert [t.id for t in tasks] == ["test/algebra/1.json", "2"]
    assert [t.expected for t in tasks] == ["3", "x^{2}"]


def test_math_problem_without_answer_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"problem": "a", "solution": "no box here"}])
    with pytest.raises(EvalDataError, match="boxed"):
        load_math(path)


def test_last_boxed_balances_braces() -> None:
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{a}{b^{2}}} end") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed 5$") == "5"
    assert last_boxed("\\fbox{9}") == "9"
    assert last_boxed("no answer") is None
    assert last_boxed("\\boxed{unclosed") is None


@pytest.mark.parametrize(
    ("answer", "expected", "equal"),
    [
        ("\\frac12", "0.5", True),
        ("The answer is \\boxed{\\dfrac{3}{4}}", "3/4", True),
        ("x = 5", "5", True),
        ("30^\\circ", "30", True),
        ("10\\%", "10", True),
        ("\\$1,\\!000", "1000", True),
        ("1,000", "1000", True),
        ("2\\sqrt5", "2\\sqrt{5}", True),
        ("4 \\text{ cm}", "4", True),
        ("\\left( 3, 4 \\right)", "(3,4)", True),
        (".5", "\\frac{1}{2}", True),
        ("-0.333333333", "-\\frac{1}{3}", True),
        ("\\tfrac{1}{3}", "\\frac13", True),
        ("$6$", "6", True),
        ("7", "8", False),
        ("0.33", "\\frac{1}{3}", False),
        ("\\frac{1}{2}", "\\frac{1}{3}", False),
        ("x^2", "x^3", False),
        (None, "1", False),
    ],
)
def test_math_equal(answer: str | None, expected: str, equal: bool) -> None:
    assert math_equal(answer, expected) is equal


# -- TabMWP -------------------------------------------------------------------------------------
def test_tabmwp_official_json(tmp_path: Path) -> None:
    problems = {
        "11": {
            "question": "How much do 2 pens cost?",
            "table": "pen | $1.50\npad | $2.00",
            "table_title": "Prices",
            "choices": None,
            "answer": "3",
            "unit": "",
            "ans_type": "integer_number",
            "grade": 4,
        },
        "12": {
            "question": "Which is longer?",
            "table": "a | 3\nb | 5",
            "table_title": "",
            "choices": ["a", "b"],
            "answer": "b",
            "unit": None,
            "ans_type": "extractive_text",
            "grade": 2,
        },
        "13": {
            "question": "How far?",
            "table": "x | 1",
            "answer": "12",
            "unit": "miles",
            "grade": 3,
        },
    }
    path = tmp_path / "data" / "tabmwp" / "problems_test.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(problems), encoding="utf-8")
    (path.parent / "problems_train.json").write_text("{}", encoding="utf-8")
    for where in (path, path.parent):
        tasks = load_tabmwp(where)
        assert [t.id for t in tasks] == ["11", "12", "13"]
    pens, longer, far = tasks
    assert pens.prompt.startswith("Table: Prices\npen | $1.50")
    assert "Question: How much do 2 pens cost?" in pens.prompt
    assert "Choices: a; b" in longer.prompt
    assert pens.level == "4" and longer.meta["choices"] == ["a", "b"]
    assert score_tabmwp("3.0", pens) and score_tabmwp("$3", pens)
    assert score_tabmwp("B", longer) and not score_tabmwp("a", longer)
    assert score_tabmwp("12 miles", far) and not score_tabmwp("13", far)
    problems["12"]["choices"] = "ab"  # a string was split into letters as choices
    path.write_text(json.dumps(problems), encoding="utf-8")
    with pytest.raises(EvalDataError, match="problem 12: 'choices' must be a list or null"):
        load_tabmwp(path)


def test_tabmwp_folder_with_several_splits_needs_a_file(tmp_path: Path) -> None:
    for name in ("problems_train.json", "problems_dev.json"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    with pytest.raises(EvalDataError, match="several TabMWP splits"):
        load_tabmwp(tmp_path)


def write_craft_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["question", "answer", "table", "level", "tool_id"])
        writer.writeheader()
        writer.writerows(rows)


def test_tabmwp_craft_csv_and_folder_in_epoch_order(tmp_path: Path) -> None:
    row = {"question": "q", "answer": "0.2307692308", "table": "a | 1", "level": "5"}
    for epoch, ids in ((10, ["c"]), (2, ["b"]), (0, ["a1", "a2"])):
        write_craft_csv(
            tmp_path / f"epoch_{epoch}" / "2_valid_specific_solutions.csv",
            [{**row, "tool_id": i} for i in ids],
        )
    tasks = load_tabmwp(tmp_path)
    assert [t.id for t in tasks] == ["a1", "a2", "b", "c"]
    assert tasks[0].level == "5"
    assert score_tabmwp("3/13", tasks[0]) and score_tabmwp("0.231", tasks[0])
    single = load_tabmwp(tmp_path / "epoch_2" / "2_valid_specific_solutions.csv")
    assert [t.id for t in single] == ["b"]


def test_tabmwp_csv_without_needed_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("question,level\nq,1\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="missing columns answer, table"):
        load_tabmwp(path)


@pytest.mark.parametrize(
    ("answer", "expected", "unit", "equal"),
    [
        ("1,000", "1000", None, True),
        ("$56.40", "56.4", None, True),
        ("-3/2", "-1.5", None, True),
        ("20.0", "20", None, True),
        ("0.2307", "0.2307692308", None, True),  # both round to 0.231
        ("0.23", "0.2307692308", None, False),
        ("Yes", "yes", None, True),
        ("  Monday. ", "Monday", None, True),
        ("5 hours", "5", "hours", True),
        ("Tuesday", "Monday", None, False),
        (None, "1", None, False),
    ],
)
def test_tabmwp_equal(answer: str | None, expected: str, unit: str | None, equal: bool) -> None:
    assert tabmwp_equal(answer, expected, unit) is equal


def test_craft_loader_on_the_shared_data() -> None:
    if not (CRAFT_DIR / "epoch_0" / "2_valid_specific_solutions.csv").is_file():
        pytest.skip(f"CRAFT data not found at {CRAFT_DIR} (../shared beside the checkout)")
    tasks = load_tabmwp(CRAFT_DIR)
    assert len(tasks) == 500
    assert len({t.id for t in tasks}) == 500
    highlighters = next(t for t in tasks if "yellow highlighters" in t.question)
    assert "Number of packages | Number of yellow highlighters" in highlighters.prompt
    assert score_tabmwp("20", highlighters)
    assert all(t.level for t in tasks)


# -- runner ---------------------------------------------------------------------------------------
def make_tasks(n: int) -> list[EvalTask]:
    return [
        EvalTask(
            id=f"q{i}",
            question=f"what is {i}+{i}?",
            prompt=f"PROMPT {i}",
            expected=str(2 * i),
            level=str(1 + i % 2),
        )
        for i in range(n)
    ]


class FakeSolver:
    """Answers ``PROMPT i`` with canned results; records which prompts it was asked."""

    def __init__(self, answers: dict[int, str | None], fail: set[int] = frozenset()) -> None:
        self.answers = answers
        self.fail = set(fail)
        self.calls: list[str] = []

    def __call__(self, prompt: str) -> TaskResult:
        self.calls.append(prompt)
        i = int(prompt.split()[1])
        if i in self.fail:
            raise RuntimeError(f"kernel died on {i}")
        steps = [
            {"instruction": "s1", "code": "x = f(1)", "status": "ok", "reused": ["f"]},
            {"instruction": "s2", "code": "def g(): ...", "status": "ok", "reused": []},
        ][: 1 + i % 2]
        return TaskResult(
            task=prompt,
            answer=self.answers.get(i),
            status="done",
            thread_id=f"thread-{i}",
            steps=steps,
            functions_created=["g"] if len(steps) == 2 else [],
            functions_reused=["f"],
            usage={"planner": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}},
        )


def exact(answer: str | None, task: EvalTask) -> bool:
    return answer == task.expected


def test_runner_writes_one_record_per_task(tmp_path: Path) -> None:
    out = tmp_path / "res" / "r.jsonl"
    solver = FakeSolver({0: "0", 1: "2", 2: "5"})
    stream = io.StringIO()
    records = run_eval(
        make_tasks(3), solver, exact, out, run_info={"benchmark": "t"}, progress_stream=stream
    )
    assert [r["id"] for r in records] == ["q0", "q1", "q2"]
    assert [r["correct"] for r in records] == [True, True, False]
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["benchmark"] == "t" and first["question"] == "what is 0+0?"
    assert first["expected"] == "0" and first["answer"] == "0" and first["level"] == "1"
    assert first["steps"] == 1 and first["library_steps"] == 1 and first["coverage"] == 1.0
    assert first["tokens"]["planner"]["total_tokens"] == 12
    assert first["functions_reused"] == ["f"] and first["thread_id"] == "thread-0"
    assert records[1]["coverage"] == 0.5 and records[1]["functions_created"] == ["g"]
    assert isinstance(first["seconds"], float)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("[") and "3/3" in lines[-1]
    assert "acc 66.7%" in lines[-1]


def test_runner_resumes_skipping_done_ids_and_retrying_errors(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = FakeSolver({0: "0", 1: "2", 2: "4"}, fail={1})
    records = run_eval(make_tasks(3), first, exact, out, limit=2)
    assert len(first.calls) == 2
    assert records[1]["status"] == "error" and "kernel died on 1" in records[1]["error"]
    assert records[1]["correct"] is False

    second = FakeSolver({0: "0", 1: "2", 2: "4"})
    records = run_eval(make_tasks(3), second, exact, out)
    assert second.calls == ["PROMPT 1", "PROMPT 2"]  # q0 done; q1 errored, so retried
    assert [r["correct"] for r in records] == [True, True, True]
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4
    assert read_results(out)["q1"]["status"] == "done"

    third = FakeSolver({})
    assert len(run_eval(make_tasks(3), third, exact, out)) == 3
    assert third.calls == []


def test_runner_refuses_to_mix_runs_with_and_without_library(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run_eval(make_tasks(1), FakeSolver({0: "0"}), exact, out, run_info={"use_library": True})
    with pytest.raises(EvalDataError, match="use_library=True"):
        run_eval(make_tasks(2), FakeSolver({}), exact, out, run_info={"use_library": False})


def test_runner_ignores_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run_eval(make_tasks(1), FakeSolver({0: "0"}), exact, out)
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "q1", "answ')
    solver = FakeSolver({1: "2"})
    records = run_eval(make_tasks(2), solver, exact, out)
    assert solver.calls == ["PROMPT 1"] and records[1]["correct"]


def test_runner_propagates_abort_exceptions_and_keeps_earlier_records(tmp_path: Path) -> None:
    class EndpointDown(RuntimeError):
        pass

    def solve(prompt: str) -> TaskResult:
        if prompt == "PROMPT 1":
            raise EndpointDown("no API key")
        return FakeSolver({0: "0"})(prompt)

    out = tmp_path / "r.jsonl"
    with pytest.raises(EndpointDown):
        run_eval(make_tasks(3), solve, exact, out, abort_on=(EndpointDown,))
    assert list(read_results(out)) == ["q0"]


# -- summary --------------------------------------------------------------------------------------
def test_summary_numbers() -> None:
    records = [
        {
            "id": "a",
            "level": "1",
            "correct": True,
            "status": "done",
            "steps": 2,
            "library_steps": 1,
            "tokens": {
                "planner": {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110},
                "coder": {"input_tokens": 50, "output_tokens": 30, "total_tokens": 80},
            },
            "functions_created": ["g"],
            "functions_reused": ["f"],
            "seconds": 3.0,
        },
        {
            "id": "b",
            "level": "2",
            "correct": False,
            "status": "done",
            "steps": 3,
            "library_steps": 0,
            "tokens": {"planner": {"input_tokens": 20, "output_tokens": 0, "total_tokens": 20}},
            "functions_created": ["h", "k"],
            "functions_reused": [],
            "seconds": 5.0,
        },
        {
            "id": "c",
            "level": "1",
            "correct": False,
            "status": "error",
            "steps": 0,
            "library_steps": 0,
            "tokens": {},
            "functions_created": [],
            "functions_reused": ["f", "m"],
            "seconds": 1.0,
        },
    ]
    s = summarize(records)
    assert s["tasks"] == 3 and s["correct"] == 1 and s["accuracy"] == pytest.approx(1 / 3)
    assert s["errors"] == 1
    assert s["per_level"] == {
        "1": {"tasks": 2, "correct": 1, "accuracy": 0.5},
        "2": {"tasks": 1, "correct": 0, "accuracy": 0.0},
    }
    assert s["mean_steps"] == pytest.approx(5 / 3)
    assert s["tokens_per_task"]["planner"]["total_tokens"] == pytest.approx(130 / 3)
    assert s["tokens_per_task"]["coder"]["output_tokens"] == pytest.approx(10)
    assert s["tokens_per_task"]["all"]["total_tokens"] == pytest.approx(210 / 3)
    assert s["functions_created"] == 3
    assert s["functions_reused"] == 3 and s["distinct_reused"] == 2
    assert s["reuse_rate"] == pytest.approx(2 / 3)
    assert s["coverage"] == pytest.approx(1 / 5)
    assert s["mean_seconds"] == pytest.approx(3.0)
    table = format_summary(s, title="demo")
    assert table.splitlines()[0] == "demo"
    assert "33.3% (1/3)" in table and "level 1" in table and "coverage" in table
    assert "20.0%" in table


def test_summary_of_nothing() -> None:
    s = summarize([])
    assert s["tasks"] == 0 and s["accuracy"] is None and s["coverage"] is None
    assert "accuracy" in format_summary(s)


def test_summary_sorts_levels_numerically() -> None:
    rows = [{"level": lv, "correct": True} for lv in ("10", "2", "Level 1")]
    assert list(summarize(rows)["per_level"]) == ["2", "10", "Level 1"]


# -- command line ---------------------------------------------------------------------------------
def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynagraph")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_eval_parser_options() -> None:
    args = eval_parser().parse_args(
        ["eval", "gaia", "--data", "d", "--limit", "5", "--config", "c.yaml", "--out", "o.jsonl"]
    )
    assert (args.benchmark, args.data, args.limit, args.sub_config, args.out) == (
        "gaia",
        "d",
        5,
        "c.yaml",
        "o.jsonl",
    )
    assert args.no_library is False and args.handler is cmd_eval
    args = eval_parser().parse_args(["eval", "tabmwp", "--data", "d", "--no-library"])
    assert args.no_library is True
    with pytest.raises(SystemExit):
        eval_parser().parse_args(["eval", "gsm8k", "--data", "d"])


def test_eval_help_lists_the_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        eval_parser().parse_args(["eval", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "{gaia,math,tabmwp}" in out and "--no-library" in out and "--data" in out


def test_cmd_eval_reports_unreadable_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dynagraph.graphs.settings import load_settings

    args = eval_parser().parse_args(["eval", "math", "--data", str(tmp_path / "missing")])
    assert cmd_eval(args, load_settings(None)) == 2
    assert "MATH data not found" in capsys.readouterr().err
    assert summary_path(Path("x/r.jsonl")) == Path("x/r.summary.json")


MATH_LINE = '{"id": "a", "problem": "1+1?", "answer": "2"}\n'


@pytest.mark.parametrize(
    ("benchmark", "data", "out", "expected"),
    [
        ("math", b"\xff\xfe not utf-8", None, "not UTF-8"),
        ("math", b"[1, 2]\n", None, "is not math data as expected"),
        ("tabmwp", None, None, "cannot read"),  # a missing .json: the suffix was checked first
        ("tabmwp", b"question,table,answer\nonly one\n", "csv", "is not tabmwp data as expected"),
        ("math", MATH_LINE.encode(), "folder", "not a regular file"),
        ("math", MATH_LINE.encode(), b'{"status": "done"}\n', "not an eval result (no id)"),
        ("math", MATH_LINE.encode(), b"\xff\n", "not a results file (not UTF-8)"),
        ("math", MATH_LINE.encode(), b'{"id": "a", "status": "done"}\n', "no benchmark"),
    ],
    ids=["data not utf-8", "jsonl not objects", "missing json", "short csv row", "out folder",
         "out without id", "out not utf-8", "out from batch"],
)  # fmt: skip
def test_cmd_eval_refuses_bad_data_and_results_files_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], benchmark, data, out, expected
) -> None:
    """Each of these was a traceback (an attack): now one line, exit 2, no task run, nothing
    written."""
    from dynagraph.graphs.settings import load_settings

    suffix = {"tabmwp": ".csv" if out == "csv" else ".json", "math": ".jsonl"}[benchmark]
    path = tmp_path / f"data{suffix}"
    if data is not None:
        path.write_bytes(data)
    results = tmp_path / "r.jsonl"
    if out == "folder":
        results.mkdir()
    elif isinstance(out, bytes):
        results.write_bytes(out)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["eval", benchmark, "--data", str(path), "--out", str(results)]
    assert cmd_eval(eval_parser().parse_args(argv), load_settings(None)) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dynagraph: ") and expected in last and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_eval_limit_must_be_at_least_one(limit: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        eval_parser().parse_args(["eval", "math", "--data", "d", "--limit", limit])
    assert exit_info.value.code == 2 and "--limit" in capsys.readouterr().err


REUSE_CELL = '''
def multiply_numbers(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b

print(multiply_numbers(17, 23))
'''


@pytest.mark.timeout(180)
def test_cmd_eval_end_to_end_with_the_real_graph(
    stub_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dynagraph eval`` through ``run_task``: real graph, kernel and library; the model's
    replies are scripted on the loopback stub. The second task calls the function the first
    one made, so reuse and coverage come from the real executor's step records."""
    from dynagraph.graphs.settings import load_settings

    from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

    data = tmp_path / "two.csv"
    write_craft_csv(
        data,
        [
            {
                "question": "17 times 23?",
                "answer": "391",
                "table": "a | 1",
                "level": "4",
                "tool_id": "1",
            },
            {
                "question": "3 times 4?",
                "answer": "12",
                "table": "a | 1",
                "level": "5",
                "tool_id": "2",
            },
        ],
    )
    stub = stub_env["stub"]
    stub.script(
        "planner",
        [
            planner_step("Multiply 17 by 23."),
            planner_answer("391"),
            planner_step("Multiply 3 by 4 with multiply_numbers."),
            planner_answer("13"),
        ],
    )
    stub.script("coder", [coder_cell(REUSE_CELL), coder_cell("print(multiply_numbers(3, 4))")])
    config = write_stub_config(tmp_path / "c.yaml", stub_env["base_url"], stub_env["home"])
    out = tmp_path / "r.jsonl"
    args = eval_parser().parse_args(
        ["eval", "tabmwp", "--data", str(data), "--out", str(out), "--config", str(config), "-q"]
    )
    assert cmd_eval(args, load_settings(args.sub_config)) == 0

    first, second = (json.loads(line) for line in out.read_text(encoding="utf-8").splitlines())
    assert (first["correct"], second["correct"]) == (True, False)
    assert first["functions_created"] == ["multiply_numbers"] and first["coverage"] == 0.0
    assert second["functions_reused"] == ["multiply_numbers"] and second["coverage"] == 1.0
    assert first["tokens"]["planner"]["calls"] == 2 and first["use_library"] is True
    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert summary["accuracy"] == 0.5 and summary["reuse_rate"] == 0.5
    assert summary["per_level"]["4"]["accuracy"] == 1.0
    printed = capsys.readouterr().out
    assert "50.0% (1/2)" in printed and "coverage" in printed


def test_cmd_eval_with_a_library_that_cannot_be_opened_stops_at_once(
    tmp_path: Path, stub_env, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--library`` naming a folder failed every task alike, recorded each as an error and
    exited 0 (an attack): it stops with one line, exit 2, and writes no result."""
    from dynagraph.graphs.settings import load_settings

    from tests.support.config import planner_step, write_stub_config

    stub_env["stub"].script("planner", [planner_step("Add.")] * 2)
    config = write_stub_config(tmp_path / "c.yaml", stub_env["base_url"], stub_env["home"])
    data = tmp_path / "m.jsonl"
    data.write_text(MATH_LINE + MATH_LINE.replace('"a"', '"b"'), encoding="utf-8")
    results = tmp_path / "r.jsonl"
    argv = ["eval", "math", "--data", str(data), "--out", str(results), "--library", str(tmp_path)]
    assert cmd_eval(eval_parser().parse_args(argv), load_settings(config)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("dynagraph: ") and "library" in last, last
    assert not results.exists()
