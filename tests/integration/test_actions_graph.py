"""Initial actions through the whole graph: a task downloads a file from a (loopback) web
server, reads it with read_file, and answers from it; a task with an attached PNG is answered
from ask_image's reply (the vision model is the stub too, reached through the agent proxy); with
agent.show_images the planner gets a displayed figure as an image part. The model's replies are
scripted; the kernel, the actions, the proxy, the HTTP traffic and the library are real."""

from __future__ import annotations

import json
import re

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings

from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.media_stubs import image_parts, image_size, make_png
from tests.support.openai_stub import StubError
from tests.support.sandbox import needs_bwrap
from tests.support.web_fixtures import WebFixtureServer, make_xlsx

pytestmark = pytest.mark.timeout(180)


def test_task_downloads_reads_and_answers_from_a_file(stub_env, tmp_path):
    stub = stub_env["stub"]
    with WebFixtureServer() as web:
        url = web.add(
            "/data/sales.xlsx",
            make_xlsx({"Sales": [["region", "units"], ["North", 42], ["South", 17]]}),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        stub.script(
            "planner",
            [
                planner_step(f"Download {url} and read it."),
                planner_step("Answer from the table: units sold in the North."),
                planner_answer("42"),
            ],
        )
        stub.script(
            "coder",
            [
                coder_cell(f"path = download({url!r})\nprint(read_file(path))"),
                coder_cell("final_answer(42)"),
            ],
        )
        config = write_stub_config(tmp_path / "c.yaml", stub_env["base_url"], stub_env["home"])
        result = run_task("How many units were sold in the North?", load_settings(config))

    assert result.status == "done", result.error
    assert result.answer == "42"
    first = result.steps[0]
    assert first["status"] == "ok", first["observation"]
    assert "North" in first["observation"] and "42" in first["observation"]
    assert web.requests_to("/data/sales.xlsx"), "the kernel never fetched the file"
    # the coder was shown the initial actions, and the planner saw final_answer's proposal
    coder_system = stub.requests_for("coder")[0]["messages"][0]["content"]
    assert "download(" in coder_system and "read_file(" in coder_system
    last_planner = json.dumps(stub.requests_for("planner")[-1]["messages"])
    assert "final_answer('42')" in last_planner or 'final_answer(\\"42\\")' in last_planner


def _vision_rule(answer: str):
    """The vision model's reply, given only to a request that carries an image content part."""

    def reply(request: dict) -> str | StubError:
        images = image_parts(request)
        if not images:
            return StubError(400, "stub: no image_url content part", retry_after_ms=None)
        width, height = image_size(images[0])
        return f"{answer} (seen on a {width}x{height} image)"

    return reply


@pytest.mark.parametrize(
    "network",
    [
        True,
        pytest.param(
            False,
            marks=needs_bwrap,
        ),
    ],
    ids=["network", "offline-sandbox"],
)
def test_task_with_an_attached_png_is_answered_from_ask_image(stub_env, tmp_path, network):
    """The coder asks the vision model about the attached chart through ask_image (the key
    stays in the agent: the proxy adds it), and the planner answers from the model's reply.
    Offline (bubblewrap, executor.network: false) the kernel reaches the proxy by its socket."""
    stub, key = stub_env["stub"], stub_env["api_key"]
    executor = {"network": False, "sandbox": "bwrap"} if not network else {}
    config = write_stub_config(
        tmp_path / "c.yaml",
        stub_env["base_url"],
        stub_env["home"],
        executor={"workdir": str(stub_env["home"] / "runs"), "timeout": 20.0, **executor},
    )
    services = Services(load_settings(config))
    try:
        workdir = services.workdir_for("png-task")
        workdir.mkdir(parents=True)
        (workdir / "chart.png").write_bytes(make_png(120, 80))
        # vision requests carry no planner/coder/librarian system prompt: role "default"
        stub.add_rule("default", _vision_rule("The tallest bar is 2021"))

        def answer_from_observation(request: dict) -> str:
            seen = re.search(r"tallest bar is (\d{4})", json.dumps(request["messages"]))
            return planner_answer(seen.group(1)) if seen else planner_step("look again")

        stub.script(
            "planner",
            [planner_step("Ask the vision model which year's bar is tallest in chart.png.")],
        )
        stub.add_rule("planner", answer_from_observation)
        leak_check = f"any({key!r} in v for v in __import__('os').environ.values())"
        stub.script(
            "coder",
            [
                coder_cell(
                    "print(ask_image('chart.png', 'Which year has the tallest bar?'))\n"
                    f"print('key in kernel env:', {leak_check})\n"
                    "import socket\ntry:\n"
                    f"    socket.create_connection(('127.0.0.1', {stub.port}), 3).close()\n"
                    "    print('model port reachable: True')\n"
                    "except OSError:\n    print('model port reachable: False')"
                )
            ],
        )
        result = run_task(
            "Which year has the tallest bar in the attached chart.png?",
            thread_id="png-task",
            services=services,
        )
        assert key not in services.kernel_bootstrap()
    finally:
        services.close()

    assert result.status == "done", result.error
    assert result.answer == "2021"
    observation = result.steps[0]["observation"]
    assert "The tallest bar is 2021 (seen on a 120x80 image)" in observation, observation
    assert "key in kernel env: False" in observation
    assert f"model port reachable: {network}" in observation  # offline: only the socket
    vision = stub.requests_for("default")
    assert len(vision) == 1 and vision[0]["model"] == "stub-default"  # models.vision -> default
    assert image_size(image_parts(vision[0])[0]) == (120, 80)


def test_show_images_gives_the_planner_the_displayed_figure(stub_env, tmp_path):
    """agent.show_images: the image a cell displayed reaches the planner as an image part, and
    the observation names the saved file and ask_image."""
    stub = stub_env["stub"]
    stub.script(
        "planner",
        [planner_step("Draw a small red rectangle."), planner_answer("red")],
    )
    stub.script(
        "coder",
        [coder_cell("from PIL import Image\ndisplay(Image.new('RGB', (40, 30), 'red'))")],
    )
    config = write_stub_config(
        tmp_path / "c.yaml",
        stub_env["base_url"],
        stub_env["home"],
        agent={"max_steps": 3, "show_images": True},
    )
    result = run_task("What colour is the rectangle you draw?", load_settings(config))

    assert result.status == "done", result.error
    observation = result.steps[0]["observation"]
    assert "saved images: outputs/figure-1.png" in observation, observation
    assert "ask_image('outputs/figure-1.png', question)" in observation
    first, second = stub.requests_for("planner")
    assert not image_parts(first)
    shown = image_parts(second)
    assert len(shown) == 1 and image_size(shown[0]) == (40, 30)
