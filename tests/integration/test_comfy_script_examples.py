"""ComfyUI's own API script examples, run through the guard with their own code: only an Authorization header is
added from outside (an installed urllib opener, a websocket connect that passes the header)."""

from __future__ import annotations

import ast
import io
import random
import urllib.request
from pathlib import Path

import pytest
import websocket
from PIL import Image

from tests.harness.comfyui import comfyui_root

pytestmark = pytest.mark.comfy
ROOT = comfyui_root()
EXAMPLES = ROOT / "script_examples" if ROOT else Path("/nonexistent")
# A recv that waits this long without a message fails the test instead of hanging it (the examples wait for
# ever for a message that names their prompt id)
SOCKET_TIMEOUT_S = 60


def example(name: str) -> dict:
    """The imports, settings and functions of one of ComfyUI's script examples, executed as they are written;
    only its closing lines are left out (they queue a workflow that needs an SD checkpoint, at import)."""
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this ComfyUI")
    tree = ast.parse(path.read_text())
    kept = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            or (isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)]
                in (["server_address"], ["client_id"]))]
    namespace: dict = {"__name__": f"comfyui_example_{path.stem}"}
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


@pytest.fixture
def as_tenant_a(comfyui, monkeypatch):
    """Every urllib request and websocket connection of this process carries tenant a's API key."""
    authorization = f"Bearer {comfyui.seeded.keys['a']}"
    opener = urllib.request.build_opener()
    opener.addheaders.append(("Authorization", authorization))
    urllib.request.install_opener(opener)
    connect = websocket.WebSocket.connect

    def connect_with_header(self, url, **options):
        return connect(self, url, header=[f"Authorization: {authorization}"], timeout=SOCKET_TIMEOUT_S, **options)

    monkeypatch.setattr(websocket.WebSocket, "connect", connect_with_header)
    yield comfyui.url.removeprefix("http://")
    urllib.request.install_opener(None)


def run_example(module: dict, server_address: str, prompt: dict) -> dict:
    """What the example's own closing lines do, with our workflow in place of its SD one."""
    module["server_address"] = server_address
    ws = module["websocket"].WebSocket()
    ws.connect("ws://{}/ws?clientId={}".format(server_address, module["client_id"]))
    try:
        return module["get_images"](ws, prompt)
    finally:
        ws.close()


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
