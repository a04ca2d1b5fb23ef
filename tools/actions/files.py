"""read_file: any common document as text, one page at a time.

Conversion is markitdown's (PDF, DOCX, XLSX/XLS, CSV, PPTX, HTML, EPUB, notebooks, text); JSON is
pretty-printed so it pages at line ends; images give their metadata (format, size, EXIF) through
Pillow, never their bytes (``ask_image`` asks the vision model about them); audio files (mp3, wav,
m4a, ogg, flac) give a transcript from the configured transcription model, through the agent
proxy, or their metadata when none is configured. Paths are relative to the kernel's cwd, the task's working directory.
A failure is one line starting with ``read_file:`` that says what to do instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynagraph.tools.actions._common import (
    ActionError,
    listing_hint,
    markitdown_convert,
    remember,
    render_page,
)
from dynagraph.tools.actions.media import AUDIO_SUFFIXES, audio_text

__all__ = ["read_file"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

_CONVERTED: dict[Any, tuple[str, str | None, str]] = {}


def read_file(path: str, page: int = 1) -> str:
    """Read a document (PDF, DOCX, XLSX/CSV, PPTX, HTML, JSON, text; audio transcript; image metadata) by page."""
    try:
        return _read_file(str(path), int(page))
    except ActionError as exc:
        return f"read_file: {exc}"


def _read_file(path: str, page: int) -> str:
    target = Path(path).expanduser()
    if not target.is_absolute():
        target = Path.cwd() / target
    if not target.exists():
        raise ActionError(f"no file {path!r} in {target.parent} ({listing_hint(target.parent)})")
    call = "read_file(" + repr(path).replace("{", "{{").replace("}", "}}") + ", page={page})"
    if target.is_dir():
        return render_page([f"Directory {target}"], _directory_text(target), page, call)
    stat = target.stat()
    key = (str(target), stat.st_mtime_ns, stat.st_size)
    cached = _CONVERTED.get(key)
    if cached is None:
        cached = remember(_CONVERTED, key, _convert(target, stat.st_size))
    text, title, kind = cached
    if not text.strip():
        raise ActionError(
            f"{path!r} ({stat.st_size} bytes) converted to no text "
            "(an empty file, or a scanned PDF whose pages are images?)"
        )
    header = [f"File: {path} ({stat.st_size} bytes, {kind})"]
    if title:
        header.append(f"Title: {' '.join(str(title).split())}")
    return render_page(header, text, page, call)


def _convert(target: Path, size: int) -> tuple[str, str | None, str]:
    """(text, title, kind) of a file; ``kind`` says how it was read."""
    suffix = target.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _image_text(target, size), None, "image metadata"
    if suffix in AUDIO_SUFFIXES:
        text, kind = audio_text(target, size)
        return text, None, kind
    if suffix == ".json":
        try:
            data = json.loads(target.read_text(encoding="utf-8", errors="replace"))
            return json.dumps(data, indent=2, ensure_ascii=False), None, "JSON"
        except ValueError:
            pass  # not valid JSON: read it as text below
    try:
        text, title = markitdown_convert(str(target))
    except ActionError as exc:
        raise ActionError(
            f"cannot read {target.name!r} ({size} bytes) as text: {exc}; "
            "inspect it in code instead, e.g. open(path, 'rb')"
        ) from None
    return text, title, f"{suffix.lstrip('.') or 'file'} as text"


def _image_text(target: Path, size: int) -> str:
    """Format, size and metadata of an image: what can be said without a vision model."""
    note = (
        f"(pixels are not described: ask_image({target.name!r}, question) asks the vision model, "
        "or analyse it in code, e.g. with PIL)"
    )
    try:
        from PIL import ExifTags, Image
    except ImportError:
        return f"Image file of {size} bytes (install Pillow to see its metadata)\n{note}"
    try:
        with Image.open(target) as image:
            lines = [
                f"Image: {image.format}, {image.width}x{image.height} pixels, mode {image.mode}"
            ]
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                lines.append(f"Frames: {frames}")
            for key, value in image.info.items():
                if key not in ("exif", "icc_profile") and isinstance(value, str | int | float):
                    lines.append(f"{key}: {_short(value)}")
            exif = image.getexif()
            tags = dict(exif.items())
            tags.update(exif.get_ifd(0x8769).items())  # the Exif sub-IFD: dates, camera settings
            for tag, value in tags.items():
                name = ExifTags.TAGS.get(tag, str(tag))
                if name not in ("ExifOffset", "GPSInfo"):
                    lines.append(f"EXIF {name}: {_short(value)}")
            gps = exif.get_ifd(0x8825)
            for tag, value in gps.items():
                lines.append(f"GPS {ExifTags.GPSTAGS.get(tag, str(tag))}: {_short(value)}")
    except Exception as exc:  # a corrupt or unknown image: say so in one line
        raise ActionError(f"cannot open {target.name!r} as an image: {exc}") from None
    lines.append(note)
    return "\n".join(lines)


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _directory_text(folder: Path) -> str:
    lines = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            lines.append(f"{entry.name}/")
        else:
            lines.append(f"{entry.name}  ({entry.stat().st_size} bytes)")
    return "\n".join(lines) or "(empty)"
