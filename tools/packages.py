"""What the kernel has installed, and what to say when a cell imports a module it lacks.

The default install gives the kernel the scientific stack model-written code imports most
(counted in model-written cells: pandas in 477 of CRAFT TabMWP's 500 GPT-4 solutions, numpy 13,
scipy 3; sympy in 129 of 500 on a symbolic-math CRAFT set): numpy, pandas, scipy, sympy,
matplotlib (pyproject.toml ``dependencies``; nodes/prompts/coder_system.md says so). For
anything else, :func:`missing_module_note` turns a ``ModuleNotFoundError`` into an observation
that names the package to install and how.
"""

from __future__ import annotations

import re

__all__ = ["INSTALLED", "PIP_NAMES", "missing_module_note", "pip_name"]

#: The scientific packages every install provides to the kernel (import names).
INSTALLED: tuple[str, ...] = ("numpy", "pandas", "scipy", "sympy", "matplotlib")

#: Import names whose package on PyPI is called otherwise.
PIP_NAMES: dict[str, str] = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "Crypto": "pycryptodome",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "fitz": "pymupdf",
    "serial": "pyserial",
    "attr": "attrs",
}

_NO_MODULE = re.compile(r"No module named ['\"]([\w.]+)['\"]")


def pip_name(module: str) -> str:
    """The package that provides the top-level module ``module`` (``sklearn.svm`` ->
    ``scikit-learn``)."""
    top = module.split(".")[0]
    return PIP_NAMES.get(top, top.replace("_", "-"))


def missing_module_note(
    error_name: str | None, error_value: str | None, *, network: bool = True
) -> str | None:
    """One line for the observation of a cell that raised ``ModuleNotFoundError``: the package
    and how to install it (``%pip install X`` in a cell when the kernel has network), or what
    is installed when it has none. None for any other error."""
    if error_name != "ModuleNotFoundError" or not error_value:
        return None
    found = _NO_MODULE.search(error_value)
    if found is None:
        return None
    module = found.group(1)
    package = pip_name(module)
    installed = ", ".join(INSTALLED)
    if network:
        return (
            f"[note] Module {module!r} is not installed (package {package!r}). Install it in a "
            f"cell of its own with `%pip install {package}`, then import it again; or use what "
            f"is installed ({installed})."
        )
    return (
        f"[note] Module {module!r} is not installed (package {package!r}) and the kernel has "
        f"no network, so it cannot be installed here: use what is installed ({installed})."
    )
