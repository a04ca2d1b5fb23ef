"""`dynagraph demo`: three recorded tasks through the real graph, kernel and library, with no API
key, no config and no way out to the network."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.support.cli import dynagraph

pytestmark = pytest.mark.timeout(300)


def test_demo_runs_without_key_or_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAGRAPH_", "OPENAI_"))}
    env["DYNAGRAPH_HOME"] = str(tmp_path / "user-home")  # the demo must not touch it
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env[name] = "http://127.0.0.1:9"  # any request leaving the machine would fail
    home = tmp_path / "demo"
    # relative, as the README writes it: kernels start in other folders
    proc = dynagraph("demo", "--home", "demo", env=env, cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "answer: 9  (done)" in out and "answer: 10  (done)" in out and "answer: 2.0" in out
    assert "functions created: count_words; reused: none" in out
    assert "task 2 reused count_words from the library" in out
    assert "task 3 reused count_words from the library" in out
    listed = out.split("== the library")[1].split("== reused")[0]
    for name in ("count_words", "split_sentences", "average_words_per_sentence"):
        assert name in listed
    assert "dynagraph run" in out  # says how to run a real task
    assert "[coder    step 1.1] library hits: count_words" in proc.stderr  # progress, as `run`
    assert "[librarian] count_words: added" in proc.stderr
    # the composed function was stored as calling the reused one
    with sqlite3.connect(home / "library.db") as conn:
        rows = dict(conn.execute("select name, depends_on from functions"))
    assert "count_words" in rows["average_words_per_sentence"]
    assert not (tmp_path / "user-home").exists()


def test_demo_without_a_proxy_prints_no_proxy_warning(tmp_path):
    """With no proxy in the environment the demo sets none of its own: langchain-openai took
    the NO_PROXY it used to set for a proxy setting and warned at every demo."""
    drop = ("DYNAGRAPH_", "OPENAI_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    proc = dynagraph("demo", "--home", str(tmp_path / "demo"), env=env, cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "answer: 2.0" in proc.stdout
    assert "proxy" not in proc.stderr.lower(), proc.stderr
