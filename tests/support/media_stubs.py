"""Loopback stand-ins for the media actions' services, served by a WebFixtureServer.

- :class:`VisionStub`: an OpenAI-compatible ``/v1/chat/completions`` that answers only a request
  carrying an ``image_url`` content part with a base64 data URL (HTTP 400 otherwise) and the
  expected bearer key; it keeps the decoded images and questions it received.
- :class:`TranscriptionStub`: ``/v1/audio/transcriptions`` taking the multipart form the OpenAI API
  takes (``model``, ``file``), checking the key; it keeps the files it received.
- :func:`availability_api`: the Wayback Machine's ``/wayback/available`` answering from a table.

Plus :func:`make_png` (Pillow) and :func:`make_wav` (standard library) to make the files.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.web_fixtures import Reply, Request


def _json_reply(payload: dict[str, Any], status: int = 200) -> Reply:
    return Reply(json.dumps(payload).encode("utf-8"), status, "application/json")


def _error(status: int, message: str) -> Reply:
    return _json_reply({"error": {"message": message, "type": "stub_error"}}, status)


def chat_completion(text: str, model: str = "stub-vision") -> dict[str, Any]:
    """An OpenAI chat completion body whose message is ``text``."""
    return {
        "id": "chatcmpl-stub-vision",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def image_parts(body: dict[str, Any]) -> list[bytes]:
    """The decoded images of every ``image_url`` content part (base64 data URLs) in a request."""
    images = []
    for message in body.get("messages") or []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url") or "")
                header, _, payload = url.partition(",")
                if header.startswith("data:image/") and header.endswith(";base64"):
                    images.append(base64.b64decode(payload))
    return images


def text_parts(body: dict[str, Any]) -> str:
    """The text of the user messages of a request (strings and text content parts)."""
    texts = []
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
    return "\n".join(texts)


@dataclass
class VisionStub:
    """``answer(question, images) -> str`` answers each request that carries an image."""

    answer: Callable[[str, list[bytes]], str]
    key: str | None = None
    received: list[tuple[str, list[bytes], dict[str, Any]]] = field(default_factory=list)

    def __call__(self, request: Request) -> Reply:
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "stub: wrong or missing API key")
        body = json.loads(request.body or b"{}")
        images = image_parts(body)
        if not images:
            return _error(400, "stub: the request has no image_url content part")
        question = text_parts(body)
        self.received.append((question, images, body))
        return _json_reply(chat_completion(self.answer(question, images), body.get("model", "")))


@dataclass
class TranscriptionStub:
    """Answers ``{"text": transcript}`` for a multipart upload with ``model`` and ``file``."""

    transcript: str
    key: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: Request) -> Reply:
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "stub: wrong or missing API key")
        kind = request.headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            return _error(400, f"stub: expected multipart/form-data, got {kind!r}")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + request.body
        )
        form: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                form[name] = {"filename": part.get_filename(), "bytes": payload}
            else:
                form[name] = payload.decode("utf-8")
        if "model" not in form or "file" not in form:
            return _error(400, "stub: the form needs model and file")
        self.received.append(form)
        return _json_reply({"text": self.transcript})


def availability_api(snapshots: dict[str, tuple[str, str]]) -> Callable[[Request], Reply]:
    """``/wayback/available``: ``snapshots`` maps a page URL to (timestamp, snapshot URL)."""

    def handler(request: Request) -> Reply:
        url = (request.query.get("url") or [""])[0]
        timestamp = (request.query.get("timestamp") or [""])[0]
        found = snapshots.get(url)
        closest = (
            {"status": "200", "available": True, "url": found[1], "timestamp": found[0]}
            if found
            else None
        )
        body = {"url": url, "timestamp": timestamp, "archived_snapshots": {}}
        if closest:
            body["archived_snapshots"]["closest"] = closest
        return _json_reply(body)

    return handler


def make_png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A PNG of one colour with a white square in a corner (Pillow)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), color)
    image.paste((255, 255, 255), (0, 0, max(1, width // 4), max(1, height // 4)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def make_wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV (standard library)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(rate)
        sink.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()
