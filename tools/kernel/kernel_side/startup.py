"""Run silently after every (re)start, before the stream cap and the bootstrap.

Plain tracebacks (half the size of the default ones, and no colours), and a PNG formatter so
that ``display(fig)`` or a cell ending in ``fig`` produces an image under the Agg backend:
registered by name, so matplotlib is imported only if a cell uses it.
"""

from __future__ import annotations

from typing import Any


def install(shell: Any) -> None:
    shell.run_line_magic("xmode", "Plain")

    def png(fig: Any) -> bytes:
        from IPython.core.pylabtools import print_figure

        return print_figure(fig, "png", bbox_inches="tight")

    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", png)
