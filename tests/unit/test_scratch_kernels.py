"""The librarian's scratch kernel kept warm between tasks (graphs/scratch.py), with real kernels:
the next task's verifier gets the same kernel, reset, shown only its own task's folder; the view
a kept kernel sees is filled by hard links and emptied after use (tools/kernel/views.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dynagraph.tools.kernel import reaper
from dynagraph.tools.kernel.views import TooBigToMirror, mirror_folder

from tests.support.sandbox import needs_bwrap

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def make_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``make_services(sandbox, reuse=20)``: Services (no warm pool) closed after the test, whose
    kernels must all be gone by then (reaper.drain)."""
    from dynagraph.graphs.services import Services
    from dynagraph.graphs.settings import load_settings

    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))
    made = []

    def make(sandbox: str, reuse: int = 20):
        settings = load_settings(
            None,
            **{
                "executor.sandbox": sandbox,
                "executor.pool_size": 0,
                "librarian.scratch_reuse": reuse,
            },
        )
        made.append(Services(settings))
        return made[-1]

    yield make
    for services in made:
        services.close()
    assert reaper.drain()


def _task(services, thread: str, files: dict[str, str]) -> Path:
    folder = services.workdir_for(thread)
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _verifier(services, cwd: Path):
    from dynagraph.tools.librarian.scratch import ScratchVerifier

    return ScratchVerifier(services.scratch_kernel, cwd=cwd, release=services.release_scratch)


READ = "def read_text(path):\n    return open(path).read()\n"


@pytest.mark.parametrize("sandbox", [pytest.param("bwrap", marks=needs_bwrap), "none"])
def test_the_next_task_gets_the_same_kernel_reset_and_in_its_own_folder(
    make_services, sandbox: str
) -> None:
    services = make_services(sandbox)
    first = _task(services, "task-a", {"a.txt": "from a"})
    second = _task(services, "task-b", {"b.txt": "from b"})
    with _verifier(services, first) as v:
        report = v.check("read_text", [READ], [])
        assert report.define_error is None
        kernel = v.session()
        assert kernel.sandbox == sandbox
        assert kernel.execute("read_text('a.txt')").result == "'from a'"
        kernel.execute("leftover = 1")
        kernel.execute("import email.mime.text, statistics")  # new modules: still clean
        assert not kernel.execute("read_text('no-such-file')").ok()  # a call that raises
    with _verifier(services, second) as v:
        assert v.session() is kernel  # kept warm: no new start
        names = kernel.execute("sorted(k for k in ('read_text', 'leftover') if k in globals())")
        assert names.result == "[]"  # the earlier task's names are gone
        assert kernel.execute("open('b.txt').read()").result == "'from b'"
        absolute = kernel.execute(f"open({str(second / 'b.txt')!r}).read()")
        assert absolute.result == "'from b'"  # at its own path
        if sandbox == "bwrap":  # the earlier task's folder is out of sight
            seen = kernel.execute(f"__import__('os').path.exists({str(first)!r})")
            assert seen.result == "False"
    services.close()
    assert reaper.drain()
    assert not kernel.is_alive()
    assert not list((services.scratch.runs / ".scratch-views").glob("*/*"))


@needs_bwrap
def test_the_view_is_emptied_and_new_files_stay_out_of_the_task_folder(make_services) -> None:
    services = make_services("bwrap")
    task = _task(services, "task-a", {"data.txt": "41"})
    with _verifier(services, task) as v:
        kernel = v.session()
        assert kernel.execute("open('made-by-replay.txt', 'w').write('x')").ok()
        planted = services.workdir_for("a-later-task") / "helper.py"  # beside the task's
        assert kernel.execute(
            f"import os; os.makedirs({str(planted.parent)!r}); "
            f"open({str(planted)!r}, 'w').write('planted')"
        ).ok()
        views = list((services.scratch.runs / ".scratch-views").glob("*/task-a"))
        assert len(views) == 1 and (views[0] / "made-by-replay.txt").exists()
    assert not any(views[0].parent.iterdir())  # released: the whole view is empty again
    assert not planted.exists()
    assert not (task / "made-by-replay.txt").exists()
    assert (task / "data.txt").read_text() == "41"


@needs_bwrap
def test_a_pooled_tasks_linked_folder_is_shown_through_its_link_and_its_slot(make_services) -> None:
    """Under bubblewrap a pooled task's folder is a link to its kernel's slot
    (tools/kernel/pool.py); the kept kernel finds the files through both paths."""
    services = make_services("bwrap")
    plain = _task(services, "task-a", {"a.txt": "from a"})
    slot = services.scratch.runs / ".kernel-pool" / "slot-1"
    slot.mkdir(parents=True)
    (slot / "p.txt").write_text("from the slot")
    linked = services.workdir_for("task-p")
    linked.symlink_to(slot, target_is_directory=True)
    with _verifier(services, plain) as v:
        kernel = v.session()
    with _verifier(services, linked) as v:
        assert v.session() is kernel
        for path in ("p.txt", str(linked / "p.txt"), str(slot / "p.txt")):
            assert kernel.execute(f"open({path!r}).read()").result == "'from the slot'"
        assert kernel.execute(f"__import__('os').path.exists({str(plain)!r})").result == "False"
    assert not any(services.scratch.runs.glob(".scratch-views/*/task-p"))


def test_a_kernel_whose_modules_a_replay_patched_is_not_kept(make_services) -> None:
    """A replay that replaces a module's value (json.dumps, builtins.abs) could sway a later
    task's checks in the same kernel: that kernel is not kept."""
    services = make_services("none")
    task = _task(services, "task-a", {})
    for patch in (
        "import json; json.dumps = lambda *a, **k: 'planted'",
        "import builtins; builtins.abs = lambda x: 0",
    ):
        with _verifier(services, task) as v:
            kernel = v.session()
            assert kernel.execute(patch).ok()
        with _verifier(services, task) as v:
            assert v.session() is not kernel  # a fresh kernel, not the patched one
            assert v.session().execute("import json; json.dumps(1)").result == "'1'"


def test_scratch_reuse_one_starts_a_kernel_per_task(make_services) -> None:
    services = make_services("none", reuse=1)
    first = _task(services, "task-a", {})
    second = _task(services, "task-b", {})
    with _verifier(services, first) as v:
        kernel = v.session()
    with _verifier(services, second) as v:
        assert v.session() is not kernel
    assert reaper.drain()
    assert not kernel.is_alive()


def test_a_kept_kernel_that_died_while_idle_is_replaced(make_services) -> None:
    services = make_services("none")
    task = _task(services, "task-a", {})
    with _verifier(services, task) as v:
        kernel = v.session()
    kernel.shutdown()  # gone between two tasks, as a killed process would be
    with _verifier(services, task) as v:
        assert v.session() is not kernel
        assert v.check("read_text", [READ], []).define_error is None


def test_a_dead_kernel_is_not_kept(make_services) -> None:
    services = make_services("none")
    task = _task(services, "task-a", {})
    with _verifier(services, task) as v:
        kernel = v.session()
        kernel.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", timeout=10)
        kernel.shutdown()
    with _verifier(services, task) as v:
        assert v.session() is not kernel and v.session().is_alive()


# -- the view's filling -------------------------------------------------------------------------


def test_mirror_links_files_and_keeps_links(tmp_path: Path) -> None:
    source = tmp_path / "task"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "data.csv").write_text("a,b\n")
    (source / "link").symlink_to("sub/data.csv")
    mirror_folder(source, tmp_path / "view")
    copy = tmp_path / "view" / "sub" / "data.csv"
    assert copy.read_text() == "a,b\n"
    assert os.stat(copy).st_ino == os.stat(source / "sub" / "data.csv").st_ino  # a hard link
    assert os.readlink(tmp_path / "view" / "link") == "sub/data.csv"


def test_mirror_refuses_past_its_bounds_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "task"
    source.mkdir()
    for i in range(3):
        (source / f"f{i}.txt").write_text("x" * 100)
    with pytest.raises(TooBigToMirror):
        mirror_folder(source, tmp_path / "view", max_entries=2)
    assert not (tmp_path / "view").exists()

    def no_links(*args: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)  # another file system: files are copied
    mirror_folder(source, tmp_path / "copied", max_copy_bytes=300)
    assert (tmp_path / "copied" / "f2.txt").read_text() == "x" * 100
    with pytest.raises(TooBigToMirror):
        mirror_folder(source, tmp_path / "too-much", max_copy_bytes=250)
    assert not (tmp_path / "too-much").exists()
