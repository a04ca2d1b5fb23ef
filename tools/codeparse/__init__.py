"""Static analysis of code cells: which functions a cell defines, what each one needs to be
re-defined elsewhere, and a hash that says when two functions are the same.

The executor calls :func:`extract_functions` on every cell that succeeded; the librarian uses
:func:`normalized_hash` to find exact duplicates and :func:`is_specific` to spot functions that
are too tied to one task. Everything here is pure Python (``ast``, ``symtable``, ``tokenize``):
no kernel, no model.

Decisions worth knowing:

- **IPython cells.** Line magics (``%time``), shell escapes (``!ls``, ``x = !ls``), help lines
  (``obj?``) and the cell-magic header line (``%%time``) are removed before parsing; a magic
  inside an indented block becomes ``pass`` so the block stays valid. A cell whose magic runs
  another language (``%%bash``) has no Python and yields nothing. Extracted ``code`` and
  ``globals`` keep magic lines as written (library code is always run by an IPython kernel).
- **Syntax errors.** :func:`extract_functions`, :func:`function_names` and :func:`defined_names`
  return empty results for a cell that does not parse (the executor only calls them on cells the
  kernel accepted, so this is a corner case, not an error path). :func:`normalized_hash` raises
  :class:`CodeParseError`, because a hash of nothing would make unrelated code "equal".
- **Normalized hash.** Parsed AST (formatting and comments never count); docstrings of the
  module, functions and classes removed; the top-level function's own name replaced by ``_f``,
  including its recursive calls (a renamed copy is a duplicate); its **parameter names are
  kept**, because keyword calls make them part of the interface; every other local name (locals,
  parameters of nested functions and lambdas, comprehension variables, nested def names) is
  renamed ``_v0, _v1, ...`` by first appearance. Global, attribute and keyword-argument names,
  constants, operators, decorators and type annotations are kept.
- **What a function needs.** Names are resolved with ``symtable`` (Python's own scoping rules).
  A name the function reads from module scope is, in this order: one of the cell's top-level
  defs (``calls``), a name bound by a top-level import of the cell (``imports``, reduced to the
  names used, aliases kept), a name bound by another top-level statement of the cell
  (``globals``: assignments, classes, ``try: import`` blocks and statements that mutate the name,
  with their own needs followed transitively), a builtin, a ``known_names`` library function
  (``calls``), or else unresolved (``free_names``: it must come from an earlier cell). An
  unresolved name used as ``name(...)`` is also listed in ``calls``, since it is probably a
  function from elsewhere that the library may know.
"""

from __future__ import annotations

from dynagraph.tools.codeparse.extract import (
    ExtractedFunction,
    class_names,
    defined_names,
    doc_view,
    doc_views,
    extract_functions,
    function_names,
)
from dynagraph.tools.codeparse.normalize import normalized_hash
from dynagraph.tools.codeparse.parse import (
    BUILTIN_NAMES,
    CodeParseError,
    parse_python,
    strip_magics,
)
from dynagraph.tools.codeparse.specificity import is_specific

__all__ = [
    "BUILTIN_NAMES",
    "parse_python",
    "CodeParseError",
    "ExtractedFunction",
    "class_names",
    "defined_names",
    "doc_view",
    "doc_views",
    "extract_functions",
    "function_names",
    "is_specific",
    "normalized_hash",
    "strip_magics",
]
