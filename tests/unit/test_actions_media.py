"""ask_image, audio transcripts in read_file, and find_archived_url, run in a real kernel.

The vision model, the transcription endpoint and the Wayback availability API are loopback stubs
(tests/support/media_stubs.py). The API keys are in the agent's (this test process's) environment
while the kernel runs, and only the agent proxy uses them: every test that calls a keyed service
checks that the stub got the key and that neither the kernel's environment nor the bootstrap
source holds it. The last test runs a kernel under bubblewrap without a network, where the proxy
is reached through its Unix socket.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dynagraph.tools.actions import (
    ActionsConfig,
    AgentProxy,
    Endpoint,
    action_specs,
    kernel_bootstrap,
)
from dynagraph.tools.actions._common import ActionError
from dynagraph.tools.actions.archive import wayback_timestamp
from dynagraph.tools.actions.media import image_data_url
from dynagraph.tools.kernel import KernelSession

from tests.support.media_stubs import (
    TranscriptionStub,
    VisionStub,
    availability_api,
    image_size,
    make_png,
    make_wav,
)
from tests.support.sandbox import needs_bwrap
from tests.support.web_fixtures import WebFixtureServer

pytest.importorskip("PIL", reason="Pillow makes and downscales the test images")

VISION_KEY = "sk-vision-loopback-secret-1"
AUDIO_KEY = "sk-audio-loopback-secret-2"
KEYS = {"DG_TEST_VISION_KEY": VISION_KEY, "DG_TEST_AUDIO_KEY": AUDIO_KEY}


def _answer(question: str, images: list[bytes]) -> str:
    width, height = image_size(images[0])
    return f"A red picture of {width}x{height} pixels; you asked: {question}"


@pytest.fixture(scope="module")
def keys_in_agent_env() -> Iterator[None]:
    """The keys where a real agent has them: in its own environment (kernels are scrubbed)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in KEYS.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def web() -> Iterator[WebFixtureServer]:
    with WebFixtureServer() as server:
        yield server


@pytest.fixture(scope="module")
def vision(web: WebFixtureServer) -> VisionStub:
    stub = VisionStub(_answer, key=VISION_KEY)
    web.handle("/vision/v1/chat/completions", stub)
    return stub


@pytest.fixture(scope="module")
def transcription(web: WebFixtureServer) -> TranscriptionStub:
    stub = TranscriptionStub("the tide turns at six", key=AUDIO_KEY)
    web.handle("/audio/v1/audio/transcriptions", stub)
    return stub


@pytest.fixture(scope="module")
def config(web: WebFixtureServer) -> ActionsConfig:
    return ActionsConfig(wayback_base_url=web.url("/archive"), image_max_side=512)


@pytest.fixture(scope="module")
def proxy(
    keys_in_agent_env: None, web: WebFixtureServer, config: ActionsConfig
) -> Iterator[AgentProxy]:
    vision = Endpoint("stub-vision", web.url("/vision/v1"), "DG_TEST_VISION_KEY", timeout=10)
    audio = Endpoint(
        "stub-whisper", web.url("/audio/v1"), "DG_TEST_AUDIO_KEY", 10, setting="models.transcribe"
    )
    with AgentProxy(config, vision=vision, transcribe=audio) as running:
        yield running


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media-task")
    (folder / "chart.png").write_bytes(make_png(64, 48))
    (folder / "big.png").write_bytes(make_png(2000, 1000))
    (folder / "notes.txt").write_text("not an image")
    (folder / "memo.wav").write_bytes(make_wav(0.5))
    (folder / "song.mp3").write_bytes(b"ID3\x03\x00\x00\x00" + b"\x00" * 200)
    return folder


@pytest.fixture(scope="module")
def kernel(keys_in_agent_env: None, workdir: Path) -> Iterator[KernelSession]:
    with KernelSession(workdir) as session:
        blocked = session.execute("import sys; sys.modules['tools'] = None", 30)
        assert blocked.ok(), blocked.to_observation()
        yield session


def run(kernel: KernelSession, code: str) -> str:
    result = kernel.execute(code, 60)
    assert result.status == "ok", result.to_observation()
    return result.stdout.rstrip("\n")


def bootstrap(kernel: KernelSession, config: ActionsConfig, proxy: AgentProxy | None) -> str:
    source = kernel_bootstrap(config, proxy=proxy)
    for key in KEYS.values():
        assert key not in source
    run(kernel, source)
    return source


def assert_no_key_in_kernel(kernel: KernelSession) -> None:
    """Neither the kernel's environment nor anything its actions were given holds a key."""
    assert os.environ["DG_TEST_VISION_KEY"] == VISION_KEY  # the agent does have them
    for key in KEYS.values():
        env = run(
            kernel, f"print([k for k, v in __import__('os').environ.items() if {key!r} in v])"
        )
        assert env == "[]"
        settings = run(
            kernel,
            f"print({key!r} in repr(__import__('sys').modules['dynagraph_actions'].SETTINGS))",
        )
        assert settings == "False"


# ----------------------------------------------------------------------------- ask_image


def test_ask_image_sends_an_image_part_and_returns_the_answer(
    kernel: KernelSession, proxy: AgentProxy, config: ActionsConfig, vision: VisionStub
) -> None:
    bootstrap(kernel, config, proxy)
    answer = run(kernel, "print(ask_image('chart.png', 'What colour is it?'))")
    assert answer == "A red picture of 64x48 pixels; you asked: What colour is it?"
    question, images, body = vision.received[-1]
    assert images[0] == make_png(64, 48)  # small PNGs are sent as they are
    assert body["model"] == "stub-vision"
    assert_no_key_in_kernel(kernel)


def test_ask_image_downscales_large_images_and_reads_urls(
    kernel: KernelSession,
    proxy: AgentProxy,
    config: ActionsConfig,
    vision: VisionStub,
    web: WebFixtureServer,
) -> None:
    bootstrap(kernel, config, proxy)
    answer = run(kernel, "print(ask_image('big.png', 'size?'))")
    assert "512x256 pixels" in answer, answer
    assert image_size(vision.received[-1][1][0]) == (512, 256)
    url = web.add("/img/photo.png", make_png(300, 200), "image/png")
    answer = run(kernel, f"print(ask_image({url!r}, 'and this one?'))")
    assert "300x200 pixels" in answer, answer
    assert_no_key_in_kernel(kernel)


def test_ask_image_failures_are_one_line(
    kernel: KernelSession, proxy: AgentProxy, config: ActionsConfig, web: WebFixtureServer
) -> None:
    bootstrap(kernel, config, proxy)
    cases = {
        "ask_image('nothing.png', 'q')": "no file 'nothing.png'",
        "ask_image('notes.txt', 'q')": "not an image Pillow can open",
        f"ask_image({web.url('/missing.png')!r}, 'q')": "HTTP 404",
    }
    for call, expected in cases.items():
        answer = run(kernel, f"print({call})")
        assert answer.startswith("ask_image: ") and "\n" not in answer, answer
        assert expected in answer, answer
    # a vision endpoint that refuses the key: the error line names the setting, never the key
    wrong = Endpoint("stub-vision", web.url("/vision/v1"), "DG_TEST_AUDIO_KEY", timeout=10)
    with AgentProxy(config, vision=wrong) as refused:
        bootstrap(kernel, config, refused)
        answer = run(kernel, "print(ask_image('chart.png', 'q'))")
    assert "models.vision model stub-vision" in answer and "HTTP 401" in answer, answer
    assert AUDIO_KEY not in answer
    bootstrap(kernel, config, None)  # no proxy at all
    answer = run(kernel, "print(ask_image('chart.png', 'q'))")
    assert answer.startswith("ask_image: ") and "agent proxy is not running" in answer, answer


def test_the_proxy_answers_only_under_its_token(proxy: AgentProxy) -> None:
    """Another local process that finds the port cannot spend the keys without the token."""
    import json
    import urllib.error
    import urllib.request

    parts = urlsplit(proxy.url)
    body = json.dumps({"question": "q", "image": "data:image/png;base64,AA=="}).encode()
    for path in ("/vision", "/guess/vision", f"{parts.path}x/vision", "/search?q=x"):
        request = urllib.request.Request(f"http://{parts.netloc}{path}", data=body)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()  # the error holds the response's socket
        assert refused.value.code == 404
    assert proxy.socket_path is not None
    assert Path(proxy.socket_path).parent.stat().st_mode & 0o777 == 0o700  # the agent's user only


# ----------------------------------------------------------------------------- audio


def test_read_file_on_audio_returns_the_transcript(
    kernel: KernelSession,
    proxy: AgentProxy,
    config: ActionsConfig,
    transcription: TranscriptionStub,
) -> None:
    bootstrap(kernel, config, proxy)
    text = run(kernel, "print(read_file('memo.wav'))")
    assert "audio transcript" in text.splitlines()[0], text
    assert "1 channel(s), 8000 Hz, 16-bit, 0.50 s" in text
    assert "Transcript (stub-whisper):" in text and "the tide turns at six" in text
    form = transcription.received[-1]
    assert form["model"] == "stub-whisper"
    assert form["file"]["filename"] == "memo.wav"
    assert form["file"]["bytes"] == make_wav(0.5)
    assert_no_key_in_kernel(kernel)


def test_read_file_on_audio_without_a_transcription_model_gives_metadata(
    kernel: KernelSession, config: ActionsConfig, web: WebFixtureServer
) -> None:
    vision = Endpoint("stub-vision", web.url("/vision/v1"), "DG_TEST_VISION_KEY")
    with AgentProxy(config, vision=vision) as no_audio:
        bootstrap(kernel, config, no_audio)
        text = run(kernel, "print(read_file('song.mp3'))")
    lines = text.splitlines()
    assert "audio metadata" in lines[0], text
    note = next(line for line in lines if "transcription" in line)
    assert note.startswith("No transcription model is configured (models.transcribe")
    assert "Audio: MP3, 207 bytes" in text


# ----------------------------------------------------------------------------- wayback


def test_find_archived_url_returns_a_snapshot_fetch_url_reads(
    kernel: KernelSession, config: ActionsConfig, web: WebFixtureServer
) -> None:
    page = web.add(
        "/web/20190502120000/tides.example/",
        "<html><head><title>Tides 2019</title></head><body><p>High water 06:42</p></body></html>",
    )
    web.handle(
        "/archive/wayback/available",
        availability_api({"tides.example/": ("20190502120000", page)}),
    )
    bootstrap(kernel, config, None)  # key-less: called from the kernel itself
    out = run(kernel, "url = find_archived_url('tides.example/', '2019-05-01'); print(repr(url))")
    assert out.splitlines()[-1] == repr(page)
    assert "from 2019-05-02 12:00:00" in out.splitlines()[0]
    asked = web.requests_to("/archive/wayback/available")[-1].query
    assert asked["timestamp"] == ["20190501"] and asked["url"] == ["tides.example/"]
    assert "High water 06:42" in run(kernel, "print(fetch_url(url))")
    failed = kernel.execute("find_archived_url('nowhere.example', '2019')", 30)
    assert failed.status == "error" and failed.error_name == "RuntimeError"
    assert failed.error_value.startswith("find_archived_url: the Wayback Machine has no snapshot")


def test_wayback_timestamps_and_image_data_urls() -> None:
    import datetime

    assert wayback_timestamp("2019-05-01") == "20190501"
    assert wayback_timestamp("20190501") == "20190501"
    assert wayback_timestamp("2019-5") == "20190501"
    assert wayback_timestamp(datetime.date(2001, 9, 11)) == "20010911"
    with pytest.raises(ActionError, match="YYYY-MM-DD"):
        wayback_timestamp("last spring")
    url = image_data_url(make_png(3000, 1500), 1000)
    header, _, payload = url.partition(",")
    assert header == "data:image/jpeg;base64"
    assert image_size(base64.b64decode(payload)) == (1000, 500)


def test_vision_and_transcription_endpoints_come_from_the_models_section() -> None:
    from dynagraph.tools.actions.endpoints import endpoints_from_models
    from dynagraph.tools.models import ModelsSettings

    vision, transcribe = endpoints_from_models(ModelsSettings())
    assert vision is not None and transcribe is None  # transcription is off until configured
    assert (vision.model, vision.api_key_env, vision.url) == (
        "gpt-4o-mini",
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
    )
    models = ModelsSettings(
        vision={"model": "llava"},
        transcribe={"model": "whisper-1", "base_url": "http://127.0.0.1:9/v1", "api_key_env": ""},
    )
    vision, transcribe = endpoints_from_models(models)
    assert vision is not None and (vision.model, vision.timeout) == ("llava", 120.0)
    assert transcribe is not None and transcribe.model == "whisper-1"
    assert transcribe.who == "models.transcribe model whisper-1 at http://127.0.0.1:9/v1"


def test_the_coder_sees_typed_one_line_specs() -> None:
    lines = {spec.name: spec.summary_line() for spec in action_specs(ActionsConfig())}
    assert lines["ask_image"].startswith("ask_image(path_or_url: str, question: str) -> str: ")
    assert lines["find_archived_url"].startswith("find_archived_url(url: str, date: str) -> str: ")
    assert "audio transcript" in lines["read_file"]


# ----------------------------------------------------------------------------- no network


@needs_bwrap
def test_the_proxy_is_reached_through_its_socket_without_a_network(
    proxy: AgentProxy, config: ActionsConfig, workdir: Path, tmp_path: Path
) -> None:
    (tmp_path / "chart.png").write_bytes(make_png(64, 48))
    session = KernelSession(tmp_path, sandbox="bwrap", network=False, share=proxy.kernel_shares())
    with session:
        bootstrap(session, config, proxy)
        answer = run(session, "print(ask_image('chart.png', 'offline?'))")
        assert answer == "A red picture of 64x48 pixels; you asked: offline?"
        # the proxy's TCP port is the agent's loopback, which this kernel cannot reach
        where = urlsplit(proxy.url)
        tcp = run(
            session,
            "import socket\ntry:\n"
            f"    socket.create_connection(({where.hostname!r}, {where.port}), 3)\n"
            "    print('reached')\nexcept OSError:\n    print('unreachable')",
        )
        assert tcp == "unreachable"
        assert_no_key_in_kernel(session)
