"""A task folder shown to a kernel that was started before the task existed.

Why: under bubblewrap a kernel's bind mounts are fixed when its sandbox starts, so a kernel kept
warm between tasks (the librarian's scratch kernel) cannot be given the next task's folder by a
bind. Instead it is started with a private *view* folder bound at the path of the folder that
holds the tasks' folders; to show it one task, :func:`mirror_folder` fills the view with that
task's folder, so the kernel finds the task's files at the very paths they had during the task
(a recorded call's ``"/.../runs/<thread>/data.csv"`` argument resolves), and no other task's.

Files are hard links (instant, no copy; a write into an existing file reaches the task's file,
as a writable bind of the task's folder did), copies where the view is on another file system,
up to a bound; a folder too big to mirror is reported, and the caller starts a kernel with a
direct bind instead. New files a kernel writes stay in the view, which is emptied after use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: At most this many files and folders are mirrored into one view.
MAX_ENTRIES = 10_000
#: At most this many bytes are copied (hard links cost nothing and are not counted).
MAX_COPY_BYTES = 256 * 1024 * 1024


class TooBigToMirror(Exception):
    """The folder holds more than a view takes; nothing is left in the view."""


def mirror_folder(
    source: Path,
    target: Path,
    *,
    max_entries: int = MAX_ENTRIES,
    max_copy_bytes: int = MAX_COPY_BYTES,
) -> None:
    """Fill ``target`` (created; must not exist) with ``source``'s tree: folders made, files
    hard-linked (copied when linking fails), symbolic links copied as links. Raises
    :class:`TooBigToMirror` (and removes ``target``) past either bound."""
    entries = 0
    copied = 0
    try:
        for folder, dirs, files in os.walk(source, followlinks=False):
            rel = Path(folder).relative_to(source)
            (target / rel).mkdir(parents=True, exist_ok=rel != Path("."))
            entries += len(dirs) + len(files)
            if entries > max_entries:
                raise TooBigToMirror(f"{source} holds more than {max_entries} entries")
            for name in [*files, *(d for d in dirs if (Path(folder) / d).is_symlink())]:
                src, dst = Path(folder) / name, target / rel / name
                if src.is_symlink():
                    os.symlink(os.readlink(src), dst)
                    continue
                try:
                    os.link(src, dst)
                except OSError:  # another file system, or links refused: copy, within the bound
                    copied += src.stat().st_size
                    if copied > max_copy_bytes:
                        raise TooBigToMirror(
                            f"{source} needs more than {max_copy_bytes} bytes copied"
                        ) from None
                    shutil.copy2(src, dst)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
