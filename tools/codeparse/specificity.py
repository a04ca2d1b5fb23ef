"""Is a function tied to one task (its literals and name words come from the task)?"""

from __future__ import annotations

import ast
import re
import textwrap

from dynagraph.tools.codeparse.extract import ExtractedFunction
from dynagraph.tools.codeparse.normalize import parameter_names, remove_docstrings
from dynagraph.tools.codeparse.parse import FUNCTION_DEFS, parse_python, strip_magics

TRIVIAL_NUMBERS = frozenset({0, 1, 2, -1, 10, 100})
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")


def _task_numbers(text: str) -> set[float]:
    return {float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)}


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return [w.lower() for w in re.split(r"[_\W]+|(?<=\D)(?=\d)|(?<=\d)(?=\D)", spaced) if w]


def is_specific(fn: ExtractedFunction, task_text: str = "") -> tuple[bool, list[str]]:
    """Heuristic flags for a function too tied to one task, with a reason per flag.

    Flags: no parameters; numbers or strings of the task text written as constants in the
    body; numbers of the task in the function's name (``count_strings_with_74_lights``).

    Words of the task in the name are *not* a flag: a general helper is named after what it
    does, and the task asks for exactly that (``evaluate_logarithm`` for "the logarithm of 64",
    ``simplify_math_expression`` for "simplify the expression"). Calibrated on two kinds of
    data (bench/librarian.py, bench/README.md): on CRAFT TabMWP (341 specific ``code`` vs
    general ``tool``) counting name words for narrow interfaces gave 0.934 and not counting
    them 0.921; on symbolic math tools (tests/fixtures/math-specificity.json, craft-math)
    counting them gave 0.708 and not counting them 1.000.
    """
    reasons: list[str] = []
    tree = parse_python(strip_magics(textwrap.dedent(fn.code)))
    node = next(n for n in tree.body if isinstance(n, FUNCTION_DEFS))
    if not parameter_names(node.args):
        reasons.append("takes no parameters")
    if not task_text:
        return bool(reasons), reasons
    numbers = _task_numbers(task_text)
    lowered = task_text.lower()
    remove_docstrings(tree)
    copied: list[str] = []
    for const in (n for n in ast.walk(node) if isinstance(n, ast.Constant)):
        value = const.value
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            if value not in TRIVIAL_NUMBERS and float(value) in numbers:
                copied.append(repr(value))
        elif isinstance(value, str) and len(value.strip()) >= 2:
            pattern = r"(?<!\w)" + re.escape(value.strip().lower()) + r"(?!\w)"
            if re.search(pattern, lowered):
                copied.append(repr(value))
    if copied:
        reasons.append("constants copied from the task: " + ", ".join(dict.fromkeys(copied)))
    in_name = [
        w
        for w in _name_words(fn.name)
        if w.isdigit() and float(w) in numbers and int(w) not in TRIVIAL_NUMBERS
    ]
    if in_name:
        reasons.append("name uses numbers of the task: " + ", ".join(dict.fromkeys(in_name)))
    return bool(reasons), reasons
