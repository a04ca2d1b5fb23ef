"""Capability tags read from a function's code: each tag found where it is, and not elsewhere."""

from __future__ import annotations

import pytest
from dynagraph.tools.capabilities import CAPABILITIES, capabilities_of

CASES = [
    ("def f(t):\n    return t.upper()", [], []),
    ("def f(url):\n    return requests.get(url).text", ["import requests"], ["network"]),
    ("def f(h):\n    import socket\n    return socket.create_connection((h, 80))", [], ["network"]),
    ("def f():\n    return fetch_url('https://example.org')", [], ["network"]),
    ("def f(c):\n    return subprocess.run(c, shell=True)", ["import subprocess"], ["subprocess"]),
    ("def f(c):\n    return os.system(c)", ["import os"], ["subprocess"]),
    ("def f(p, t):\n    open(p, 'w').write(t)", [], ["filesystem-write"]),
    ("def f(p):\n    return open(p).read()", [], []),
    ("def f(p):\n    return open(p, 'rb').read()", [], []),
    ("def f(df, p):\n    df.to_csv(p)", [], ["filesystem-write"]),
    ("def f(p):\n    Path(p).write_text('x')", ["from pathlib import Path"], ["filesystem-write"]),
    ("def f():\n    return dict(os.environ)", ["import os"], ["environment"]),
    ("def f():\n    return getenv('HOME')", ["from os import getenv"], ["environment"]),
    ("def f(pid):\n    return open(f'/proc/{pid}/environ').read()", [], ["environment"]),
    ("def f(s):\n    return eval(s)", [], ["dynamic-code"]),
    ("def f(b):\n    return pickle.loads(b)", ["import pickle"], ["dynamic-code"]),
    ("def f(m):\n    return importlib.import_module(m)", ["import importlib"], ["dynamic-code"]),
    ("def f():\n    return ctypes.CDLL(None)", ["import ctypes"], ["native"]),
    ("def f(c):\n    return o.system(c)", ["import os as o"], ["subprocess"]),
]


@pytest.mark.parametrize(("code", "imports", "expected"), CASES)
def test_capabilities_of(code: str, imports: list[str], expected: list[str]) -> None:
    assert capabilities_of(code, imports) == expected


def test_unreadable_code_gets_every_tag() -> None:
    assert capabilities_of("def f(:\n  pass") == list(CAPABILITIES)


def test_tags_combine_in_a_fixed_order() -> None:
    code = "def f(c, p):\n    os.system(c)\n    open(p, 'a').write(os.environ['X'])"
    assert capabilities_of(code, ["import os"]) == ["subprocess", "filesystem-write", "environment"]
