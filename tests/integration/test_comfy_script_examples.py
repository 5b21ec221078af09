"""ComfyUI's own API script examples, run through the guard with their own code: only an Authorization header is
added from outside (an installed urllib opener, a websocket connect that passes the header)."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from tests.harness.script_examples import as_caller, example, run_example

pytestmark = pytest.mark.comfy


@pytest.fixture
def as_tenant_a(comfyui, monkeypatch):
    """Every urllib request and websocket connection of this process carries tenant a's API key."""
    with as_caller(comfyui.seeded.keys["a"], comfyui.url.removeprefix("http://"), monkeypatch) as address:
        yield address


def coloured_image(color: int) -> dict:
    # a colour of its own each run: ComfyUI's cache would otherwise answer a repeated workflow without running it
    return {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": color}}


def assert_images_of(color: int, images: list[bytes]) -> None:
    assert len(images) == 1
    image = Image.open(io.BytesIO(images[0])).convert("RGB")
    assert image.size == (64, 48)
    assert image.getpixel((10, 10)) == ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)


def test_websockets_api_example_gets_its_saved_and_previewed_images(as_tenant_a):
    """It queues with a prompt_id of its own, waits for the `executing` message naming it, then reads /history
    and /view."""
    color = random.randrange(0x1000000)
    images = run_example(example("websockets_api_example.py"), as_tenant_a, {
        "1": coloured_image(color),
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ws_api_example"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert sorted(images) == ["2", "3"]
    for node_images in images.values():
        assert_images_of(color, node_images)


def test_websockets_api_example_ws_images_gets_its_images_over_the_socket(as_tenant_a):
    """It takes the prompt id from the /prompt answer and collects the binary frames ComfyUI's own
    SaveImageWebsocket node sends while it runs."""
    color = random.randrange(0x1000000)
    images = run_example(example("websockets_api_example_ws_images.py"), as_tenant_a, {
        "1": coloured_image(color),
        "save_image_websocket_node": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}})
    assert list(images) == ["save_image_websocket_node"]
    assert_images_of(color, images["save_image_websocket_node"])
