"""ask_image and audio transcripts: the vision and transcription models, asked through the agent.

The kernel never holds an API key. Both go through the agent proxy
(:class:`tools.actions.proxy.AgentProxy`), a server in the agent process that holds the keys and
calls the configured OpenAI-compatible endpoints (``models.vision``, ``models.transcribe``).

``ask_image`` reads an image file, URL or ``data:`` URL, downscales it when its longer side exceeds
``image_max_side`` pixels or it is too large to send (Pillow, imported lazily), and sends it as a
base64 data URL with the question. ``audio_text`` is read_file's converter for audio files: the
transcript under a metadata header, or, with no transcription model configured, one line saying so
and the metadata. Failures are one line.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
import wave
from pathlib import Path

from dynagraph.tools.actions._common import (
    SETTINGS,
    ActionError,
    http_get,
    listing_hint,
    one_line,
    proxy_request,
)

__all__ = ["ask_image"]

AUDIO_SUFFIXES = {".mp3", ".wav", ".m4a", ".ogg", ".flac"}
#: Image formats sent as they are when small enough; others are re-encoded (PNG or JPEG).
SENDABLE_IMAGES = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8"}
MAX_INLINE_BYTES = 4_000_000  # larger images are re-encoded smaller before sending
MAX_IMAGE_BYTES = 50_000_000  # larger files are refused (they are not photos or charts)
MAX_AUDIO_BYTES = 25_000_000  # the OpenAI transcription limit


def ask_image(path_or_url: str, question: str) -> str:
    """Ask the vision model a question about an image file or URL; returns its answer as text."""
    try:
        data = _image_bytes(str(path_or_url))
        image = image_data_url(data, int(SETTINGS.get("image_max_side") or 1568))
        if SETTINGS.get("proxy_url") and not SETTINGS.get("vision_model"):
            raise ActionError("no vision model is configured (models.vision in the config)")
        body = json.dumps({"question": str(question), "image": image}).encode("utf-8")
        reply = proxy_request("vision", body=body, content_type="application/json")
    except ActionError as exc:
        return f"ask_image: {one_line(exc)}"
    answer = str(reply.get("answer") or "").strip()
    return answer or "ask_image: the vision model gave an empty answer; ask again more precisely"


def _image_bytes(source: str) -> bytes:
    """The bytes of an image path (relative to the cwd), http(s) URL or data: URL."""
    if source.startswith("data:"):
        header, _, payload = source.partition(",")
        if ";base64" not in header:
            raise ActionError("a data: URL must be base64-encoded")
        try:
            return base64.b64decode(payload, validate=False)
        except ValueError:
            raise ActionError("the data: URL is not valid base64") from None
    if source.lower().startswith(("http://", "https://")):
        reply = http_get(source, headers={"Accept": "image/*,*/*;q=0.8"}, limit=MAX_IMAGE_BYTES)
        if reply.truncated:
            raise ActionError(f"{source} is larger than {MAX_IMAGE_BYTES} bytes")
        return reply.body
    target = Path(source).expanduser()
    if not target.is_absolute():
        target = Path.cwd() / target
    if not target.is_file():
        raise ActionError(f"no file {source!r} in {target.parent} ({listing_hint(target.parent)})")
    size = target.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ActionError(f"{source!r} is {size} bytes, too large for an image")
    return target.read_bytes()


def image_data_url(data: bytes, max_side: int = 1568) -> str:
    """A ``data:image/...;base64,`` URL of an image, downscaled to ``max_side`` pixels if larger.

    Small PNG, JPEG and GIF files are sent as they are; anything else that Pillow opens is
    re-encoded (PNG when it has transparency, else JPEG).
    """
    kind = next((m for m, magic in SENDABLE_IMAGES.items() if data.startswith(magic)), None)
    try:
        from PIL import Image
    except ImportError:
        if kind and len(data) <= MAX_INLINE_BYTES:
            return _data_url(kind, data)
        raise ActionError(
            "Pillow is not installed in the kernel's Python (pip install Pillow)"
        ) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if kind and len(data) <= MAX_INLINE_BYTES and max(image.size) <= max_side:
                return _data_url(kind, data)
            frame = image.copy()  # the first frame of an animation
    except Exception as exc:  # not an image, or one Pillow cannot read: one line
        raise ActionError(f"not an image Pillow can open ({type(exc).__name__}: {exc})") from None
    frame.thumbnail((max_side, max_side))
    alpha = frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info
    out = io.BytesIO()
    if alpha:
        frame.convert("RGBA").save(out, format="PNG", optimize=True)
        return _data_url("image/png", out.getvalue())
    frame.convert("RGB").save(out, format="JPEG", quality=85)
    return _data_url("image/jpeg", out.getvalue())


def _data_url(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def audio_text(target: Path, size: int) -> tuple[str, str]:
    """read_file's text of an audio file and how it was read: a transcript, or the metadata."""
    meta = _audio_metadata(target, size)
    model = SETTINGS.get("transcribe_model")
    if not model:
        note = (
            "No transcription model is configured (models.transcribe in the config), "
            "so this is the file's metadata only."
        )
        return f"{note}\n{meta}", "audio metadata"
    if size > MAX_AUDIO_BYTES:
        raise ActionError(
            f"{target.name!r} is {size} bytes, over the {MAX_AUDIO_BYTES}-byte transcription "
            "limit; cut it into parts in code (e.g. with the wave module or ffmpeg) first"
        )
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    try:
        reply = proxy_request(
            "transcribe",
            params={"filename": target.name},
            body=target.read_bytes(),
            content_type=kind,
        )
    except ActionError as exc:
        raise ActionError(f"cannot transcribe {target.name!r}: {exc}") from None
    transcript = str(reply.get("text") or "").strip() or "(the transcript is empty: no speech?)"
    return f"{meta}\nTranscript ({model}):\n\n{transcript}", "audio transcript"


def _audio_metadata(target: Path, size: int) -> str:
    """Format, size and, for WAV, channels, rate and duration (standard library only)."""
    line = f"Audio: {target.suffix.lstrip('.').upper()}, {size} bytes"
    if target.suffix.lower() == ".wav":
        try:
            with wave.open(str(target), "rb") as audio:
                rate = audio.getframerate()
                seconds = audio.getnframes() / rate if rate else 0.0
                line += (
                    f", {audio.getnchannels()} channel(s), {rate} Hz, "
                    f"{audio.getsampwidth() * 8}-bit, {seconds:.2f} s"
                )
        except (wave.Error, EOFError, OSError) as exc:
            line += f" (not a readable WAV: {one_line(exc, 120)})"
    return line
