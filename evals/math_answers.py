r"""MATH answers: take the ``\boxed{}`` answer out of a solution, normalize it, compare.

Normalization follows the equivalence check released with the MATH dataset (Hendrycks et al.):
dollars, spaces, ``\left``/``\right``, ``\!``, degrees, ``\%``, trailing ``\text{units}`` and a
leading ``x =`` go; ``\dfrac``/``\tfrac`` become ``\frac`` and shorthand ``\frac12`` becomes
``\frac{1}{2}``; ``a/b`` becomes ``\frac{a}{b}``. On top of that, two answers that both parse as
numbers (integers, decimals, fractions, ``1,000``) are equal when their values are, so ``0.5``,
``1/2`` and ``\frac{1}{2}`` agree; tuples and intervals compare element by element (brackets
must match), a bare comma list of solutions in any order; and two expressions that both parse
(LaTeX ``\frac``, ``\sqrt``, ``^``, ``\cdot``, ``\pi`` translated) are equal when sympy
simplifies their difference to zero, so ``1+x^2`` matches ``x^2+1`` but ``x*2 + 1`` does not.
Expressions with words (``yes``, ``Monday``) are never parsed as products of symbols.

:func:`answers_match` is the one matcher the benches use too (bench/replay_craft.py): MATH
equality, then a text comparison that keeps operators, and optionally any number of a sentence.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction


def last_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (or ``\fbox{...}``, or ``\boxed x``) in
    ``text``, braces balanced; None when there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    brace = rest.find("{")
    head = rest[: brace if brace >= 0 else len(rest)]
    if brace < 0 or head.strip() not in ("\\boxed", "\\fbox"):
        match = re.match(r"\\boxed\s+([^\s$]+)", rest)
        return match.group(1) if match else None
    depth = 0
    for i in range(brace, len(rest)):
        if rest[i] == "{":
            depth += 1
        elif rest[i] == "}":
            depth -= 1
            if depth == 0:
                return rest[brace + 1 : i]
    return None


def extract_answer(text: str | None) -> str:
    """The answer in a model's reply: its last boxed content, else the reply itself."""
    if text is None:
        return ""
    boxed = last_boxed(str(text))
    return boxed if boxed is not None else str(text).strip()


def _fix_fracs(text: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{2}`` -> ``\frac{1}{2}``."""
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part.startswith("{") or len(part) < 2:
            out += part
            continue
        a, b = part[0], part[1]
        if b == "{":
            out += "{" + a + "}" + part[1:]
        else:
            out += "{" + a + "}{" + b + "}" + part[2:]
    return out


def _fix_slash(text: str) -> str:
    match = re.fullmatch(r"(-?\d+)/(\d+)", text)
    return f"\\frac{{{match.group(1)}}}{{{match.group(2)}}}" if match else text


def _fix_sqrt(text: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)


def _remove_right_units(text: str) -> str:
    if "\\text{ " in text:
        return text.split("\\text{ ")[0]
    return re.sub(r"\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z\s.^]*\}$", "", text)


def normalize_math(text: str) -> str:
    """The MATH normal form of an answer (string rules only; see :func:`math_equal`)."""
    s = str(text).strip().replace("\n", "")
    s = s.rstrip(".")
    s = s.replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "")
    s = _remove_right_units(s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    head, eq, tail = s.partition("=")
    if eq and len(head.strip()) <= 2 and "=" not in tail:
        s = tail
    s = _fix_sqrt(s)
    s = s.replace(" ", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_slash(s)


_FRAC = re.compile(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}")


def parse_number(text: str) -> Fraction | float | None:
    r"""The value of a normalized answer that is a plain number: ``12``, ``-3.5``, ``1,000``,
    ``\frac{3}{4}``, ``-\frac{3}{4}``, ``3/4``; None otherwise."""
    s = text.strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    match = _FRAC.fullmatch(s) or re.fullmatch(r"(-?)([\d.]+)/([\d.]+)", s)
    try:
        if match:
            value = Fraction(match.group(2)) / Fraction(match.group(3))
            return -value if match.group(1) else value
        if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def numbers_equal(a: Fraction | float, b: Fraction | float) -> bool:
    """Exact for fractions; relative 1e-6 so a rounded decimal of a fraction still agrees."""
    if a == b:
        return True
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def math_equal(answer: str | None, expected: str) -> bool:
    """Whether a model's answer (boxed or plain) matches the expected MATH answer."""
    if answer is None:
        return False
    got = normalize_math(_drop_plain_units(extract_answer(answer)))
    want = normalize_math(_drop_plain_units(str(expected)))
    return _equal_normalized(got, want)


def _equal_normalized(got: str, want: str, depth: int = 0) -> bool:
    if got == want:
        return True
    got_num, want_num = parse_number(got), parse_number(want)
    if got_num is not None and want_num is not None:
        return numbers_equal(got_num, want_num)
    if depth < 3:
        listed = _sequences_equal(got, want, depth)
        if listed is not None:
            return listed
    return symbolic_equal(got, want)


_UNIT_TAIL = re.compile(r"^\s*(-?\$?[\d.,]+%?)\s+[A-Za-z][A-Za-z ]*\.?\s*$")


def _drop_plain_units(text: str) -> str:
    r"""``12 cm`` -> ``12``, ``5 square meters`` -> ``5`` (MATH drops ``\text{ units}``)."""
    match = _UNIT_TAIL.match(str(text))
    return match.group(1) if match else str(text)


def _split_top(text: str) -> list[str]:
    """``text`` split at commas outside brackets and braces."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _sequences_equal(got: str, want: str, depth: int) -> bool | None:
    """Tuples and intervals (brackets must be the same, elements in order) or bare lists of
    solutions (any order); None when neither side is one."""
    bracketed = re.compile(r"^([(\[])(.*)([)\]])$")
    g, w = bracketed.match(got), bracketed.match(want)
    if g and w and "," in g.group(2) and "," in w.group(2):
        if (g.group(1), g.group(3)) != (w.group(1), w.group(3)):
            return False
        a, b = _split_top(g.group(2)), _split_top(w.group(2))
        return len(a) == len(b) and all(
            _equal_normalized(x, y, depth + 1) for x, y in zip(a, b, strict=True)
        )
    a, b = _split_top(got), _split_top(want)
    if len(a) < 2 or len(a) != len(b) or g or w:
        return None
    unmatched = list(b)
    for x in a:
        found = next((y for y in unmatched if _equal_normalized(x, y, depth + 1)), None)
        if found is None:
            return False
        unmatched.remove(found)
    return True


# -- symbolic equality --------------------------------------------------------------------------
_KNOWN_WORDS = ("sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp", "oo")
_MAX_SYMBOLIC_CHARS = 200


def _brace_group(text: str, start: int) -> tuple[str, int] | None:
    """The content of the ``{...}`` group opening at ``start`` and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i], i + 1
    return None


def latex_to_sympy(text: str) -> str | None:
    r"""A normalized answer as a sympy expression string: ``\frac{a}{b}`` -> ``((a)/(b))``,
    ``\sqrt{x}`` / ``\sqrt[n]{x}``, ``^``, ``\cdot``, ``\times``, ``\pi``; None when it has
    LaTeX left that this does not translate."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("\\frac", i):
            first = _brace_group(text, i + 5)
            second = _brace_group(text, first[1]) if first else None
            if not (first and second):
                return None
            a, b = latex_to_sympy(first[0]), latex_to_sympy(second[0])
            if a is None or b is None:
                return None
            out, i = out + f"(({a})/({b}))", second[1]
        elif text.startswith("\\sqrt", i):
            j, root = i + 5, "2"
            if j < len(text) and text[j] == "[":
                close = text.find("]", j)
                if close < 0:
                    return None
                root, j = text[j + 1 : close], close + 1
            group = _brace_group(text, j)
            inner = latex_to_sympy(group[0]) if group else None
            if inner is None or group is None:
                return None
            out, i = out + f"(({inner})**(1/({root})))", group[1]
        else:
            out += text[i]
            i += 1
    out = out.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "(pi)")
    out = out.replace("{", "(").replace("}", ")").replace("^", "**")
    return None if "\\" in out else out


def symbolic_equal(got: str, want: str) -> bool:
    """Both normalized answers parse as expressions and sympy finds them equal."""
    exprs = []
    for text in (got, want):
        if not text or len(text) > _MAX_SYMBOLIC_CHARS or "=" in text:
            return False
        code = latex_to_sympy(text)
        if code is None:
            return False
        bare = code
        for word in _KNOWN_WORDS:
            bare = bare.replace(word, "")
        if re.search(r"[A-Za-z]{2,}", bare):  # words, not products of one-letter symbols
            return False
        exprs.append(code)
    try:
        import sympy
        from sympy.parsing.sympy_parser import (
            implicit_multiplication_application,
            parse_expr,
            standard_transformations,
        )

        steps = (*standard_transformations, implicit_multiplication_application)
        a, b = (parse_expr(e, transformations=steps, evaluate=True) for e in exprs)
        difference = sympy.simplify(a - b)
        return bool(difference == 0)
    except Exception:  # does not parse, or sympy cannot decide: not equal
        return False


# -- one matcher for benches and evals ----------------------------------------------------------
_NUMBER_IN_TEXT = re.compile(r"-?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:/\d+(?:\.\d+)?)?")
_WRAPPER = re.compile(r"^(?:np|numpy)\.\w+\((.*)\)$")  # np.float64(5224.0), as numpy 2 shows


def normalize_text(text: str) -> str:
    """Text compared as text: lower case, spaces collapsed, outer punctuation dropped; operators
    are kept (``x*2`` is not ``x^2``)."""
    text = re.sub(r"\s+", " ", str(text).strip().lower())
    return text.strip(" .!?;:'\"")


def answers_match(predicted: object, expected: object, *, lenient: bool = False) -> bool:
    """Whether a predicted answer matches the expected one, for MATH and table problems alike:
    :func:`math_equal` (numbers by value, ``$``, ``%``, units, thousands separators, fractions,
    tuples, symbolic equality), else equal text. ``lenient``: a sentence whose numbers include
    the expected number also matches ("Alec needs $0.94 to buy ...")."""
    if predicted is None or not str(predicted).strip():
        return False
    got, want = str(predicted).strip(), str(expected).strip()
    unwrapped = _WRAPPER.match(got)
    got = unwrapped.group(1) if unwrapped else got
    if math_equal(got, want) or normalize_text(got) == normalize_text(want):
        return True
    if lenient:
        gold = parse_number(normalize_math(want))
        if gold is not None:
            for token in _NUMBER_IN_TEXT.findall(got.replace("$", "")):
                value = parse_number(normalize_math(token))
                if value is not None and numbers_equal(value, gold):
                    return True
    return False
