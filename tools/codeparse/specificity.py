"""Is a function tied to one task (its literals and name words come from the task)?"""

from __future__ import annotations

import ast
import re
import textwrap

from dynagraph.tools.codeparse.extract import ExtractedFunction
from dynagraph.tools.codeparse.normalize import parameter_names, remove_docstrings
from dynagraph.tools.codeparse.parse import FUNCTION_DEFS, parse_python, strip_magics

TRIVIAL_NUMBERS = frozenset({0, 1, 2, -1, 10, 100})
#: Words that name what a tool does rather than what a task is about.
_GENERIC_WORDS_TEXT = """count total number numbers calculate compute find get value values table data list
    item items from with given sum average mean median mode range difference ratio rate
    percent percentage probability frequency each into between than more less above below
    greater most least max min maximum minimum first last time times amount unit units
    column columns row rows stem leaf result results string strings text check filter
    convert parse format make build create extract compare sort order change cost price
    prices quantity quantities series point points interval increase decrease budget"""
GENERIC_WORDS = frozenset(_GENERIC_WORDS_TEXT.split())
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")


def _task_numbers(text: str) -> set[float]:
    return {float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)}


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return [w.lower() for w in re.split(r"[_\W]+|(?<=\D)(?=\d)|(?<=\d)(?=\D)", spaced) if w]


def is_specific(fn: ExtractedFunction, task_text: str = "") -> tuple[bool, list[str]]:
    """Heuristic flags for a function too tied to one task, with a reason per flag.

    Flags: no parameters; numbers or strings of the task text written as constants in the
    body; task words (or task numbers) in the function's name. A first cut, to be calibrated.
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
    task_words = set(re.findall(r"[a-z]+", lowered))
    in_name = [
        w
        for w in _name_words(fn.name)
        if (w.isdigit() and float(w) in numbers and int(w) not in TRIVIAL_NUMBERS)
        or (
            len(w) >= 4
            and w not in GENERIC_WORDS
            and (w in task_words or w.rstrip("s") in task_words or w + "s" in task_words)
        )
    ]
    if in_name:
        reasons.append("name uses words of the task: " + ", ".join(dict.fromkeys(in_name)))
    return bool(reasons), reasons
