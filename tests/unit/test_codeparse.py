"""tools.codeparse: extraction of a cell's functions with what they need, and the normalized hash."""

from __future__ import annotations

import ast
import csv
import json
import textwrap
from pathlib import Path

import pytest
from dynagraph.tools.codeparse import (
    CodeParseError,
    defined_names,
    doc_views,
    extract_functions,
    function_names,
    is_specific,
    normalized_hash,
    strip_magics,
)

CRAFT_TOOLS = Path("/work/shared/data/craft-tabmwp/epoch_0/4_valid_tools.csv")


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def only(cell_text: str, name: str, **kwargs):
    found = [f for f in extract_functions(cell_text, **kwargs) if f.name == name]
    assert len(found) == 1, [f.name for f in extract_functions(cell_text, **kwargs)]
    return found[0]


# --------------------------------------------------------------------------- imports


def test_import_aliases_are_kept_and_only_used_imports_attached():
    fn = only(
        cell("""
            import os, sys
            import pandas as pd
            import numpy as np
            import json
            from collections import Counter as C, defaultdict, OrderedDict

            def summarize(df):
                counts = C(df["kind"])
                return pd.Series(counts), np.mean(list(counts.values())), defaultdict(int)
        """),
        "summarize",
    )
    assert fn.imports == [
        "import pandas as pd",
        "import numpy as np",
        "from collections import Counter as C, defaultdict",
    ]
    assert fn.free_names == []


def test_dotted_and_relative_imports_keep_their_form():
    fn = only(
        cell("""
            import os.path
            import xml.etree.ElementTree as ET
            from .sibling import helper_value as hv
            def f(p):
                return os.path.basename(p), ET.fromstring(p), hv
        """),
        "f",
    )
    assert fn.imports == [
        "import os.path",
        "import xml.etree.ElementTree as ET",
        "from .sibling import helper_value as hv",
    ]


def test_imports_used_only_in_annotations_defaults_or_decorators_are_attached():
    fn = only(
        cell("""
            import functools
            import pandas as pd
            from math import pi
            @functools.lru_cache(maxsize=None)
            def area(r: float = pi) -> pd.Series:
                return r
        """),
        "area",
    )
    assert fn.imports == ["import functools", "import pandas as pd", "from math import pi"]


# --------------------------------------------------------------------------- module-level names


def test_module_constant_captured_with_its_dependency_chain_in_source_order():
    fn = only(
        cell("""
            import numpy as np
            RATE = 0.2
            UNRELATED = 99
            BASE = RATE * 10
            SCALE = np.float64(BASE)  # needs numpy too

            def taxed(amount):
                return amount * SCALE + BASE
        """),
        "taxed",
    )
    assert fn.globals == [
        "RATE = 0.2",
        "BASE = RATE * 10",
        "SCALE = np.float64(BASE)",
    ]
    assert fn.imports == ["import numpy as np"]
    assert fn.free_names == []


def test_mutations_of_a_captured_global_are_captured_too():
    text = cell("""
            FRAME = make_frame()
            LOOKUP = {}
            LOOKUP["a"] = 1
            for key in "bc":
                LOOKUP[key] = 2
            LOOKUP.update(d=3)
            FRAME.fillna(0, inplace=True)
            print(LOOKUP)
            LOOKUP.keys()
            FRAME.head()

            def lookup(k):
                return LOOKUP[k]

            def first_row():
                return FRAME.iloc[0]
        """)
    fn = only(text, "lookup")
    assert fn.globals == [
        "LOOKUP = {}",
        'LOOKUP["a"] = 1',
        'for key in "bc":\n    LOOKUP[key] = 2',
        "LOOKUP.update(d=3)",
    ]
    frame_user = only(text, "first_row")
    assert frame_user.globals == ["FRAME = make_frame()", "FRAME.fillna(0, inplace=True)"]
    assert frame_user.calls == frame_user.free_names == ["make_frame"]


def test_a_global_class_and_a_try_import_block_are_captured_as_statements():
    fn = only(
        cell("""
            from dataclasses import dataclass
            try:
                import ujson as json
            except ImportError:
                import json

            @dataclass
            class Point:
                x: int

            def dump(p: Point):
                return json.dumps(p.x)
        """),
        "dump",
    )
    assert fn.imports == ["from dataclasses import dataclass"]
    assert fn.globals[0].startswith("try:\n    import ujson as json")
    assert fn.globals[1] == "@dataclass\nclass Point:\n    x: int"


def test_locals_params_and_builtins_are_not_free_names_but_earlier_cell_names_are():
    fn = only(
        cell("""
            def f(a, *rest, key=None, **kw):
                total = sum(rest) + len(kw)
                squares = [i * i for i in range(a)]
                g = lambda z: z + total
                return max(squares, default=0) + g(a) + from_an_earlier_cell
        """),
        "f",
    )
    assert fn.free_names == ["from_an_earlier_cell"]
    assert fn.calls == []
    assert fn.imports == [] and fn.globals == []


def test_names_resolve_against_what_the_kernel_ran_before_the_cell():
    """A library function's imports and earlier cells are in the kernel: a name the cell uses
    without binding it is resolved there, so the function carries what it needs."""
    hit_imports = "from sympy import symbols, solve\nimport numpy as np"
    earlier = cell("""
        import math as m
        RATE = m.sqrt(4)
        def helper(v):
            return v * RATE
        print(helper(3))
    """)
    fn = only(
        cell("""
            def roots(a, b):
                x = symbols('x')
                return solve(a * x + b, x), m.pi * RATE, helper(a)
        """),
        "roots",
        context=[hit_imports, "this does not parse (", earlier],
        known_names=["lib_fn"],
    )
    assert fn.imports == ["from sympy import symbols, solve", "import math as m"]
    assert fn.globals == ["RATE = m.sqrt(4)"]
    assert fn.calls == ["helper"] and fn.free_names == []
    # only the cell's own functions are extracted, never the context's
    assert [f.name for f in extract_functions("x = 1", context=[earlier])] == []


# --------------------------------------------------------------------------- calls


def test_calls_to_another_cell_function_and_to_a_known_library_function():
    text = cell("""
        def helper(x):
            return x * 2

        def main(x):
            y = helper(x)
            return parse_table(y) + mystery(y)

        def recursive(n):
            return 1 if n <= 1 else n * recursive(n - 1)
    """)
    main = only(text, "main", known_names=["parse_table", "unused_library_fn"])
    assert main.calls == ["helper", "parse_table", "mystery"]
    # An unknown name called like a function is a candidate dependency and still unresolved.
    assert main.free_names == ["mystery"]
    assert only(text, "recursive").calls == []
    # Without known_names, the library function is just an unresolved name.
    assert "parse_table" in only(text, "main").free_names


def test_a_global_that_calls_a_cell_function_makes_it_a_dependency():
    fn = only(
        cell("""
            def make_table():
                return {"a": 1}
            TABLE = make_table()
            def get(k):
                return TABLE[k]
        """),
        "get",
    )
    assert fn.globals == ["TABLE = make_table()"]
    assert fn.calls == ["make_table"]


# --------------------------------------------------------------------------- what is extracted


def test_only_top_level_functions_are_extracted_with_code_signature_docstring():
    text = cell("""
        import functools

        class Shape:
            def area(self):
                return 0

        @functools.cache
        def outer(a: int, b: int = 2) -> int:
            '''Add with a nested helper.'''
            def inner(c):
                return c + 1
            return inner(a) + b

        async def fetch(url: str) -> str:
            return url

        if True:
            def conditional():
                pass
    """)
    fns = extract_functions(text)
    assert [f.name for f in fns] == ["outer", "fetch"]
    outer = fns[0]
    assert outer.code.startswith("@functools.cache\ndef outer(a: int, b: int = 2) -> int:\n")
    assert outer.code.rstrip().endswith("return inner(a) + b")
    assert outer.signature == "(a: int, b: int=2) -> int"
    assert outer.docstring == "Add with a nested helper."
    assert outer.ast_hash == normalized_hash(outer.code)
    assert fns[1].code.startswith("async def fetch(url: str) -> str:")
    assert function_names(text) == ["outer", "fetch"]


def test_a_redefined_function_keeps_its_last_definition():
    fns = extract_functions("def f():\n    return 1\n\ndef f():\n    return 2\n")
    assert [f.code for f in fns] == ["def f():\n    return 2\n"]


DOC_VIEW_CELLS = [
    'def f():\n    return 1\n\ndef f(x: int = 2) -> int:\n    """Second.\n\n    More."""\n    return x\n',
    cell('''
        %time import math
        SCALE = 2

        @decorate
        async def fetch(url: str, *, retries=3) -> bytes:
            """Fetch a URL."""
            return url

        class Shape:
            def area(self):
                return 0

        def scaled(x):
            def inner(y):
                return y
            return inner(x) * SCALE * math.pi
    '''),
    "x = 1\nprint(x)\n",
    "def broken(:\n    pass\n",
]


@pytest.mark.parametrize("text", DOC_VIEW_CELLS)
def test_doc_views_are_the_candidates_views_before_the_cell_runs(text):
    """The executor embeds doc_views(cell) while the cell runs; the librarian later looks up the
    views of the candidates extracted from it (with the kernel's context): the same texts."""
    from dynagraph.tools.librarian.candidate import Candidate

    context = ["import math\nSCALE = 3\n"]
    alone = [Candidate.from_function(f).doc_view() for f in extract_functions(text)]
    in_context = extract_functions(text, context=context, known_names=["decorate"])
    assert doc_views(text) == alone == [Candidate.from_function(f).doc_view() for f in in_context]


def test_doc_views_of_a_cell():
    assert doc_views(DOC_VIEW_CELLS[0]) == ["f(x: int=2) -> int\nSecond.\n\nMore."]
    assert doc_views(DOC_VIEW_CELLS[1]) == [
        "fetch(url: str, *, retries=3) -> bytes\nFetch a URL.",
        "scaled(x)",
    ]
    assert doc_views(DOC_VIEW_CELLS[2]) == doc_views(DOC_VIEW_CELLS[3]) == []


def test_ipython_magics_do_not_break_parsing():
    text = cell("""
        %matplotlib inline
        !pip list
        files = !ls
        import math
        def circle(r):
            %time x = 1
            return math.pi * r * r
        circle?
    """)
    (fn,) = extract_functions(text)
    assert fn.name == "circle" and fn.imports == ["import math"]
    assert "%time x = 1" in fn.code  # kept as written: library code runs in IPython kernels
    ast.parse(strip_magics(fn.code))
    # `files = !ls` is IPython syntax: it is dropped, so it binds nothing the analysis can see.
    assert defined_names(text) == {"math", "circle"}


def test_strip_magics_leaves_python_alone_and_respects_strings_and_brackets():
    python = "x = (10\n     % 3)\ns = '''\n%not a magic\n'''\n"
    assert strip_magics(python) == python
    mixed = "%time 1\ns = '''\n%kept\n'''\ny = (4\n  % 3)\n"
    stripped = strip_magics(mixed)
    assert stripped.splitlines() == ["", "s = '''", "%kept", "'''", "y = (4", "  % 3)"]
    assert strip_magics("%%bash\necho hi\n") == ""
    assert strip_magics("%%time\nx = 1\n").strip() == "x = 1"


def test_syntax_errors_give_empty_results_and_hash_raises():
    assert extract_functions("def broken(:\n    pass") == []
    assert function_names("def broken(:") == []
    assert defined_names("x = = 1") == set()
    with pytest.raises(CodeParseError):
        normalized_hash("def broken(:")


def test_defined_names_covers_every_kind_of_binding():
    text = cell("""
        import numpy as np, os.path
        from x import y as z
        A = B = 1
        C, (D, *E) = 1, (2, 3)
        class K: pass
        def f(): pass
        for i in range(2): pass
        with open("f") as fh: pass
        if (w := 3): pass
    """)
    assert defined_names(text) == {
        "np", "os", "z", "A", "B", "C", "D", "E", "K", "f", "i", "fh", "w",
    }  # fmt: skip


# --------------------------------------------------------------------------- normalized hash

BASE_FN = cell('''
    def scale(values, factor=2):
        """Multiply each value."""
        result = []
        for v in values:
            if v > 0:
                result.append(v * factor + 1)
            else:
                result.append(0)
        return result
''')


def h(code: str) -> str:
    return normalized_hash(cell(code))


def test_hash_ignores_formatting_comments_docstring_and_local_names():
    reformatted = """
        def scale( values,factor = 2 ):
            # a comment
            result=[ ]
            for v in values :
                if v>0 :   result.append( v*factor+1 )
                else:
                    result.append(0)   # zero
            return result
    """
    no_doc_renamed_locals = """
        def scale(values, factor=2):
            out = []
            for item in values:
                if item > 0:
                    out.append(item * factor + 1)
                else:
                    out.append(0)
            return out
    """
    other_name = BASE_FN.replace("def scale(", "def multiply_all(")
    base = normalized_hash(BASE_FN)
    assert len(base) == 64 and int(base, 16) >= 0
    assert h(reformatted) == base
    assert h(no_doc_renamed_locals) == base
    assert normalized_hash(other_name) == base
    assert normalized_hash("    " + BASE_FN.replace("\n", "\n    ")) == base  # indented


@pytest.mark.parametrize(
    "change",
    [
        ("+ 1", "+ 2"),  # a different constant
        ("v * factor + 1", "v * factor - 1"),  # an operator
        ("result.append(0)", "result.append(v)"),  # a changed branch
        ("factor", "k"),  # a renamed parameter (keyword calls see it)
        ("v > 0", "v >= 0"),  # a comparison
        ("result.append(", "result.extend("),  # an attribute
    ],
)
def test_hash_changes_with_behaviour_or_interface(change):
    old, new = change
    assert old in BASE_FN
    assert normalized_hash(BASE_FN.replace(old, new)) != normalized_hash(BASE_FN)


def test_hash_recursion_normalizes_with_the_name_removed():
    fact = "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
    factorial = "def factorial(n):\n    return 1 if n <= 1 else n * factorial(n - 1)\n"
    calls_other = "def fact(n):\n    return 1 if n <= 1 else n * other(n - 1)\n"
    assert normalized_hash(fact) == normalized_hash(factorial)
    assert normalized_hash(fact) != normalized_hash(calls_other)


def test_hash_scoping_nested_functions_lambdas_comprehensions_and_globals():
    a = """
        def f(xs):
            total = 0
            def add(y):
                nonlocal total
                total += y
            [add(x) for x in xs if x]
            key = lambda q: -q
            return sorted(xs, key=key), total, LIMIT
    """
    b = """
        def g(xs):
            acc = 0
            def push(item):
                nonlocal acc
                acc += item
            [push(e) for e in xs if e]
            order = lambda t: -t
            return sorted(xs, key=order), acc, LIMIT
    """
    reads_other_global = a.replace("LIMIT", "MAXIMUM")
    assert h(a) == h(b)
    assert h(a) != h(reads_other_global)


def test_hash_keeps_type_annotations_and_decorators():
    plain = "def f(x):\n    return x\n"
    assert normalized_hash(plain) != normalized_hash("def f(x: int):\n    return x\n")
    assert normalized_hash(plain) != normalized_hash("@cache\ndef f(x):\n    return x\n")


def test_hash_distinguishes_a_local_from_a_global_of_another_name():
    local = "def f(x):\n    y = 1\n    return x + y\n"
    global_ = "def f(x):\n    return x + y\n"
    assert normalized_hash(local) != normalized_hash(global_)


# --------------------------------------------------------------------------- task-specific


def test_is_specific_flags_no_params_task_literals_and_task_numbers():
    task = "How many strings have exactly 74 broken lights? Column 'Stem' and 'Leaf'."
    specific = only(
        cell("""
            def count_strings_with_74_broken_lights():
                rows = [(7, 4), (7, 5)]
                return sum(1 for s, l in rows if s * 10 + l == 74 and "Stem")
        """),
        "count_strings_with_74_broken_lights",
    )
    flagged, reasons = is_specific(specific, task)
    assert flagged
    text = " | ".join(reasons)
    assert "no parameters" in text
    assert "74" in text and "'Stem'" in text
    assert "name uses numbers of the task: 74" in text
    assert "broken" not in text  # task words in a name are not a flag (see below)

    general = only(
        "def count_values_equal(rows, target):\n    return sum(1 for r in rows if r == target)\n",
        "count_values_equal",
    )
    assert is_specific(general, task) == (False, [])
    assert is_specific(specific)[1] == ["takes no parameters"]


MATH_SPECIFICITY = Path(__file__).resolve().parents[1] / "fixtures" / "math-specificity.json"


def test_a_general_helper_named_after_what_the_task_asks_is_not_specific():
    """Calibrated on symbolic math as well as TabMWP: ``evaluate_logarithm`` for "the logarithm
    of 64" shares a word with its task because it does what the task asks."""
    helper = only(
        "import math\ndef evaluate_logarithm(value, base):\n    return math.log(value, base)\n",
        "evaluate_logarithm",
    )
    assert is_specific(helper, "What is the logarithm of 64 in base 2?") == (False, [])
    pairs = json.loads(MATH_SPECIFICITY.read_text(encoding="utf-8"))
    right = 0
    for pair in pairs:
        for column, specific in (("specific", True), ("general", False)):
            (fn,) = extract_functions(pair[column])
            right += is_specific(fn, pair["task"])[0] == specific
    assert right == 2 * len(pairs)  # measured 48/48; name words counted gave 34/48


# --------------------------------------------------------------------------- real data


def craft_rows(limit: int = 25) -> list[dict[str, str]]:
    if not CRAFT_TOOLS.exists():
        pytest.skip(f"{CRAFT_TOOLS} is not present")
    with CRAFT_TOOLS.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))[:limit]


def test_real_craft_code_parses_and_hashes_stably():
    for row in craft_rows():
        for column in ("code", "tool"):
            fns = extract_functions(row[column])
            assert fns, (column, row["code"][:200])
            for fn in fns:
                assert fn.ast_hash == normalized_hash(fn.code)
                assert fn.ast_hash == normalized_hash(fn.code + "\n# trailing comment\n")
                assert fn.signature.startswith("(")
        (code_fn, *_) = [f for f in extract_functions(row["code"]) if f.imports] or [None]
        if code_fn is not None:
            assert all(line.startswith(("import ", "from ")) for line in code_fn.imports)


def test_real_craft_tools_under_their_header_get_exactly_the_imports_they_use():
    # CRAFT's tools carry no imports: CRAFT ran them under this fixed header (see the README).
    header = (
        "import pandas as pd\nimport numpy as np\nimport math\nfrom collections import Counter\n"
    )
    bound = {"pd": "import pandas as pd", "np": "import numpy as np", "math": "import math"}
    bound["Counter"] = "from collections import Counter"
    attached = 0
    for row in craft_rows(150):
        (bare,) = extract_functions(row["tool"])
        assert set(bare.free_names) <= set(bound), bare.free_names
        (fn,) = extract_functions(header + row["tool"])
        assert fn.free_names == [] and fn.globals == []
        body = ast.parse(fn.code).body[0]
        used = {n.id for n in ast.walk(body) if isinstance(n, ast.Name)}
        assert fn.imports == [line for name, line in bound.items() if name in used]
        assert fn.ast_hash == bare.ast_hash
        attached += bool(fn.imports)
    assert attached > 0


def test_is_specific_separates_craft_solutions_from_their_generalized_tools():
    # A loose guard for the first-cut heuristic (measured: 116/150 solutions, 13/150 tools).
    flagged = {"code": 0, "tool": 0}
    rows = craft_rows(150)
    for row in rows:
        task = row["question"] + "\n" + row["table"]
        for column in flagged:
            (fn,) = extract_functions(row[column])
            flagged[column] += is_specific(fn, task)[0]
    assert flagged["code"] >= 0.6 * len(rows)
    assert flagged["tool"] <= 0.25 * len(rows)


def test_the_executor_sends_a_cells_views_then_the_task_and_at_most_its_limit():
    """ExecutorNode.embed_views_ahead: what the librarian will look up, before the cell runs."""
    from types import SimpleNamespace

    from dynagraph.nodes.executor import MAX_VIEWS_AHEAD, ExecutorNode

    sent: list[list[str]] = []
    node = ExecutorNode(SimpleNamespace(embed_ahead=sent.append))  # type: ignore[arg-type]
    many = "".join(f"def f{i}(x):\n    '''Doc {i}.'''\n    return x\n" for i in range(40))
    node.embed_views_ahead({"task": " Sum it. "}, many)  # type: ignore[typeddict-item]
    assert sent == [[*doc_views(many)[:MAX_VIEWS_AHEAD], "Sum it."]]
    node.embed_views_ahead({"task": "Sum it."}, "x = 1\n")  # type: ignore[typeddict-item]
    node.embed_views_ahead({"task": ""}, DOC_VIEW_CELLS[0])  # type: ignore[typeddict-item]
    assert sent[1:] == [doc_views(DOC_VIEW_CELLS[0])]  # no function: nothing sent
    too_deep = "def f(x=" + "1+" * 2000 + "1):\n    return x\n"  # ast.unparse: RecursionError
    surrogate = 'def f():\n    """\ud800"""\n'  # cannot be encoded
    for cell in (too_deep, surrogate):
        node.embed_views_ahead({"task": "t"}, cell)  # type: ignore[typeddict-item]
    assert len(sent) == 2  # a hint that cannot be made is left out; the cell still runs


def test_a_one_line_global_is_cut_by_ast_columns_in_any_line_ending_and_script():
    """One-line statements are cut from the source's lines split once (a cell with a long
    literal was quadratic: ast.get_source_segment splits the whole source at every call); the
    columns are UTF-8 byte offsets, and lines end at \\n, \\r\\n or \\r as ast counts them."""
    for newline in ("\n", "\r\n", "\r"):
        src = newline.join([
            'NAMES = ["é", "ü", "日本"]; LIMIT = 2',
            "def first_names(count):",
            '    """The first names, at most LIMIT."""',
            "    return NAMES[: min(count, LIMIT)]",
            "",
        ])  # fmt: skip
        [fn] = extract_functions(src)
        assert fn.globals == ['NAMES = ["é", "ü", "日本"]', "LIMIT = 2"], repr(newline)
    table = "TABLE = [" + ", ".join(str(i) for i in range(50_000)) + "]"
    [fn] = extract_functions(table + "\n\ndef lookup(i):\n    return TABLE[i]\n")
    assert fn.globals == [table]
