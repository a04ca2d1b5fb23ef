"""evals/math_answers.py: the one answer matcher of benches and evals, on MATH's grading
conventions (Hendrycks et al.'s equivalence check: boxed answers, ``\\frac``/``\\dfrac``,
``\\sqrt``, ``\\%``, ``\\$``, units, degrees, thousands separators, ``x =``) plus the cases
issue 15 found wrong: numbers by value, tuples and intervals, symbolic equality."""

from __future__ import annotations

import pytest
from dynagraph.evals.math_answers import answers_match, latex_to_sympy, math_equal


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("7/3", "\\frac{7}{3}"),
        ("64\\%", "64.0"),
        ("64%", "64"),
        ("\\$18.90", "18.9"),
        ("\\boxed{\\dfrac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        ("1+x^2", "x^2+1"),
        ("2(x+1)", "2x+2"),
        ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
        ("10,000", "10000"),
        ("12 cm", "12"),
        ("5\\text{ inches}", "5"),
        ("90^\\circ", "90"),
        ("(1, \\frac{1}{2})", "(1,0.5)"),
        ("[-2, 3)", "[-2,3)"),
        ("3, -1", "-1, 3"),  # a list of solutions, any order
        ("x = -4", "-4"),
        ("\\pi r^2", "r^2\\pi"),
        ("2^{10}", "1024"),
    ],
)
def test_equal_under_math_conventions(answer: str, expected: str) -> None:
    assert math_equal(answer, expected), (answer, expected)
    assert answers_match(answer, expected)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("x*2 + 1", "x^2+1"),  # the text comparison used to drop ^ and *
        ("x^2", "x^3"),
        ("(1, 2)", "[1, 2]"),  # an open interval is not a closed one
        ("(1, 2)", "(2, 1)"),  # a tuple's order counts
        ("\\frac{7}{3}", "7/4"),
        ("0.33", "\\frac{1}{3}"),
        ("yes", "yse"),  # words are not products of symbols
        ("\\sqrt{2}", "2"),
        ("1, 2, 3", "1, 2"),
        ("", "0"),
    ],
)
def test_not_equal(answer: str, expected: str) -> None:
    assert not math_equal(answer, expected), (answer, expected)
    assert not answers_match(answer, expected)


def test_table_answers_text_numbers_and_sentences() -> None:
    assert answers_match("np.float64(5224.0)", 5224)
    assert answers_match("Sophia", "sophia")
    assert answers_match("$1,234.50", "1234.5")
    assert not answers_match("Alec needs $0.94 to buy the pen.", "0.94")
    assert answers_match("Alec needs $0.94 to buy the pen.", "0.94", lenient=True)
    assert not answers_match("There are 20 pens in 4 boxes", "5", lenient=True)
    assert not answers_match(None, "1")


@pytest.mark.parametrize(
    ("answer", "expected", "strict", "lenient"),
    [
        ("1,234", 1234.0, True, True),
        ("$5,224.00", 5224.0, True, True),
        ("3/14", 0.2142857143, True, True),
        ("np.int64(21)", 21.0, True, True),
        ("0.21", 0.2142857143, False, False),
        ("There are 20 pens in 4 boxes.", 20.0, False, True),
        ("Yes!", "yes", True, True),
        ("", 0.0, False, False),
    ],
)
def test_replayed_table_answers(answer: str, expected: object, strict: bool, lenient: bool) -> None:
    """Answers as GPT-4's replayed CRAFT cells print them (bench/replay_craft.py)."""
    assert answers_match(answer, expected) is strict
    assert answers_match(answer, expected, lenient=True) is lenient


def test_latex_translation() -> None:
    assert latex_to_sympy("\\frac{\\sqrt[3]{x}}{2}") == "((((x)**(1/(3))))/(2))"
    assert latex_to_sympy("\\frac{1}") is None
    assert latex_to_sympy("\\begin{pmatrix}1\\end{pmatrix}") is None
